//! The string rules of the CRD, each written once: the regular expression the schema
//! carries (the API server evaluates it) and the same rule as a Rust predicate (the hand
//! validator evaluates it, without a regex engine). `api::tests` compiles the patterns of
//! the generated CRD and checks both sides agree on the same examples.

use crate::policy::PolicyName;

/// One string rule of the CRD. The schema attributes take `regex` and `max_len` from here,
/// and the validator takes `accepts`, `max_len` and `expected`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pattern {
    /// The schema's `pattern` (also embedded in CEL rules through [`cel_string`]).
    pub regex: &'static str,
    /// The schema's `maxLength`, in characters.
    pub max_len: usize,
    /// Whether a value matches `regex` (the validator checks `max_len` first).
    pub accepts: fn(&str) -> bool,
    /// What a matching value looks like, for people.
    pub expected: &'static str,
}

impl Pattern {
    /// The validator's message when `value` breaks the schema's `maxLength` or `pattern`.
    pub(crate) fn refuses(&self, value: &str) -> Option<String> {
        let expected = self.expected;
        if value.chars().count() > self.max_len {
            Some(format!(
                "Too long: may not be more than {} bytes ({expected})",
                self.max_len
            ))
        } else if !(self.accepts)(value) {
            Some(format!("Invalid value: {value:?}: should match {expected}"))
        } else {
            None
        }
    }
}

/// `spec.project`.
pub(crate) const PROJECT: Pattern = Pattern {
    regex: r"^([a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{1,20})$",
    max_len: 30,
    accepts: is_project,
    expected: "a project id (6-30 lowercase letters, digits or hyphens, starting with a letter, not ending with a hyphen) or a project number",
};

/// Each entry of `spec.locations`.
pub(crate) const LOCATION: Pattern = Pattern {
    regex: r"^([a-z]+-[a-z]+[0-9]+|\*)$",
    max_len: 40,
    accepts: is_location,
    expected: "a Cloud Run region such as us-central1, or \"*\"",
};

/// Each entry of a selector's `names` and `exclude`.
pub(crate) const NAME_GLOB: Pattern = Pattern {
    regex: r"^[a-z0-9*?-]{1,63}$",
    max_len: 63,
    accepts: is_name_glob,
    expected: "1-63 lowercase letters, digits, '-', '*' or '?'",
};

/// `spec.policy.name`.
pub(crate) const POLICY_NAME: Pattern = Pattern {
    regex: r"^projects/[^/]+/platforms/cloudRun/policies/[^/]+$",
    max_len: 256,
    accepts: is_policy_name,
    expected: "projects/{project}/platforms/cloudRun/policies/{policy}",
};

/// `spec.interval` (the CEL rule for its floor repeats it as a guard).
pub(crate) const INTERVAL: Pattern = Pattern {
    regex: r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$",
    max_len: 20,
    accepts: is_interval_shape,
    expected: "a duration such as 90s, 10m or 1h",
};

/// A label key: of a `matchExpressions` requirement, and every `matchLabels` key (a CEL rule).
pub(crate) const LABEL_KEY: Pattern = Pattern {
    regex: r"^[a-z][a-z0-9_-]{0,62}$",
    max_len: 63,
    accepts: is_label_key,
    expected: "a Cloud Run label key: a lowercase letter, then up to 62 lowercase letters, digits, '_' or '-'",
};

/// A label value: of `matchLabels` and of a requirement's `values`.
pub(crate) const LABEL_VALUE: Pattern = Pattern {
    regex: r"^[a-z0-9_-]{0,63}$",
    max_len: 63,
    accepts: is_label_value,
    expected: "a Cloud Run label value: up to 63 lowercase letters, digits, '_' or '-'",
};

/// A pattern as a CEL string literal (single-quoted, backslashes escaped), for rules that
/// call `matches()`.
pub(crate) fn cel_string(regex: &str) -> String {
    format!("'{}'", regex.replace('\\', r"\\").replace('\'', r"\'"))
}

fn is_project(s: &str) -> bool {
    is_project_id(s) || is_project_number(s)
}

fn is_location(s: &str) -> bool {
    s == "*" || is_region(s)
}

fn is_policy_name(s: &str) -> bool {
    PolicyName::parse(s).is_some()
}

