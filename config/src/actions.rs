//! `[[action]]` tables: threshold rules checked with spans, like the exporter tables.

use std::ops::Range;

use sampler_actions::{Action, Condition, Cooldown, Rule};
use sampler_api::validate_label_key;
use toml::de::DeValue;
use toml::Spanned;

use crate::load::Walk;

const KEYS: &[&str] = &[
    "name", "when", "labels", "for", "cooldown", "recover", "signal", "exec", "log", "timeout",
];
const MAX_FOR: i64 = 1_000_000;

/// Checks every `[[action]]`, collecting problems into `w`.
pub(crate) fn actions(w: &mut Walk<'_>, v: &Spanned<DeValue<'_>>) -> Vec<Rule> {
    let DeValue::Array(a) = v.get_ref() else {
        w.error_hint(
            format!(
                "`action` must be an array of tables, not {}",
                v.get_ref().type_str()
            ),
            v.span(),
            "write each rule as an `[[action]]` table".into(),
        );
        return Vec::new();
    };
    let mut rules: Vec<Rule> = Vec::new();
    for (i, t) in a.iter().enumerate() {
        if let Some(r) = action(w, t, i) {
            if rules.iter().any(|o| o.name == r.name) {
                w.error_hint(
                    format!("two actions are named {:?}", r.name),
                    t.span(),
                    "give each `[[action]]` its own `name`".into(),
                );
            } else {
                rules.push(r);
            }
        }
    }
    rules
}

/// Where a problem at `at` inside the string value `v` is in the file.
fn inner_span(
    source: &str,
    v: &Spanned<DeValue<'_>>,
    text: &str,
    at: Range<usize>,
) -> Range<usize> {
    let span = v.span();
    let raw = source.get(span.clone()).unwrap_or("");
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| raw.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')));
    match inner {
        Some(t) if t == text => span.start + 1 + at.start..span.start + 1 + at.end.max(at.start),
        _ => span,
    }
}

fn condition(w: &mut Walk<'_>, v: &Spanned<DeValue<'_>>, what: &str) -> Option<Condition> {
    let text = w.string(v, what)?.to_owned();
    match Condition::parse(&text) {
        Ok(c) => Some(c),
        Err(e) => {
            let at = inner_span(w.source, v, &text, e.at.clone());
            w.error_hint(
                format!("invalid condition in {what}: {}", e.message),
                at,
                "write NAME OP VALUE, such as \"process.memory.usage > 1.5 GiB\", \
                 \"rate(NAME) > 100\", \"p99(NAME) > 250ms\" or \"NAME > 70% of OTHER\""
                    .into(),
            );
            None
        }
    }
}

