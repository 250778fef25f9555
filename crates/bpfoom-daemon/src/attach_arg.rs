//! `bpfoom run --attach POLICY=CGROUP [{ OPTIONS }]`: one instance from the
//! command line, with the same per-instance options, under the same names,
//! as an `[[attach]]` entry of the config file.
//!
//! OPTIONS is the body of a TOML inline table holding `[[attach]]` keys
//! (`instance`, `backoff_budget`, `backoff_timeout_ms`, `limit_reserve`,
//! `globals`, `maps`), for example
//! `--attach 'oomd_like.bpf.o=/job { backoff_budget = 2, maps = [{ map = "oomd_policies", key = "/job/a", value = { preference = 1 } }] }'`.
//! The argument becomes a one-entry config (`attach = [{ policy = ..,
//! cgroup = .., OPTIONS }]`) read by [`Config::parse`], so a key is spelled,
//! typed and checked exactly as in the file: there is no second vocabulary
//! to learn or to drift. (A flag per option, as `bpfoom attach` has, cannot
//! say which of several `--attach` it belongs to.)

use crate::config::{Config, ConfigError};

/// The parts of an `--attach` argument: the policy file, the cgroup and
/// the options table's body (without its braces), if any.
#[derive(Debug, PartialEq, Eq)]
pub struct AttachArg<'a> {
    /// The policy (`.bpf.o`, or `.bpf.c` that the CLI builds first).
    pub policy: &'a str,
    /// The cgroup.
    pub cgroup: &'a str,
    /// The options' `key = value, ...` text.
    pub options: Option<&'a str>,
}

/// Why an `--attach` argument does not split ([`split`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AttachArgError {
    /// No `POLICY=CGROUP` with both sides non-empty.
    #[error("expected POLICY=CGROUP or POLICY=CGROUP {{ OPTIONS }}, got {arg:?}")]
    Shape {
        /// The argument.
        arg: String,
    },
    /// An options table that does not end with `}`.
    #[error(
        "expected POLICY=CGROUP or POLICY=CGROUP {{ OPTIONS }}, got {arg:?}: the options must \
         end with '}}'"
    )]
    Unclosed {
        /// The argument.
        arg: String,
    },
}

/// Splits `POLICY=CGROUP [{ OPTIONS }]`. The options begin at the first
/// `{` after whitespace; the last `=` before them separates the policy
/// from the cgroup (a policy path may hold `=`, a cgroup path seldom does).
pub fn split(s: &str) -> Result<AttachArg<'_>, AttachArgError> {
    let expected = || AttachArgError::Shape { arg: s.into() };
    let (head, options) = match s.find(" {").or_else(|| s.find("\t{")) {
        Some(i) => {
            let body = s[i + 1..].trim_end();
            let inner = body
                .strip_prefix('{')
                .and_then(|b| b.strip_suffix('}'))
                .ok_or_else(|| AttachArgError::Unclosed { arg: s.into() })?;
            (
                s[..i].trim_end(),
                Some(inner.trim()).filter(|t| !t.is_empty()),
            )
        }
        None => (s.trim_end(), None),
    };
    let (policy, cgroup) = head
        .rsplit_once('=')
        .filter(|(p, c)| !p.is_empty() && !c.is_empty())
        .ok_or_else(expected)?;
    Ok(AttachArg {
        policy,
        cgroup,
        options,
    })
}

/// Reads an `--attach` argument as a one-entry config; errors name the
/// argument (`--attach 2: unknown field ...`, 1-based).
pub fn parse(s: &str, index: usize) -> Result<Config, ConfigError> {
    let name = format!("--attach {}", index + 1);
    let a = split(s).map_err(|e| ConfigError {
        file: name.clone(),
        line: 0,
        message: e.to_string(),
    })?;
    let quote = |v: &str| toml::Value::String(v.to_string()).to_string();
    let options = a.options.map(|o| format!(", {o}")).unwrap_or_default();
    let text = format!(
        "attach = [{{ policy = {}, cgroup = {}{options} }}]",
        quote(a.policy),
        quote(a.cgroup)
    );
    // One line: a location would only say "line 1".
    Config::parse(&text, &name).map_err(|e| ConfigError { line: 0, ..e })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn splits_policy_cgroup_and_options() {
        assert_eq!(
            split("p.bpf.o=/job").unwrap(),
            AttachArg {
                policy: "p.bpf.o",
                cgroup: "/job",
                options: None
            }
        );
        let a = split("dir=x/p.bpf.o=/job { backoff_budget = 2 }").unwrap();
        assert_eq!(
            (a.policy, a.cgroup, a.options),
            ("dir=x/p.bpf.o", "/job", Some("backoff_budget = 2"))
        );
        assert_eq!(split("p.bpf.o=/job {}").unwrap().options, None);
        for bad in ["p.bpf.o", "=/job", "p.bpf.o="] {
            assert_eq!(
                split(bad),
                Err(AttachArgError::Shape { arg: bad.into() }),
                "{bad}"
            );
        }
        assert_eq!(
            split("p=/j { a = 1").unwrap_err().to_string(),
            "expected POLICY=CGROUP or POLICY=CGROUP { OPTIONS }, got \"p=/j { a = 1\": the \
             options must end with '}'"
        );
    }

    #[test]
    fn options_use_the_config_files_names_and_checks() {
        let c = parse(
            "p.bpf.o=/job { instance = \"x\", backoff_budget = 2, backoff_timeout_ms = 50, \
             limit_reserve = \"64M\", globals = { min_rss = 4096 }, \
             maps = [{ map = \"prefs\", key = \"/job/a\", value = { preference = 2 } }] }",
            0,
        )
        .unwrap();
        let a = &c.attach[0];
        assert_eq!(a.policy.get_ref().to_str(), Some("p.bpf.o"));
        assert_eq!(a.cgroup.get_ref(), "/job");
        assert_eq!(a.instance.as_deref(), Some("x"));
        assert_eq!(a.backoff_budget, Some(2));
        assert_eq!(a.backoff_timeout_ms, Some(50));
        assert_eq!(a.limit_reserve.map(|s| s.0), Some(64 << 20));
        assert_eq!(a.globals.len(), 1);
        assert_eq!(a.maps.len(), 1);

        let e = parse("p.bpf.o=/job { budget = 2 }", 1).unwrap_err();
        assert_eq!(e.file, "--attach 2");
        assert!(e.message.contains("unknown field `budget`"), "{e:?}");
        let e = parse("p.bpf.o=/job { limit_reserve = \"lots\" }", 0).unwrap_err();
        assert!(e.message.contains("lots"), "{e:?}");
        // A quote in a path cannot escape into the generated TOML.
        let c = parse("a\"b.bpf.o=/j\"ob", 0).unwrap();
        assert_eq!(c.attach[0].cgroup.get_ref(), "/j\"ob");
    }
}
