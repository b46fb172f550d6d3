//! How a node's inventory set of one type is written down (migration 0020): either the whole
//! list of its entry ids, or a reference to a shared *base* (a set that came first from the same
//! base image) and the few edits that turn the base into it.
//!
//! A fleet's nodes come from a few images and differ in a few percent of their packages, so a
//! set is mostly runs copied from its base: a fleet query reads and checks a few dozen bytes per
//! node instead of a thousand ids, and the database holds a thousand ids per image rather than
//! per node. Everything here is pure; `sql/inventory.rs` stores and caches.

use std::collections::HashMap;
use std::sync::Arc;

/// Sets smaller than this are always stored whole: a base would save next to nothing.
pub const MIN_BASE_IDS: usize = 64;
/// Bases a type may have (in this process's view); past it, a set unlike every base is stored
/// whole.
pub const MAX_BASES_PER_TYPE: usize = 16;

/// A base as a writer compares sets with it.
pub struct Base {
    pub id: i64,
    pub ids: Arc<[i64]>,
    /// Each id's first position in `ids`.
    positions: HashMap<i64, usize>,
}

impl Base {
    pub fn new(id: i64, ids: Arc<[i64]>) -> Base {
        let mut positions = HashMap::with_capacity(ids.len());
        for (i, id) in ids.iter().enumerate() {
            positions.entry(*id).or_insert(i);
        }
        Base { id, ids, positions }
    }

    /// Ids of `ids` not in the base plus ids of the base not in `ids` (by membership, so a
    /// reordering costs nothing here but shows in the encoding's size); None as soon as the
    /// ids missing from the base exceed `limit`, so a set of another image is given up after
    /// a few dozen lookups instead of a thousand.
    fn edits_within(&self, ids: &[i64], limit: usize) -> Option<usize> {
        let mut missing = 0;
        for id in ids {
            if !self.positions.contains_key(id) {
                missing += 1;
                if missing > limit {
                    return None;
                }
            }
        }
        Some(missing + self.ids.len().saturating_sub(ids.len() - missing))
    }
}

/// How to write a set, given the type's bases.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Edits of `bases[i]`.
    Edits(usize),
    /// This set becomes a new base (and is written as a copy of it).
    NewBase,
    Whole,
}

/// Edits of a base up to a tenth of the set are one image's variation; a set further from
/// every base starts a base of its own while there is room, and otherwise is still written
/// as edits while they are at most half the set (smaller than the whole list), else whole.
pub fn choose(bases: &[Arc<Base>], ids: &[i64]) -> Choice {
    if ids.len() < MIN_BASE_IDS {
        return Choice::Whole;
    }
    // The nearest base, the first of equals; each base is only counted up to the best so far.
    let mut best: Option<(usize, usize)> = None;
    for (i, b) in bases.iter().enumerate() {
        let limit = best.map_or(usize::MAX, |(edits, _)| edits);
        if let Some(edits) = b.edits_within(ids, limit).filter(|&e| e < limit) {
            best = Some((edits, i));
        }
    }
    match best {
        Some((edits, i)) if edits * 10 <= ids.len() => Choice::Edits(i),
        _ if bases.len() < MAX_BASES_PER_TYPE => Choice::NewBase,
        Some((edits, i)) if edits * 2 <= ids.len() => Choice::Edits(i),
        _ => Choice::Whole,
    }
}

/// The edits that turn `base` into `ids`, as varints: groups of (k, k inserted ids, skip,
/// copy) — insert k ids (each as its zigzag difference from the id inserted before), skip
/// that many base ids, copy that many. Base ids after the last copy are dropped.
pub fn encode_edits(base: &Base, ids: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut i, mut pos, mut last) = (0, 0, 0_i64);
    while i < ids.len() {
        let start = i;
        while i < ids.len() && base.positions.get(&ids[i]).is_none_or(|&p| p < pos) {
            i += 1;
        }
        put(&mut out, (i - start) as u64);
        for &id in &ids[start..i] {
            put(&mut out, zigzag(id.wrapping_sub(last)));
            last = id;
        }
        let Some(&at) = ids.get(i).and_then(|id| base.positions.get(id)) else {
            put(&mut out, 0);
            put(&mut out, 0);
            break;
        };
        let skip = at - pos;
        pos = at;
        let copy_from = pos;
        while i < ids.len() && pos < base.ids.len() && ids[i] == base.ids[pos] {
            i += 1;
            pos += 1;
        }
        put(&mut out, skip as u64);
        put(&mut out, (pos - copy_from) as u64);
    }
    out
}

/// `base` with `edits` applied; None for bytes [`encode_edits`] cannot have written for it.
pub fn decode_edits(base: &[i64], edits: &[u8]) -> Option<Vec<i64>> {
    let mut out = Vec::with_capacity(base.len());
    walk(base, edits, |step| match step {
        Step::Insert(id) => out.push(id),
        Step::Copy(range) => out.extend_from_slice(&base[range]),
    })?;
    Some(out)
}

