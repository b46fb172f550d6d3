//! Property tests: parsing untrusted OSV text never panics, and range verdicts do not depend
//! on the order events are written in.

use flotilla_osv::parse_record;
use proptest::prelude::*;

proptest! {
    #[test]
    fn arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = parse_record(&text);
    }

    #[test]
    fn mutated_real_record_never_panics(cut in 0usize..1266, byte in any::<u8>()) {
        let text = include_str!("data/osv/debian/DLA-3008-1.json");
        let mut bytes = text.as_bytes().to_vec();
        if cut < bytes.len() {
            bytes[cut] = byte;
        }
        let _ = parse_record(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn event_order_does_not_change_the_verdict(
        a in 1u32..50, b in 1u32..50, c in 1u32..50, installed in 0u32..60, rotate in 0usize..4
    ) {
        let (lo, hi) = (a.min(b), a.max(b) + 1);
        let mut events = vec![
            format!(r#"{{"introduced": "{lo}.0-1"}}"#),
            format!(r#"{{"fixed": "{hi}.0-1"}}"#),
            format!(r#"{{"introduced": "{}.0-1"}}"#, hi + c),
            format!(r#"{{"last_affected": "{}.0-1"}}"#, hi + c + 5),
        ];
        events.rotate_left(rotate);
        let text = format!(
            r#"{{"id":"P-1","modified":"2024-01-01T00:00:00Z","affected":[{{"package":{{"ecosystem":"Debian:12","name":"p"}},"ranges":[{{"type":"ECOSYSTEM","events":[{}]}}]}}]}}"#,
            events.join(",")
        );
        let record = parse_record(&text).expect("valid");
        let eco = flotilla_vuln::OsvEcosystem::parse("Debian:12").expect("eco");
        let v = format!("{installed}.0-1");
        let hit = !flotilla_vuln::match_version(&eco, "p", &v, [&record.advisory]).expect("match").is_empty();
        let expected = (lo..hi).contains(&installed) || (hi + c..=hi + c + 5).contains(&installed);
        prop_assert_eq!(hit, expected, "installed {} events {:?}", v, events);
    }
}
