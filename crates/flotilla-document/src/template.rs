//! `{{ name }}` parameter references inside step inputs.
//!
//! A reference is `{{`, optional spaces or tabs, a parameter name (letters, digits, `_`),
//! optional spaces or tabs, `}}`. Anything else between braces is ordinary text and is left as
//! written: `{{param:/path}}` and `{{ssm:/path}}` are for the server to resolve later, and
//! `{{ .State }}` is a Go template inside someone's `docker inspect` command.
//!
//! Invariant: splitting is total (never fails) and lossless: joining the pieces, with each
//! reference written back as it appeared, gives the original text.

/// One piece of an input string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Text the document author wrote.
    Text(&'a str),
    /// A reference to the named parameter.
    Param(&'a str),
}

/// Splits `text` into author text and parameter references.
pub(crate) fn pieces(text: &str) -> Vec<Piece<'_>> {
    let bytes = text.as_bytes();
    let mut pieces = Vec::new();
    let mut text_start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if let Some((name_start, name_end, end)) = reference_at(bytes, i) {
            if let Some(before) = text.get(text_start..i).filter(|s| !s.is_empty()) {
                pieces.push(Piece::Text(before));
            }
            if let Some(name) = text.get(name_start..name_end) {
                pieces.push(Piece::Param(name));
            }
            i = end;
            text_start = end;
        } else {
            i += 1;
        }
    }
    if let Some(rest) = text.get(text_start..).filter(|s| !s.is_empty()) {
        pieces.push(Piece::Text(rest));
    }
    pieces
}

/// Matches a reference starting at `start`: (name start, name end, end of the reference).
/// Every byte it accepts is ASCII, so all three are char boundaries.
fn reference_at(bytes: &[u8], start: usize) -> Option<(usize, usize, usize)> {
    let blank = |i: usize| matches!(bytes.get(i), Some(b' ' | b'\t'));
    let name_char = |i: usize| bytes.get(i).is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
    if bytes.get(start..start + 2) != Some(b"{{") {
        return None;
    }
    let mut i = start + 2;
    while blank(i) {
        i += 1;
    }
    let name_start = i;
    while name_char(i) {
        i += 1;
    }
    let name_end = i;
    if name_end == name_start {
        return None;
    }
    while blank(i) {
        i += 1;
    }
    (bytes.get(i..i + 2) == Some(b"}}")).then_some((name_start, name_end, i + 2))
}

/// The parameter named when `text` is exactly one reference and nothing else.
pub(crate) fn whole_reference(text: &str) -> Option<&str> {
    match pieces(text).as_slice() {
        [Piece::Param(name)] => Some(name),
        _ => None,
    }
}

/// The parameters referenced in `text`, in order, with repeats.
pub(crate) fn references(text: &str) -> Vec<&str> {
    pieces(text)
        .into_iter()
        .filter_map(|piece| match piece {
            Piece::Param(name) => Some(name),
            Piece::Text(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Piece::{Param, Text};
    use super::*;

    #[test]
    fn splits_references_from_text() {
        let cases: &[(&str, &[Piece<'_>])] = &[
            ("", &[]),
            ("echo hi", &[Text("echo hi")]),
            ("{{name}}", &[Param("name")]),
            ("{{ name }}", &[Param("name")]),
            ("{{\tname  }}", &[Param("name")]),
            ("echo {{ a }}-{{b}}!", &[Text("echo "), Param("a"), Text("-"), Param("b"), Text("!")]),
            ("{{{ x }}}", &[Text("{"), Param("x"), Text("}")]),
            ("{{param:/fleet/db}}", &[Text("{{param:/fleet/db}}")]),
            ("{{ ssm:/x }} {{ y }}", &[Text("{{ ssm:/x }} "), Param("y")]),
            ("docker inspect -f '{{ .State }}'", &[Text("docker inspect -f '{{ .State }}'")]),
            ("{{ }}", &[Text("{{ }}")]),
            ("{{ a b }}", &[Text("{{ a b }}")]),
            ("{{ a", &[Text("{{ a")]),
            ("é{{ a }}ü", &[Text("é"), Param("a"), Text("ü")]),
        ];
        for (text, expected) in cases {
            assert_eq!(pieces(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn whole_reference_is_exactly_one_reference() {
        let cases = [
            ("{{ commands }}", Some("commands")),
            ("{{commands}}", Some("commands")),
            (" {{ commands }}", None),
            ("{{ a }}{{ b }}", None),
            ("sudo {{ commands }}", None),
            ("{{param:/x}}", None),
        ];
        for (text, expected) in cases {
            assert_eq!(whole_reference(text), expected, "{text:?}");
        }
        assert_eq!(references("{{a}} {{ b }} {{a}}"), ["a", "b", "a"]);
    }
}