/// Only the ids at `keyed` (ascending positions in `base`, found once per base) and the
/// inserted ids `keep` accepts, in order: a keyed fleet query's pass over a node.
pub fn decode_edits_where(
    base: &[i64],
    keyed: &[usize],
    edits: &[u8],
    mut keep: impl FnMut(i64) -> bool,
) -> Option<Vec<i64>> {
    let mut out = Vec::new();
    walk(base, edits, |step| match step {
        Step::Insert(id) => {
            if keep(id) {
                out.push(id);
            }
        }
        Step::Copy(range) => {
            let from = keyed.partition_point(|&p| p < range.start);
            let to = keyed.partition_point(|&p| p < range.end);
            out.extend(keyed[from..to].iter().map(|&p| base[p]));
        }
    })?;
    Some(out)
}

/// The positions in `base` of the ids `keep` accepts, ascending.
pub fn positions_where(base: &[i64], mut keep: impl FnMut(i64) -> bool) -> Vec<usize> {
    base.iter().enumerate().filter(|(_, id)| keep(**id)).map(|(p, _)| p).collect()
}

enum Step {
    Insert(i64),
    /// A range of base positions.
    Copy(std::ops::Range<usize>),
}

/// Applies `edits` to `base`, telling `step` each inserted id and copied range, in order.
fn walk(base: &[i64], edits: &[u8], mut step: impl FnMut(Step)) -> Option<()> {
    let mut r = Reader { bytes: edits, at: 0 };
    let (mut pos, mut last) = (0_usize, 0_i64);
    while r.at < edits.len() {
        let k = usize::try_from(r.next()?).ok()?;
        // Each inserted id takes at least a byte: a larger count is not ours.
        if k > edits.len() - r.at {
            return None;
        }
        for _ in 0..k {
            last = last.wrapping_add(unzigzag(r.next()?));
            step(Step::Insert(last));
        }
        let skip = usize::try_from(r.next()?).ok()?;
        let n = usize::try_from(r.next()?).ok()?;
        let start = pos.checked_add(skip)?;
        let end = start.checked_add(n)?;
        if end > base.len() {
            return None;
        }
        step(Step::Copy(start..end));
        pos = end;
    }
    Some(())
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    /// The next LEB128 varint; None when truncated or longer than 64 bits.
    fn next(&mut self) -> Option<u64> {
        let (mut v, mut shift) = (0_u64, 0_u32);
        loop {
            let b = *self.bytes.get(self.at)?;
            self.at += 1;
            if shift > 63 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
            shift += 7;
        }
    }
}

fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A set's entry ids as bytes: each id's difference from the one before (zigzag, LEB128
/// varint). A node's entries are mostly those of its base image, whose ids were handed out
/// together and in the order sent, so most differences take one byte: ~1 KiB for a thousand
/// packages, which keeps a fleet query's pass over every node's set short.
pub mod id_list {
    use super::{Reader, put, unzigzag, zigzag};

    pub fn encode(ids: &[i64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(ids.len() + 8);
        let mut previous = 0_i64;
        for &id in ids {
            put(&mut out, zigzag(id.wrapping_sub(previous)));
            previous = id;
        }
        out
    }

    /// None for bytes `encode` cannot have written (a truncated or overlong varint).
    pub fn decode(bytes: &[u8]) -> Option<Vec<i64>> {
        decode_where(bytes, |_| true)
    }

    /// The ids `keep` accepts, in order; None as for `decode`.
    pub fn decode_where(bytes: &[u8], mut keep: impl FnMut(i64) -> bool) -> Option<Vec<i64>> {
        let mut ids = Vec::new();
        let mut r = Reader { bytes, at: 0 };
        let mut previous = 0_i64;
        while r.at < bytes.len() {
            previous = previous.wrapping_add(unzigzag(r.next()?));
            if keep(previous) {
                ids.push(previous);
            }
        }
        Some(ids)
    }

    #[cfg(test)]
    mod tests {
        use super::{decode, encode};

        #[test]
        fn round_trips_and_stays_small_for_runs() {
            let cases: &[&[i64]] = &[&[], &[0], &[1, 2, 3], &[5, 3, 9, 9, 1], &[i64::MAX, 1, i64::MAX], &[1 << 40, 7]];
            for ids in cases {
                assert_eq!(decode(&encode(ids)).as_deref(), Some(*ids));
            }
            let run: Vec<i64> = (1000..2000).collect();
            assert_eq!(encode(&run).len(), 1001, "a run of ids takes a byte each after the first");
            assert_eq!(super::decode_where(&encode(&[5, 3, 9, 9, 1]), |id| id > 4), Some(vec![5, 9, 9]));
        }

        #[test]
        fn refuses_what_it_did_not_write() {
            assert_eq!(decode(&[0x80]), None, "truncated");
            assert_eq!(decode(&[0xff; 11]), None, "longer than any 64-bit value");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::{
        Base, Choice, MAX_BASES_PER_TYPE, choose, decode_edits, decode_edits_where, encode_edits, positions_where,
    };

    fn base(ids: &[i64]) -> Base {
        Base::new(7, Arc::from(ids))
    }

    #[test]
    fn a_variant_of_its_base_is_a_few_bytes() {
        let image: Vec<i64> = (1000..2000).collect();
        let mut node = image.clone();
        node[10] = 5001; // another version
        node.remove(500); // a missing package
        node.insert(700, 5002); // an extra one
        let edits = encode_edits(&base(&image), &node);
        assert!(edits.len() < 30, "{} bytes", edits.len());
        assert_eq!(decode_edits(&image, &edits), Some(node.clone()));
        let keyed = positions_where(&image, |id| id == 1010 || id == 1800);
        let want = |id: i64| id == 1010 || id == 1800 || id == 5002;
        assert_eq!(decode_edits_where(&image, &keyed, &edits, want), Some(vec![5002, 1800]));
    }

    #[test]
    fn sets_choose_a_near_base_a_new_one_or_whole() {
        let image: Vec<i64> = (0..100).collect();
        let bases = vec![Arc::new(base(&image))];
        let mut near = image.clone();
        near[3] = 1000;
        assert_eq!(choose(&bases, &near), Choice::Edits(0));
        let other: Vec<i64> = (500..600).collect();
        assert_eq!(choose(&bases, &other), Choice::NewBase);
        assert_eq!(choose(&bases, &image[..10]), Choice::Whole, "small sets are whole");
        let full: Vec<Arc<Base>> = (0..MAX_BASES_PER_TYPE).map(|_| Arc::new(base(&image))).collect();
        assert_eq!(choose(&full, &other), Choice::Whole);
        let mut halfway = image.clone();
        halfway[..20].copy_from_slice(&other[..20]);
        assert_eq!(choose(&full, &halfway), Choice::Edits(0), "40 edits of 100: still smaller than whole");
    }

    #[test]
    fn edits_that_do_not_fit_the_base_are_refused() {
        let image = [1, 2, 3];
        assert_eq!(decode_edits(&image, &[0, 0, 4]), None, "copies past the base");
        assert_eq!(decode_edits(&image, &[9, 2]), None, "more inserted ids than bytes");
        assert_eq!(decode_edits(&image, &[0, 0]), None, "truncated");
        assert_eq!(decode_edits(&image, &[0x80]), None);
        assert_eq!(decode_edits(&image, &[]), Some(vec![]));
    }

    proptest! {
        #[test]
        fn edits_round_trip(
            image in proptest::collection::vec(0_i64..400, 0..200),
            ops in proptest::collection::vec((0_u8..4, 0_usize..250, 0_i64..600), 0..40),
        ) {
            let mut node = image.clone();
            for (op, at, id) in ops {
                let at = if node.is_empty() { 0 } else { at % node.len() };
                match op {
                    0 => node.insert(at.min(node.len()), id),
                    1 if !node.is_empty() => { node.remove(at); }
                    2 if !node.is_empty() => node[at] = id,
                    _ if !node.is_empty() => {
                        let other = (at * 7 + 3) % node.len();
                        node.swap(at, other);
                    }
                    _ => {}
                }
            }
            let b = base(&image);
            let edits = encode_edits(&b, &node);
            prop_assert_eq!(decode_edits(&image, &edits), Some(node.clone()));
            let keep = |id: i64| id.rem_euclid(5) == 0;
            let keyed = positions_where(&image, keep);
            let want: Vec<i64> = node.iter().copied().filter(|id| keep(*id)).collect();
            prop_assert_eq!(decode_edits_where(&image, &keyed, &edits, keep), Some(want));
        }

        #[test]
        fn the_nearest_base_is_the_one_counting_every_id_finds(
            images in proptest::collection::vec(proptest::collection::vec(0_i64..300, 64..120), 1..6),
            pick in 0_usize..6,
            changes in proptest::collection::vec((0_usize..120, 0_i64..600), 0..60),
        ) {
            let bases: Vec<Arc<Base>> = images.iter().map(|i| Arc::new(Base::new(0, i.clone().into()))).collect();
            let mut ids = images[pick % images.len()].clone();
            for (at, id) in changes {
                let at = at % ids.len();
                ids[at] = id;
            }
            let nearest = bases
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    let shared = ids.iter().filter(|id| b.ids.contains(id)).count();
                    ((ids.len() - shared) + b.ids.len().saturating_sub(shared), i)
                })
                .min();
            let expected = match nearest {
                Some((edits, i)) if edits * 10 <= ids.len() => Choice::Edits(i),
                _ if bases.len() < MAX_BASES_PER_TYPE => Choice::NewBase,
                Some((edits, i)) if edits * 2 <= ids.len() => Choice::Edits(i),
                _ => Choice::Whole,
            };
            prop_assert_eq!(choose(&bases, &ids), expected);
            let full: Vec<Arc<Base>> = bases.iter().cycle().take(MAX_BASES_PER_TYPE).cloned().collect();
            let expected_full = match nearest {
                Some((edits, i)) if edits * 2 <= ids.len() => Choice::Edits(i),
                _ => Choice::Whole,
            };
            prop_assert_eq!(choose(&full, &ids), expected_full);
        }

        #[test]
        fn arbitrary_bytes_never_panic(image in proptest::collection::vec(any::<i64>(), 0..50), bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_edits(&image, &bytes);
        }
    }
}
