//! The quoting context of POSIX `sh` text, so a parameter reference can be written in the form
//! that keeps the value one word, and never as shell syntax.
//!
//! The plan never copies a parameter value into a script: it writes `${FLOTILLA_PARAM_name}` and
//! passes the value in the environment. The shell never re-parses the result of a parameter
//! expansion, so whatever the value holds (`;`, `$(...)`, backticks, quotes, newlines) stays
//! data. This module only chooses the spelling of the reference for the place it lands in:
//!
//! | context the author's text is in | written as          |
//! |---------------------------------|---------------------|
//! | unquoted (and comments)         | `"${VAR}"`          |
//! | inside `"..."`                  | `${VAR}`            |
//! | inside `'...'`                  | `'"${VAR}"'`        |
//! | inside `$'...'`                 | `'"${VAR}"$'`       |
//! | heredoc body, unquoted delimiter| `${VAR}`            |
//! | heredoc body, quoted delimiter  | refused: nothing expands there |
//! | right after a backslash         | refused: the backslash would eat the reference |
//!
//! Command substitutions (`$(...)`, backticks) open a fresh unquoted context, even inside
//! double quotes, and the scanner follows them, so `"$(cat "{{ f }}")"` keeps the value one word.
//!
//! Invariant: every spelling is quote-balanced for the context it is chosen for, so the author's
//! text after it keeps its meaning; [`Scanner::reference`] checks this by scanning its own output
//! and refuses if the state moved. Where the scanner's reading of the author's shell is wrong
//! (a `)` in a `case` pattern inside `$(...)`, say), the cost is word splitting of the value,
//! never its execution, because every spelling is a single parameter expansion.

/// Why a reference cannot be written at the current place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unplaceable {
    AfterBackslash,
    QuotedHeredoc,
    Unbalanced,
}

impl Unplaceable {
    pub(crate) fn explain(self) -> &'static str {
        match self {
            Self::AfterBackslash => "it directly follows a backslash, which would escape the reference",
            Self::QuotedHeredoc => {
                "it is inside a heredoc with a quoted delimiter (<<'EOF'), where nothing is expanded; \
                 use an unquoted delimiter"
            }
            Self::Unbalanced => "the quoting around it could not be balanced",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Heredoc {
    delimiter: String,
    strip_tabs: bool,
    expands: bool,
}

/// What ends a command substitution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closer {
    Paren,
    Backtick,
}

/// The context to return to when a command substitution ends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    resume: Mode,
    closer: Closer,
    parens: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Plain,
    Single,
    Double,
    AnsiC,
    Comment,
    Body(Heredoc),
}

/// Reads script text left to right and knows the quoting context at the end of it.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    mode: Mode,
    /// A backslash is waiting to escape the next character.
    escaped: bool,
    /// In plain text, the next character starts a word (so `#` would start a comment).
    word_start: bool,
    /// The previous character was an unescaped `$` (so `'` opens `$'...'` and `(` a substitution).
    dollar: bool,
    /// Command substitutions the current text is inside, innermost last.
    frames: Vec<Frame>,
    /// Open plain parentheses inside the innermost substitution (subshells, `$((`).
    parens: usize,
    /// Consecutive plain `<` characters, to tell `<<` from `<` and `<<<`.
    less_thans: usize,
    /// The current physical line so far.
    line: String,
    /// Byte offsets in `line` just after each `<<` seen in plain text on this line.
    heredoc_operators: Vec<usize>,
    /// Heredocs whose bodies start at the next line, in order.
    pending: Vec<Heredoc>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self {
            mode: Mode::Plain,
            escaped: false,
            word_start: true,
            dollar: false,
            frames: Vec::new(),
            parens: 0,
            less_thans: 0,
            line: String::new(),
            heredoc_operators: Vec::new(),
            pending: Vec::new(),
        }
    }
}

impl Scanner {
    /// Advances over text that goes into the script as written.
    pub(crate) fn feed(&mut self, text: &str) {
        for c in text.chars() {
            self.step(c);
        }
    }

    /// The spelling of a reference to environment variable `var` at the current place, after
    /// checking that writing it leaves the quoting state as it was.
    pub(crate) fn reference(&mut self, var: &str) -> Result<String, Unplaceable> {
        if self.escaped {
            return Err(Unplaceable::AfterBackslash);
        }
        let spelled = match &self.mode {
            Mode::Plain | Mode::Comment => format!("\"${{{var}}}\""),
            Mode::Double => format!("${{{var}}}"),
            Mode::Single => format!("'\"${{{var}}}\"'"),
            Mode::AnsiC => format!("'\"${{{var}}}\"$'"),
            Mode::Body(heredoc) if heredoc.expands => format!("${{{var}}}"),
            Mode::Body(_) => return Err(Unplaceable::QuotedHeredoc),
        };
        let before = self.quoting();
        self.feed(&spelled);
        if self.quoting() != before {
            return Err(Unplaceable::Unbalanced);
        }
        Ok(spelled)
    }

