//! Errors that point at the text: file, line, column, the offending text underlined, a hint.

use std::fmt;
use std::ops::Range;

/// One problem found in a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// What is wrong, naming the key and the value.
    pub message: String,
    /// The byte range of the offending text, when it has one.
    pub span: Option<Range<usize>>,
    /// What to do about it (`did you mean \`address\`?`).
    pub hint: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(message: impl Into<String>, span: Option<Range<usize>>) -> Self {
        Diagnostic {
            message: message.into(),
            span,
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Every problem found in one config file, rendered in the style of rustc:
///
/// ```text
/// error: unknown key `adress` in exporter "main" (kind prometheus)
///   --> sampler.toml:4:1
///    |
///  4 | adress = "127.0.0.1:9464"
///    | ^^^^^^
///    = help: did you mean `address`?
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file's name as given.
    pub file: String,
    /// The file's text (after reading; before expansion).
    pub source: String,
    /// Every problem, in the order of the file.
    pub diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// The 1-based line and column (in characters) of byte `at`.
    pub fn line_col(&self, at: usize) -> (usize, usize) {
        line_col(&self.source, at)
    }
}

pub(crate) fn line_col(source: &str, at: usize) -> (usize, usize) {
    let at = floor_char_boundary(source, at.min(source.len()));
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[start..at].chars().count() + 1)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, d) in self.diagnostics.iter().enumerate() {
            if n > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", d.message)?;
            match &d.span {
                Some(span) => {
                    let (line, col) = self.line_col(span.start);
                    let start =
                        floor_char_boundary(&self.source, span.start.min(self.source.len()));
                    let line_start = self.source[..start].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = self.source[start..]
                        .find('\n')
                        .map_or(self.source.len(), |i| start + i);
                    let text = self.source[line_start..line_end].trim_end_matches('\r');
                    let gutter = line.to_string().len();
                    writeln!(f, "{:gutter$}--> {}:{line}:{col}", "", self.file)?;
                    writeln!(f, "{:gutter$} |", "")?;
                    // Control characters (a tab, an escape) are shown as spaces, so the caret
                    // lines up and nothing reaches the terminal raw.
                    let shown: String = text
                        .chars()
                        .map(|c| if c.is_control() { ' ' } else { c })
                        .collect();
                    writeln!(f, "{line} | {shown}")?;
                    let end = span.end.min(line_end).max(start);
                    let width = self.source[start..floor_char_boundary(&self.source, end)]
                        .chars()
                        .count()
                        .max(1);
                    write!(
                        f,
                        "{:gutter$} | {:pad$}{}",
                        "",
                        "",
                        "^".repeat(width),
                        pad = col - 1
                    )?;
                    if let Some(hint) = &d.hint {
                        write!(f, "\n{:gutter$} = help: {hint}", "")?;
                    }
                }
                None => {
                    write!(f, " --> {}", self.file)?;
                    if let Some(hint) = &d.hint {
                        write!(f, "\n  = help: {hint}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, c)| d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

/// Edits (insert, delete, replace, swap of two neighbours) that turn `a` into `b`: the
/// optimal string alignment distance, so the common typo `paht` is one edit from `path`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let keys = ["address", "path", "gzip"];
        assert_eq!(did_you_mean("adress", keys), Some("address"));
        assert_eq!(did_you_mean("gzp", keys), Some("gzip"));
        assert_eq!(did_you_mean("colour", keys), None);
        assert_eq!(did_you_mean("paht", keys), Some("path"));
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("abc", ""), 3);
    }

    #[test]
    fn renders_line_column_and_caret() {
        let e = ConfigError {
            file: "s.toml".into(),
            source: "[harvest]\ninterval = \"ten\"\n".into(),
            diagnostics: vec![Diagnostic::new("bad", Some(21..26)).hint("use 10s")],
        };
        assert_eq!(
            e.to_string(),
            "error: bad\n --> s.toml:2:12\n  |\n2 | interval = \"ten\"\n  |            ^^^^^\n  = help: use 10s"
        );
    }
}