fn action(w: &mut Walk<'_>, v: &Spanned<DeValue<'_>>, index: usize) -> Option<Rule> {
    let t = w.table(v, "an [[action]]")?;
    let name = match t.get("name") {
        Some(n) => w.string(n, "`name` of an [[action]]")?.to_owned(),
        None => format!("action{}", index + 1),
    };
    let what = format!("action {name:?}");
    w.unknown_keys(t, KEYS, &what);
    let Some(when_v) = t.get("when") else {
        w.error_hint(
            format!("{what} has no `when`"),
            v.span(),
            "add a condition, such as `when = \"process.memory.usage > 1 GiB\"`".into(),
        );
        return None;
    };
    let mut ok = true;
    let cond = condition(w, when_v, &format!("`when` of {what}"));
    let recover = match t.get("recover") {
        Some(r) => {
            let c = condition(w, r, &format!("`recover` of {what}"));
            ok &= c.is_some();
            c
        }
        None => None,
    };
    let mut labels = Vec::new();
    if let Some(l) = t.get("labels") {
        for (k, ks, val, _) in w.string_map(l, &format!("`labels` of {what}")) {
            match validate_label_key(&k) {
                Ok(()) => labels.push((k, val)),
                Err(e) => {
                    ok = false;
                    w.error(format!("{e} in `labels` of {what}"), ks);
                }
            }
        }
    }
    let mut for_harvests = 1;
    if let Some(f) = t.get("for") {
        match f.get_ref() {
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(n) if (1..=MAX_FOR).contains(&n) => for_harvests = n as u32,
                _ => {
                    ok = false;
                    w.error(
                        format!(
                            "`for` of {what} must be from 1 to {MAX_FOR} harvests, not {}",
                            i.as_str()
                        ),
                        f.span(),
                    );
                }
            },
            other => {
                ok = false;
                w.error(
                    format!(
                        "`for` of {what} must be a number of harvests, not {}",
                        other.type_str()
                    ),
                    f.span(),
                );
            }
        }
    }
    let mut cooldown = Cooldown::default();
    if let Some(c) = t.get("cooldown") {
        match w.string(c, &format!("`cooldown` of {what}")) {
            Some(text) => match Cooldown::parse(text) {
                Ok(cd) => cooldown = cd,
                Err(e) => {
                    ok = false;
                    w.error_hint(
                        format!("{e} for `cooldown` of {what}"),
                        c.span(),
                        "write a duration (\"30s\", \"5m\") or a number of harvests (\"3 harvests\")".into(),
                    );
                }
            },
            None => ok = false,
        }
    }
    let mut timeout = sampler_actions::DEFAULT_TIMEOUT;
    if let Some(c) = t.get("timeout") {
        match w.duration(c, &format!("`timeout` of {what}")) {
            Some(d) if !d.is_zero() => timeout = d,
            Some(_) => {
                ok = false;
                w.error(format!("`timeout` of {what} must be more than 0"), c.span());
            }
            None => ok = false,
        }
    }
    let mut chosen: Vec<(&str, Range<usize>)> = Vec::new();
    let mut act = Action::Log;
    if let Some(s) = t.get("signal") {
        chosen.push(("signal", s.span()));
        if let Some(n) = w.string(s, &format!("`signal` of {what}")) {
            match Action::signal(n) {
                Some(a) => act = a,
                None => {
                    ok = false;
                    w.error_hint(
                        format!("unknown signal {n:?} in {what}"),
                        s.span(),
                        format!(
                            "the signals are {}",
                            Action::signal_names()
                                .map(|s| format!("SIG{s}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
            }
        } else {
            ok = false;
        }
    }
    if let Some(e) = t.get("exec") {
        chosen.push(("exec", e.span()));
        match w.string(e, &format!("`exec` of {what}")) {
            Some(c) if !c.trim().is_empty() => act = Action::Command(c.to_owned()),
            Some(_) => {
                ok = false;
                w.error(format!("`exec` of {what} is empty"), e.span());
            }
            None => ok = false,
        }
    }
    if let Some(l) = t.get("log") {
        chosen.push(("log", l.span()));
        if !matches!(l.get_ref(), DeValue::Boolean(true)) {
            ok = false;
            w.error(
                format!("`log` of {what} must be true (leave it out otherwise)"),
                l.span(),
            );
        }
    }
    if chosen.len() > 1 {
        ok = false;
        w.error_hint(
            format!("{what} has more than one action"),
            chosen[1].1.clone(),
            "give one of `signal`, `exec` or `log`".into(),
        );
    }
    let condition = cond?;
    if !ok {
        return None;
    }
    Some(Rule {
        name,
        condition,
        labels,
        for_harvests,
        cooldown,
        recover,
        action: act,
        timeout,
    })
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn errors(text: &str) -> String {
        Config::parse("t.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn resolves_rules() {
        let c = Config::parse(
            "t.toml",
            r#"
[[action]]
name = "fat"
when = "process.memory.usage > 1.5 GiB"
labels = { name = "worker" }
for = 3
cooldown = "30s"
recover = "process.memory.usage < 1 GiB"
signal = "USR1"
[[action]]
when = "p99(http.server.duration) > 250ms"
exec = "echo $SAMPLER_NAME"
timeout = "2s"
"#,
        )
        .unwrap();
        assert_eq!(c.actions.len(), 2);
        let d = c.describe();
        assert!(
            d.contains("action fat: when process.memory.usage > 1610612736 {name=\"worker\"} for 3 harvests, cooldown 30s, recover when process.memory.usage < 1073741824, signal SIGUSR1"),
            "{d}"
        );
        assert!(
            d.contains("action action2: when p99(http.server.duration) > 0.25 for 1 harvest, exec \"echo $SAMPLER_NAME\" (timeout 2s)"),
            "{d}"
        );
    }

    #[test]
    fn r17_cooldown_as_a_number_of_harvests() {
        let c = Config::parse(
            "t.toml",
            "[[action]]\nname = \"fat\"\nwhen = \"a.b > 3\"\ncooldown = \"3 harvests\"\n",
        )
        .unwrap();
        assert_eq!(
            c.actions[0].cooldown,
            sampler_actions::Cooldown::Harvests(3)
        );
        assert!(
            c.describe()
                .contains("action fat: when a.b > 3 for 1 harvest, cooldown 3 harvests, log"),
            "{}",
            c.describe()
        );
        let e = errors("[[action]]\nwhen = \"a.b > 3\"\ncooldown = \"three harvests\"\n");
        assert!(e.contains("t.toml:3:12"), "{e}");
        assert!(
            e.contains("invalid cooldown \"three harvests\": expected a whole number of harvests"),
            "{e}"
        );
        let e = errors("[[action]]\nwhen = \"a.b > 3\"\ncooldown = 3\n");
        assert!(e.contains("`cooldown` of action \"action1\""), "{e}");
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = errors("[[action]]\nwhen = \"a.b > 3 parsecs\"\n");
        assert!(e.contains("t.toml:2:17"), "{e}");
        assert!(e.contains("unknown unit `parsecs`"), "{e}");
        let e = errors("[[action]]\nwhen = \"a.b ~ 3\"\n");
        assert!(e.contains("t.toml:2:13"), "{e}");
        assert!(e.contains("expected a comparison"), "{e}");
        let e = errors("[[action]]\nwhen = \"a.b > 3\"\nsignal = \"SIGFOO\"\n");
        assert!(e.contains("t.toml:3:10"), "{e}");
        assert!(e.contains("unknown signal \"SIGFOO\""), "{e}");
        let e = errors("[[action]]\nwhen = \"a.b > 3\"\nsignal = \"TERM\"\nexec = \"x\"\n");
        assert!(e.contains("more than one action"), "{e}");
        let e = errors("[[action]]\nwhen = \"a.b > 3\"\nfor = 0\ncooldon = \"1s\"\n");
        assert!(
            e.contains("`for` of action \"action1\" must be from 1"),
            "{e}"
        );
        assert!(e.contains("did you mean `cooldown`?"), "{e}");
        let e = errors("[[action]]\nsignal = \"TERM\"\n");
        assert!(e.contains("has no `when`"), "{e}");
    }
}