    /// Everything that decides how the following text is read.
    fn quoting(&self) -> (Mode, bool, Vec<Frame>, usize) {
        (self.mode.clone(), self.escaped, self.frames.clone(), self.parens)
    }

    fn open(&mut self, resume: Mode, closer: Closer) {
        self.frames.push(Frame { resume, closer, parens: self.parens });
        self.parens = 0;
        self.mode = Mode::Plain;
        self.dollar = false;
        self.less_thans = 0;
    }

    fn close(&mut self) {
        if let Some(frame) = self.frames.pop() {
            self.mode = frame.resume;
            self.parens = frame.parens;
        }
        self.dollar = false;
    }

    fn innermost(&self) -> Option<Closer> {
        self.frames.last().map(|frame| frame.closer)
    }

    fn step(&mut self, c: char) {
        if c == '\n' {
            self.end_line();
            return;
        }
        self.line.push(c);
        match self.mode {
            Mode::Plain => self.plain(c),
            Mode::Single => {
                if c == '\'' {
                    self.enter_plain();
                }
            }
            Mode::Double => {
                let dollar = std::mem::take(&mut self.dollar);
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '"' {
                    self.enter_plain();
                } else if c == '(' && dollar {
                    self.open(Mode::Double, Closer::Paren);
                } else if c == '`' {
                    self.open(Mode::Double, Closer::Backtick);
                } else if c == '$' {
                    self.dollar = true;
                }
            }
            Mode::AnsiC => {
                if self.escaped {
                    self.escaped = false;
                } else if c == '\\' {
                    self.escaped = true;
                } else if c == '\'' {
                    self.enter_plain();
                }
            }
            Mode::Comment => {}
            Mode::Body(ref heredoc) => {
                if heredoc.expands {
                    self.escaped = !self.escaped && c == '\\';
                }
            }
        }
    }

    fn enter_plain(&mut self) {
        self.mode = Mode::Plain;
        // A closing quote continues the word: `'a'#b` is one word, not a comment.
        self.word_start = false;
        self.dollar = false;
        self.less_thans = 0;
    }

    fn plain(&mut self, c: char) {
        if self.escaped {
            self.escaped = false;
            self.word_start = false;
            self.dollar = false;
            self.less_thans = 0;
            return;
        }
        let dollar = self.dollar;
        self.dollar = false;
        if c == '<' {
            self.less_thans += 1;
            match self.less_thans {
                2 => self.heredoc_operators.push(self.line.len()),
                // `<<<` is a here-string, not a heredoc.
                3 => {
                    self.heredoc_operators.pop();
                }
                _ => {}
            }
        } else {
            self.less_thans = 0;
        }
        match c {
            '\\' => self.escaped = true,
            '\'' if dollar => self.mode = Mode::AnsiC,
            '\'' => self.mode = Mode::Single,
            '"' => self.mode = Mode::Double,
            '#' if self.word_start => self.mode = Mode::Comment,
            '$' => self.dollar = true,
            '(' if dollar => self.open(Mode::Plain, Closer::Paren),
            '(' => self.parens += 1,
            ')' if self.parens > 0 => self.parens -= 1,
            ')' if self.innermost() == Some(Closer::Paren) => self.close(),
            '`' if self.innermost() == Some(Closer::Backtick) => self.close(),
            '`' => self.open(Mode::Plain, Closer::Backtick),
            _ => {}
        }
        self.word_start = matches!(c, ' ' | '\t' | ';' | '&' | '|' | '(' | ')' | '<' | '>');
    }

    fn end_line(&mut self) {
        let line = std::mem::take(&mut self.line);
        let operators = std::mem::take(&mut self.heredoc_operators);
        self.less_thans = 0;
        self.dollar = false;
        match &self.mode {
            Mode::Plain | Mode::Comment => {
                self.pending.extend(operators.iter().filter_map(|&at| heredoc_after(&line, at)));
                self.mode = Mode::Plain;
                self.word_start = true;
                // A backslash before a newline joins the lines: the command, and so the wait for
                // any heredoc body, goes on.
                if self.escaped {
                    self.escaped = false;
                    return;
                }
                self.start_next_body();
            }
            Mode::Double | Mode::AnsiC => self.escaped = false,
            Mode::Single => {}
            Mode::Body(heredoc) => {
                self.escaped = false;
                let text = if heredoc.strip_tabs { line.trim_start_matches('\t') } else { line.as_str() };
                if text == heredoc.delimiter {
                    self.mode = Mode::Plain;
                    self.word_start = true;
                    self.start_next_body();
                }
            }
        }
    }

    fn start_next_body(&mut self) {
        if !self.pending.is_empty() {
            let next = self.pending.remove(0);
            self.mode = Mode::Body(next);
        }
    }
}

