//! Environment variables inside string values: `${VAR}`, `${VAR:-default}`, `${VAR:?message}`
//! and `$$` for a literal `$`.
//!
//! Only string values are expanded, after the file is parsed: a `$` in a comment or a key is
//! never touched, and an expanded value can never change the file's structure.

/// Why a string could not be expanded, and where in it (a byte range of the string's text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvError {
    /// The message, naming the variable.
    pub message: String,
    /// Where in the string the reference starts and ends.
    pub at: std::ops::Range<usize>,
}

/// Expands the references in `text`, reading variables through `lookup`.
///
/// A `$` followed by anything but `{` or `$` stays as it is. A variable that is set but empty
/// counts as missing for `:-` and `:?`, as in POSIX shells.
///
/// ```
/// use sampler_config::expand;
/// let env = |name: &str| (name == "HOST").then(|| "db1".to_owned());
/// assert_eq!(expand("${HOST}:${PORT:-5432} $$5", &env).unwrap(), "db1:5432 $5");
/// let e = expand("${TOKEN:?set it in the unit file}", &env).unwrap_err();
/// assert_eq!(e.message, "environment variable TOKEN is not set: set it in the unit file");
/// ```
pub fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at = 0;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let start = at + i;
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            at = start + 2;
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            at = start + 1;
            rest = after;
            continue;
        };
        let Some(close) = body.find('}') else {
            return Err(EnvError {
                message:
                    "unclosed `${`: write `}` after the variable name, or `$$` for a literal `$`"
                        .to_owned(),
                at: start..at + rest.len(),
            });
        };
        let reference = &body[..close];
        let end = start + 2 + close + 1;
        let (name, op, arg) = match reference.find(":-").or_else(|| reference.find(":?")) {
            Some(j) => (&reference[..j], &reference[j..j + 2], &reference[j + 2..]),
            None => (reference, "", ""),
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return Err(EnvError {
                message: format!(
                    "invalid variable reference `${{{reference}}}`: a name is letters, digits and _, \
                     not starting with a digit, optionally followed by `:-default` or `:?message`"
                ),
                at: start..end,
            });
        }
        let value = lookup(name).filter(|v| !v.is_empty() || op.is_empty());
        match (value, op) {
            (Some(v), _) => out.push_str(&v),
            (None, ":-") => out.push_str(arg),
            (None, ":?") => {
                return Err(EnvError {
                    message: format!("environment variable {name} is not set: {arg}"),
                    at: start..end,
                })
            }
            (None, _) => {
                return Err(EnvError {
                    message: format!(
                        "environment variable {name} is not set (use `${{{name}:-default}}` for a default)"
                    ),
                    at: start..end,
                })
            }
        }
        at = end;
        rest = &body[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "A" => Some("alpha".into()),
            "EMPTY" => Some(String::new()),
            "DOLLAR" => Some("${A}".into()),
            _ => None,
        }
    }

    #[test]
    fn forms() {
        assert_eq!(expand("x", &env).unwrap(), "x");
        assert_eq!(expand("${A}", &env).unwrap(), "alpha");
        assert_eq!(expand("<${A}>", &env).unwrap(), "<alpha>");
        assert_eq!(expand("${B:-beta}", &env).unwrap(), "beta");
        assert_eq!(expand("${EMPTY:-d}", &env).unwrap(), "d");
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
        assert_eq!(expand("${A:-d}", &env).unwrap(), "alpha");
        assert_eq!(expand("$$", &env).unwrap(), "$");
        assert_eq!(expand("$$${A}", &env).unwrap(), "$alpha");
        assert_eq!(expand("a$b", &env).unwrap(), "a$b");
        assert_eq!(expand("cost: 5$", &env).unwrap(), "cost: 5$");
        // An expanded value is not expanded again.
        assert_eq!(expand("${DOLLAR}", &env).unwrap(), "${A}");
        assert_eq!(expand("${B:-a:-b}", &env).unwrap(), "a:-b");
    }

    #[test]
    fn errors_name_the_variable_and_where() {
        let e = expand("url=${NOPE}/x", &env).unwrap_err();
        assert_eq!(
            e.message,
            "environment variable NOPE is not set (use `${NOPE:-default}` for a default)"
        );
        assert_eq!(e.at, 4..11);
        let e = expand("${NOPE:?needed for auth}", &env).unwrap_err();
        assert_eq!(
            e.message,
            "environment variable NOPE is not set: needed for auth"
        );
        assert!(expand("${", &env).unwrap_err().message.contains("unclosed"));
        assert!(expand("${1A}", &env)
            .unwrap_err()
            .message
            .contains("invalid"));
        assert!(expand("${}", &env).unwrap_err().message.contains("invalid"));
        assert!(expand("${A B}", &env)
            .unwrap_err()
            .message
            .contains("invalid"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_and_text_without_dollar_is_unchanged(s in ".{0,64}") {
            let r = expand(&s, &env);
            if !s.contains('$') {
                proptest::prop_assert_eq!(r.unwrap(), s);
            }
        }
    }
}