fn is_label_value(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

fn is_project_id(s: &str) -> bool {
    let b = s.as_bytes();
    (6..=30).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn is_project_number(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit())
}

fn is_region(s: &str) -> bool {
    // ^[a-z]+-[a-z]+[0-9]+$
    let Some((area, rest)) = s.split_once('-') else {
        return false;
    };
    let digits_at = rest
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (word, number) = rest.split_at(digits_at);
    !area.is_empty()
        && area.bytes().all(|c| c.is_ascii_lowercase())
        && !word.is_empty()
        && word.bytes().all(|c| c.is_ascii_lowercase())
        && !number.is_empty()
        && number.bytes().all(|c| c.is_ascii_digit())
}

fn is_name_glob(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'*' | b'?')
        })
}

fn is_label_key(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
}

fn is_interval_shape(s: &str) -> bool {
    // ^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        if int_len == 0 {
            return false;
        }
        rest = &rest[int_len..];
        if let Some(frac) = rest.strip_prefix('.') {
            let frac_len = frac.bytes().take_while(u8::is_ascii_digit).count();
            if frac_len == 0 {
                return false;
            }
            rest = &frac[frac_len..];
        }
        let unit = ["ns", "us", "ms", "s", "m", "h"]
            .into_iter()
            .find(|u| rest.starts_with(u));
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

/// `spec.expiresAt` of an exception: an RFC 3339 time (the CEL rule beside it checks it is
/// a real time).
pub(crate) const EXPIRES_AT: Pattern = Pattern {
    regex: r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$",
    max_len: 40,
    accepts: is_rfc3339_shape,
    expected: "an RFC 3339 time such as 2026-12-31T18:00:00Z",
};

fn is_rfc3339_shape(s: &str) -> bool {
    // ^DDDD-DD-DDTDD:DD:DD(\.D{1,9})?(Z|[+-]DD:DD)$
    fn digits(s: &str, n: usize) -> Option<&str> {
        let (head, tail) = s.split_at_checked(n)?;
        head.bytes().all(|c| c.is_ascii_digit()).then_some(tail)
    }
    fn lit(s: &str, c: char) -> Option<&str> {
        s.strip_prefix(c)
    }
    let date_time = || {
        let r = digits(s, 4)?;
        let r = digits(lit(r, '-')?, 2)?;
        let r = digits(lit(r, '-')?, 2)?;
        let r = digits(lit(r, 'T')?, 2)?;
        let r = digits(lit(r, ':')?, 2)?;
        digits(lit(r, ':')?, 2)
    };
    let Some(mut rest) = date_time() else {
        return false;
    };
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    if rest == "Z" {
        return true;
    }
    let Some(offset) = rest.strip_prefix(['+', '-']) else {
        return false;
    };
    digits(offset, 2)
        .and_then(|r| lit(r, ':'))
        .and_then(|r| digits(r, 2))
        .is_some_and(str::is_empty)
}

/// Each entry of a grant's `spec.namespaces` (a Kubernetes namespace name).
pub(crate) const NAMESPACE_NAME: Pattern = Pattern {
    regex: r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    max_len: 63,
    accepts: is_namespace_name,
    expected: "a namespace name: lowercase letters, digits and '-', starting and ending with a letter or digit",
};

/// Each entry of a grant's `spec.projects`: a project id, number or a glob over them.
pub(crate) const PROJECT_GLOB: Pattern = Pattern {
    regex: r"^[a-z0-9*?-]{1,30}$",
    max_len: 30,
    accepts: is_project_glob,
    expected:
        "a project id or number, or a glob over them (lowercase letters, digits, '-', '*' or '?')",
};

/// A Kubernetes label key (`team`, `example.com/team`) of a grant's namespace selector.
pub(crate) const K8S_LABEL_KEY: Pattern = Pattern {
    regex: r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
    max_len: 317,
    accepts: is_k8s_label_key,
    expected: "a Kubernetes label key such as team or example.com/team",
};

/// A Kubernetes label value of a grant's namespace selector.
pub(crate) const K8S_LABEL_VALUE: Pattern = Pattern {
    regex: r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
    max_len: 63,
    accepts: is_k8s_label_value,
    expected: "a Kubernetes label value: up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
};

fn is_namespace_name(s: &str) -> bool {
    is_dns_label(s)
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_project_glob(s: &str) -> bool {
    (1..=30).contains(&s.len())
        && s.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'-' | b'*' | b'?')
        })
}

fn is_k8s_label_key(s: &str) -> bool {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, s),
    };
    prefix.is_none_or(|p| p.split('.').all(is_dns_label))
        && !name.is_empty()
        && name.len() <= 63
        && is_k8s_label_value(name)
}

fn is_k8s_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.is_empty()
        || (b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric())
}
