//! Printing results: aligned tables for people, JSON and YAML for scripts (CLI.md shapes).
//!
//! Invariants: all of the CLI's standard output goes through [`out!`]/[`outln!`] (or
//! [`print`]), which return the write error instead of panicking, so a closed pipe
//! (`flotilla nodes ls | head -1`) ends the command quietly (`main` maps it to status 141);
//! every table cell and every `show` value passes through [`printable`], so a string an agent
//! controls (hostname, OS name, tags, inventory values) cannot send control sequences to the
//! terminal. JSON and YAML stay exact: their encoders escape control characters themselves.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::Write as _;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// Writes to standard output; the error (a closed pipe) goes to the caller instead of a panic.
pub fn write_out(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    std::io::stdout().lock().write_fmt(args)
}

/// `print!` that returns `std::io::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_out(format_args!($($arg)*)) };
}

/// `println!` that returns `std::io::Result<()>`.
macro_rules! outln {
    () => { $crate::output::write_out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}

pub(crate) use {out, outln};

/// True when `error` (or one of its causes) is a write to a closed pipe.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Characters that must not reach a terminal raw: C0 and C1 controls (ESC starts ANSI
/// sequences), DEL, and the Unicode bidirectional overrides that reorder what is displayed.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character unsafe for a terminal written as an escape (`\x1b`,
/// `\u{202e}`, `\n`, `\t`); a backslash is doubled only when something was escaped, so clean
/// text is shown unchanged and escaped text stays unambiguous.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_for_terminal) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if unsafe_for_terminal(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_for_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints `value` as JSON or YAML, or as a table with `headers` and `rows`.
pub fn print<T: Serialize>(format: Format, value: &T, headers: &[&str], rows: Vec<Vec<String>>) -> anyhow::Result<()> {
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(value)?)?,
        Format::Yaml => out!("{}", serde_yaml::to_string(value)?)?,
        Format::Table => out!("{}", table(headers, &rows))?,
    }
    Ok(())
}

/// Left-aligned columns separated by two spaces; cells are made [`printable`].
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<Cow<'_, str>>> = rows.iter().map(|row| row.iter().map(|c| printable(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in &rows {
        out.push_str(&line(row.iter().map(|c| c.as_ref()).collect()));
    }
    out
}

/// `k=v,k2=v2` for a table cell.
pub fn tags_cell(tags: &std::collections::BTreeMap<String, String>) -> String {
    tags.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_columns() {
        let t = table(&["ID", "NAME"], &[vec!["1".into(), "alpha".into()], vec!["22".into(), "b".into()]]);
        assert_eq!(t, "ID  NAME\n1   alpha\n22  b\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        let cases = [
            ("web-01", "web-01"),
            ("Ubuntu 22.04 ünïcödé", "Ubuntu 22.04 ünïcödé"),
            ("a\\b", "a\\b"),
            ("\u{1b}[31mred\u{1b}[0m", "\\x1b[31mred\\x1b[0m"),
            ("two\nlines\tand\rback", "two\\nlines\\tand\\rback"),
            ("bell\u{7}del\u{7f}c1\u{9b}", "bell\\x07del\\x7fc1\\x9b"),
            ("evil\u{202e}txt.exe", "evil\\u{202e}txt.exe"),
            ("\u{1b}]0;title\u{7}a\\b", "\\x1b]0;title\\x07a\\\\b"),
        ];
        for (raw, shown) in cases {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
        let t = table(&["HOST"], &[vec!["\u{1b}[2Jx".into()]]);
        assert_eq!(t, "HOST\n\\x1b[2Jx\n");
        assert!(!t.contains('\u{1b}'));
    }
}