/// Reads the delimiter word after a `<<` ending at byte `at` of `line`.
fn heredoc_after(line: &str, at: usize) -> Option<Heredoc> {
    let rest = line.get(at..)?;
    let (strip_tabs, rest) = match rest.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let mut delimiter = String::new();
    let mut quoted = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => delimiter.push(c),
            (None, '\'' | '"') => {
                quoted = true;
                quote = Some(c);
            }
            (None, '\\') => {
                quoted = true;
                if let Some(next) = chars.next() {
                    delimiter.push(next);
                }
            }
            (None, ' ' | '\t' | ';' | '&' | '|' | '<' | '>' | '(' | ')') => break,
            (None, c) => delimiter.push(c),
        }
    }
    (!delimiter.is_empty()).then_some(Heredoc { delimiter, strip_tabs, expands: !quoted })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spelled(before: &str) -> Result<String, Unplaceable> {
        let mut scanner = Scanner::default();
        scanner.feed(before);
        scanner.reference("V")
    }

    #[test]
    fn reference_spelling_follows_the_quoting_context() {
        let cases: &[(&str, Result<&str, Unplaceable>)] = &[
            ("echo ", Ok("\"${V}\"")),
            ("echo \"hello ", Ok("${V}")),
            ("echo 'hello ", Ok("'\"${V}\"'")),
            ("echo $'a\\n", Ok("'\"${V}\"$'")),
            ("echo \"it's ", Ok("${V}")),
            ("echo 'say \"", Ok("'\"${V}\"'")),
            ("echo \"a\" 'b' ", Ok("\"${V}\"")),
            ("echo \"a \\\" ", Ok("${V}")),
            ("echo \\' ", Ok("\"${V}\"")),
            ("echo hi # it's ", Ok("\"${V}\"")),
            ("echo a#b'", Ok("'\"${V}\"'")),
            ("echo \"multi\nline ", Ok("${V}")),
            ("cat <<EOF\nHello ", Ok("${V}")),
            ("cat <<-EOF\n\tHello ", Ok("${V}")),
            ("cat <<'EOF'\nHello ", Err(Unplaceable::QuotedHeredoc)),
            ("cat <<\"EOF\"\nHello ", Err(Unplaceable::QuotedHeredoc)),
            ("cat <<\\EOF\nHello ", Err(Unplaceable::QuotedHeredoc)),
            ("cat <<EOF\nit's\nEOF\necho ", Ok("\"${V}\"")),
            ("cat <<-EOF\n\tx\n\tEOF\necho '", Ok("'\"${V}\"'")),
            ("cat <<<'here' ", Ok("\"${V}\"")),
            ("cat <<A <<'B'\na\nA\n", Err(Unplaceable::QuotedHeredoc)),
            ("cat <<A <<'B'\na\nA\nb\nB\n", Ok("\"${V}\"")),
            ("echo 'a' # <<EOF\n", Ok("\"${V}\"")),
            ("echo \"<<EOF\"\n", Ok("\"${V}\"")),
            ("echo \\", Err(Unplaceable::AfterBackslash)),
            ("echo \"\\", Err(Unplaceable::AfterBackslash)),
            ("echo a \\\n", Ok("\"${V}\"")),
            ("echo \"$(cat \"", Ok("${V}")),
            ("echo \"$(cat ", Ok("\"${V}\"")),
            ("echo \"$(cat '", Ok("'\"${V}\"'")),
            ("echo \"$(cat x)", Ok("${V}")),
            ("echo \"$( (a) ", Ok("\"${V}\"")),
            ("echo \"$( (a) ) ", Ok("${V}")),
            ("echo $((1 + 2)) ", Ok("\"${V}\"")),
            ("echo \"`cat ", Ok("\"${V}\"")),
            ("echo \"`cat` ", Ok("${V}")),
            ("echo `cat \"", Ok("${V}")),
            ("x=$(\ncat \"", Ok("${V}")),
        ];
        for (before, expected) in cases {
            assert_eq!(spelled(before), expected.map(str::to_owned), "{before:?}");
        }
    }

    proptest::proptest! {
        /// Whatever shell text comes first, a reference is either placed balanced or refused for
        /// a stated reason; the balance check never has to fire.
        #[test]
        fn references_are_balanced_after_any_text(before in "[a-z $'\"\\\\`()#<>;\n\t-]{0,60}") {
            let mut scanner = Scanner::default();
            scanner.feed(&before);
            let outcome = scanner.reference("V");
            proptest::prop_assert!(outcome != Err(Unplaceable::Unbalanced), "{:?}", before);
        }
    }

    #[test]
    fn a_reference_leaves_the_state_where_it_was() {
        for before in ["echo ", "echo \"x ", "echo 'x ", "echo $'x ", "cat <<E\nx ", "# c "] {
            let mut scanner = Scanner::default();
            scanner.feed(before);
            let (mode, escaped) = (scanner.mode.clone(), scanner.escaped);
            assert!(scanner.reference("V").is_ok(), "{before:?}");
            assert_eq!((scanner.mode.clone(), scanner.escaped), (mode, escaped), "{before:?}");
        }
    }
}
