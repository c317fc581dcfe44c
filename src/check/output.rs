//! Results for CI tools: SARIF 2.1.0 for code scanning, JUnit XML for test reports, GitHub workflow-command annotations.
//!
//! `check` and `validate` both describe what they found as [`Entry`]s — one per target,
//! binding, manifest problem or Cloud Run manifest — and these writers turn them into each
//! format. Every finding has a [`Rule`] (stable id, help text, level); where it points at a
//! file, the location is the manifest that declares it (a target's finding points at its
//! binding, the declaration that demands its policy).

use std::io::{self, Write};

use serde_json::{json, Value};

use super::report::Report;
use super::Verdict;
use crate::api::{EffectState, TargetState};
use crate::manifests::{ManifestError, Source};

/// What a finding says is wrong (or worth a look). The id is stable: code scanning tracks
/// results by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Rule {
    /// A binding manifest is invalid (schema, rule, duplicate, YAML, unreadable).
    InvalidManifest,
    /// A binding could not be checked (permission denied, project not found, ...).
    BindingError,
    /// A target does not carry its binding's policy.
    TargetDrifted,
    /// Equal-priority bindings want different policies for a target.
    TargetConflicted,
    /// A target could not be read or fixed.
    TargetFailed,
    /// A target carries a breakglass justification (it complies).
    TargetBreakglass,
    /// A target does not comply and an active BinAuthzException names it.
    TargetExcepted,
    /// A Cloud Run manifest a binding covers carries no Binary Authorization: a deploy from
    /// it clears the setting.
    DeployClears,
    /// A Cloud Run manifest a binding covers carries another policy, or a justification the
    /// binding clears.
    DeployNoncompliant,
    /// A Cloud Run manifest is covered by equal-priority bindings that disagree.
    DeployConflicted,
    /// A Cloud Run manifest does not say its project or region.
    DeployUnplaced,
    /// A Cloud Run manifest is placed in a project given by number that no binding names.
    DeployProjectNumber,
    /// A target carries its policy, but something it runs predates it (a note).
    TargetNotEffective,
    /// A project a binding names holds Cloud Run resources no binding matches (a note).
    ProjectUncovered,
}

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Fails the run.
    Error,
    /// Reported; does not fail the run by itself.
    Warning,
    /// For information: nothing is wrong with the binding.
    Note,
}

/// How a finding shows in a JUnit report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JunitKind {
    /// `<failure>`: the thing checked does not comply.
    Failure,
    /// `<error>`: it could not be checked.
    Error,
    /// A passed test case, the finding in `<system-out>`.
    Passed,
}

impl Rule {
    /// Every rule, in the order SARIF lists them (`ruleIndex`).
    pub const ALL: [Rule; 14] = [
        Self::InvalidManifest,
        Self::BindingError,
        Self::TargetDrifted,
        Self::TargetConflicted,
        Self::TargetFailed,
        Self::TargetBreakglass,
        Self::TargetExcepted,
        Self::DeployClears,
        Self::DeployNoncompliant,
        Self::DeployConflicted,
        Self::DeployUnplaced,
        Self::DeployProjectNumber,
        Self::TargetNotEffective,
        Self::ProjectUncovered,
    ];

    /// Stable id: `invalid-manifest`, `target-drifted`, ...
    pub fn id(self) -> &'static str {
        match self {
            Self::InvalidManifest => "invalid-manifest",
            Self::BindingError => "binding-error",
            Self::TargetDrifted => "target-drifted",
            Self::TargetConflicted => "target-conflicted",
            Self::TargetFailed => "target-failed",
            Self::TargetBreakglass => "target-breakglass",
            Self::TargetExcepted => "target-excepted",
            Self::DeployClears => "cloud-run-manifest-clears-binary-authorization",
            Self::DeployNoncompliant => "cloud-run-manifest-noncompliant",
            Self::DeployConflicted => "cloud-run-manifest-conflicted",
            Self::DeployUnplaced => "cloud-run-manifest-unplaced",
            Self::DeployProjectNumber => "cloud-run-manifest-project-number",
            Self::TargetNotEffective => "target-not-effective",
            Self::ProjectUncovered => "project-uncovered",
        }
    }

    /// One line: what the rule is about.
    pub fn short(self) -> &'static str {
        match self {
            Self::InvalidManifest => "Invalid BinAuthzBinding manifest",
            Self::BindingError => "Binding could not be checked",
            Self::TargetDrifted => "Cloud Run resource drifted from its binding's policy",
            Self::TargetConflicted => "Cloud Run resource claimed by conflicting bindings",
            Self::TargetFailed => "Cloud Run resource could not be checked or fixed",
            Self::TargetBreakglass => "Cloud Run resource deployed with breakglass",
            Self::TargetExcepted => "Cloud Run resource excepted until its exception expires",
            Self::DeployClears => "Cloud Run manifest would clear Binary Authorization",
            Self::DeployNoncompliant => "Cloud Run manifest would not comply with its binding",
            Self::DeployConflicted => "Cloud Run manifest covered by conflicting bindings",
            Self::DeployUnplaced => "Cloud Run manifest does not say its project or region",
            Self::DeployProjectNumber => "Cloud Run manifest placed by project number",
            Self::TargetNotEffective => "Cloud Run resource's policy not yet in effect",
            Self::ProjectUncovered => "Cloud Run resources no binding covers",
        }
    }

    /// What it means and what to do.
    pub fn help(self) -> &'static str {
        match self {
            Self::InvalidManifest => "The binding breaks a rule of the BinAuthzBinding CRD (or is not YAML, unreadable, or declared twice); the API server would refuse it. Fix the field the message names; nothing was checked against Cloud Run.",
            Self::BindingError => "The binding's Ready condition is False for a reason a person must act on (permission denied, project not found or forbidden, API disabled, policy not found, organization policy conflict, Cloud Run unavailable). The message names the reason and the fix.",
            Self::TargetDrifted => "The Cloud Run resource does not carry the Binary Authorization policy its owning binding requires. Run `binauthz-operator check --fix` (Enforce bindings), or fix it with `gcloud run services update --binary-authorization`.",
            Self::TargetConflicted => "Bindings of equal priority match this resource and want different policies, so nothing writes it. Give one binding a higher spec.priority or make their policies agree.",
            Self::TargetFailed => "The resource could not be read or the fix failed; the message carries Cloud Run's reason.",
            Self::TargetBreakglass => "The resource carries a breakglass justification: it was deployed bypassing Binary Authorization. Its policy is right; review the justification, or set spec.breakglass: Clear on the binding to remove it.",
            Self::TargetExcepted => "The resource does not carry its binding's policy, and an active BinAuthzException of the binding's namespace names it: it is reported, not fixed, until the exception's expiresAt. Fix the resource before then, or expect the operator to enforce at that moment.",
            Self::DeployClears => "A binding covers this Cloud Run resource, and the manifest carries no run.googleapis.com/binary-authorization annotation (v1) or binaryAuthorization (v2): deploying it (gcloud run services replace) would switch Binary Authorization off. Add the annotation with the binding's policy.",
            Self::DeployNoncompliant => "A binding covers this Cloud Run resource, and the manifest sets another Binary Authorization policy than the binding requires (or a breakglass justification the binding clears): the operator would change it back after every deploy. Set the binding's policy in the manifest.",
            Self::DeployConflicted => "Bindings of equal priority cover this Cloud Run resource and want different policies; no manifest can satisfy both. Give one binding a higher spec.priority or make their policies agree.",
            Self::DeployUnplaced => "The manifest does not say its project (metadata.namespace) or region (label cloud.googleapis.com/location), so the bindings that cover it are unknown. Add them (gcloud run services describe --format export writes both) or pass --project / --region to validate.",
            Self::TargetNotEffective => "The resource carries its binding's policy, but a revision receiving traffic (a job's latest execution) was created before the policy was set, so Binary Authorization never checked it. The next deploy (a job's next run) puts the policy in effect; the operator never redeploys.",
            Self::ProjectUncovered => "A project some binding names holds Cloud Run resources that no binding matches (among the regions and kinds the bindings list). Not an error: review them, and extend a binding or write one if they should be enforced.",
            Self::DeployProjectNumber => "The manifest names its project by number (as gcloud's export does), and no binding names that number; bindings compare projects as written. Write the project id in metadata.namespace (gcloud accepts either) so the bindings of that project are checked.",
        }
    }

    /// How serious it is.
    pub fn level(self) -> Level {
        match self {
            Self::TargetBreakglass | Self::TargetExcepted | Self::DeployProjectNumber => {
                Level::Warning
            }
            Self::TargetNotEffective | Self::ProjectUncovered => Level::Note,
            _ => Level::Error,
        }
    }

    fn junit(self) -> JunitKind {
        match self {
            Self::InvalidManifest | Self::BindingError | Self::DeployUnplaced => JunitKind::Error,
            Self::TargetBreakglass
            | Self::TargetExcepted
            | Self::DeployProjectNumber
            | Self::TargetNotEffective
            | Self::ProjectUncovered => JunitKind::Passed,
            _ => JunitKind::Failure,
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .unwrap_or_default()
    }
}

/// A place in a file: a manifest read from disk (stdin has no place a tool can open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileLine {
    /// The path as given on the command line.
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
}

impl FileLine {
    /// The place of a [`Source`]; `None` for stdin or a source without a file.
    pub fn of(source: &Source) -> Option<Self> {
        (source.file != "-" && !source.file.is_empty() && source.document > 0).then(|| Self {
            file: source.file.clone(),
            line: source.line,
        })
    }
}

/// What one checked thing came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It complies.
    Passed,
    /// Not this one's to judge (suspended binding, target another binding owns).
    Skipped(String),
    /// A finding.
    Finding {
        /// Which rule.
        rule: Rule,
        /// One line: what, where, what to do.
        message: String,
    },
}

/// One checked thing: a JUnit test case, and a SARIF result / GitHub annotation when its
/// outcome is a finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The group: a binding (`namespace/name`), `manifests`, `cloud-run manifests`.
    pub suite: String,
    /// What was checked: `Service us-central1/checkout`, a file, a binding.
    pub name: String,
    /// Where it is declared.
    pub location: Option<FileLine>,
    /// What it came to.
    pub outcome: Outcome,
}

impl Entry {
    /// The entry of a binding manifest problem.
    pub fn manifest_error(error: &ManifestError) -> Self {
        Self {
            suite: "binding manifests".into(),
            name: error
                .binding
                .clone()
                .map_or_else(|| error.source.to_string(), |b| format!("binding {b}")),
            location: FileLine::of(&error.source),
            outcome: Outcome::Finding {
                rule: Rule::InvalidManifest,
                message: error.to_string(),
            },
        }
    }

    fn finding(&self) -> Option<(Rule, &str)> {
        match &self.outcome {
            Outcome::Finding { rule, message } => Some((*rule, message)),
            _ => None,
        }
    }
}

/// The tool and command that produced the entries, for the reports' headers.
#[derive(Clone, Copy, Debug)]
pub struct Producer {
    /// `check` or `validate`.
    pub command: &'static str,
}

const TOOL: &str = "binauthz-operator";
const SARIF_SCHEMA: &str =
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json";

/// A report written to a reader that stopped reading (`check ... | head`) is not an error:
/// the rest is dropped quietly and the exit code still gives the verdict.
pub fn closed_pipe_is_fine(written: io::Result<()>) -> io::Result<()> {
    match written {
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// The SARIF 2.1.0 log of `entries`: one run, every rule in `tool.driver.rules`, one result
/// per finding. Relative paths are relative to `%SRCROOT%` (the repository a CI job checks
/// out), absolute ones are `file://` URIs.
pub fn sarif(entries: &[Entry], producer: Producer, successful: bool) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id(),
                "name": camel(rule.id()),
                "shortDescription": {"text": rule.short()},
                "fullDescription": {"text": rule.help()},
                "help": {"text": rule.help()},
                "defaultConfiguration": {"level": sarif_level(rule.level())},
            })
        })
        .collect();
    let results: Vec<Value> = entries
        .iter()
        .filter_map(|entry| {
            let (rule, message) = entry.finding()?;
            let mut result = json!({
                "ruleId": rule.id(),
                "ruleIndex": rule.index(),
                "level": sarif_level(rule.level()),
                "message": {"text": message},
            });
            if let Some(location) = &entry.location {
                let mut physical = json!({"artifactLocation": artifact(&location.file)});
                if let Some(line) = location.line.filter(|l| *l > 0) {
                    physical["region"] = json!({"startLine": line});
                }
                result["locations"] = json!([{"physicalLocation": physical}]);
            }
            Some(result)
        })
        .collect();
    json!({
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": TOOL,
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "automationDetails": {"id": format!("{TOOL}/{}/", producer.command)},
            "invocations": [{"executionSuccessful": successful}],
            "results": results,
        }],
    })
}

/// Writes the SARIF log, pretty-printed, with a final newline.
pub fn write_sarif(
    out: &mut impl Write,
    entries: &[Entry],
    producer: Producer,
    successful: bool,
) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, &sarif(entries, producer, successful))?;
    writeln!(out)
}

fn sarif_level(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warning => "warning",
        Level::Note => "note",
    }
}

/// `target-drifted` → `TargetDrifted` (SARIF's rule `name`).
fn camel(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut chars = w.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A SARIF `artifactLocation` for a path as given.
fn artifact(path: &str) -> Value {
    let forward = path.replace('\\', "/");
    if let Some(absolute) = forward.strip_prefix('/') {
        json!({"uri": format!("file:///{}", percent_encode(absolute))})
    } else {
        let relative = forward.trim_start_matches("./");
        json!({"uri": percent_encode(relative), "uriBaseId": "%SRCROOT%"})
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `/`.
fn percent_encode(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Writes one GitHub Actions workflow command per finding (`::error file=F,line=L,title=T::message`,
/// `::warning ...`), escaped as the runner expects: `%`, `\r`, `\n` everywhere, and `:` and
/// `,` too in property values.
pub fn write_github(out: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    for entry in entries {
        let Some((rule, message)) = entry.finding() else {
            continue;
        };
        let command = match rule.level() {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "notice",
        };
        let mut properties = Vec::new();
        if let Some(location) = &entry.location {
            properties.push(format!("file={}", github_property(&location.file)));
            if let Some(line) = location.line.filter(|l| *l > 0) {
                properties.push(format!("line={line}"));
            }
        }
        properties.push(format!(
            "title={}",
            github_property(&format!("{} ({})", rule.short(), rule.id()))
        ));
        writeln!(
            out,
            "::{command} {}::{}",
            properties.join(","),
            github_data(message)
        )?;
    }
    Ok(())
}

/// Escapes a workflow command's message.
pub fn github_data(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property value.
pub fn github_property(text: &str) -> String {
    github_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// Writes a JUnit XML report: a `<testsuite>` per group in order of appearance, a
/// `<testcase>` per entry — `<failure>` when what it checks does not comply, `<error>` when
/// it could not be checked (invalid manifests), `<skipped>` when it was not this one's to
/// judge; warnings pass with the finding in `<system-out>`.
pub fn write_junit(out: &mut impl Write, entries: &[Entry], producer: Producer) -> io::Result<()> {
    let mut suites: Vec<(&str, Vec<&Entry>)> = Vec::new();
    for entry in entries {
        match suites.iter_mut().find(|(name, _)| *name == entry.suite) {
            Some((_, cases)) => cases.push(entry),
            None => suites.push((&entry.suite, vec![entry])),
        }
    }
    let count = |cases: &[&Entry], kind: JunitKind| {
        cases
            .iter()
            .filter(|e| e.finding().is_some_and(|(rule, _)| rule.junit() == kind))
            .count()
    };
    let skipped = |cases: &[&Entry]| {
        cases
            .iter()
            .filter(|e| matches!(e.outcome, Outcome::Skipped(_)))
            .count()
    };
    let all: Vec<&Entry> = entries.iter().collect();
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="{}" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
        xml(&format!("{TOOL} {}", producer.command)),
        all.len(),
        count(&all, JunitKind::Failure),
        count(&all, JunitKind::Error),
        skipped(&all),
    )?;
    for (name, cases) in &suites {
        writeln!(
            out,
            r#"  <testsuite name="{}" tests="{}" failures="{}" errors="{}" skipped="{}">"#,
            xml(name),
            cases.len(),
            count(cases, JunitKind::Failure),
            count(cases, JunitKind::Error),
            skipped(cases),
        )?;
        for case in cases {
            write!(
                out,
                r#"    <testcase name="{}" classname="{}""#,
                xml(&case.name),
                xml(name)
            )?;
            if let Some(location) = &case.location {
                write!(out, r#" file="{}""#, xml(&location.file))?;
                if let Some(line) = location.line {
                    write!(out, r#" line="{line}""#)?;
                }
            }
            match &case.outcome {
                Outcome::Passed => writeln!(out, "/>")?,
                Outcome::Skipped(why) => {
                    writeln!(out, ">")?;
                    writeln!(out, r#"      <skipped message="{}"/>"#, xml(why))?;
                    writeln!(out, "    </testcase>")?;
                }
                Outcome::Finding { rule, message } => {
                    writeln!(out, ">")?;
                    let element = match rule.junit() {
                        JunitKind::Failure => Some("failure"),
                        JunitKind::Error => Some("error"),
                        JunitKind::Passed => None,
                    };
                    match element {
                        Some(element) => writeln!(
                            out,
                            r#"      <{element} type="{}" message="{}">{}</{element}>"#,
                            rule.id(),
                            xml(message),
                            xml(rule.help())
                        )?,
                        None => writeln!(
                            out,
                            "      <system-out>{}: {}</system-out>",
                            rule.id(),
                            xml(message)
                        )?,
                    }
                    writeln!(out, "    </testcase>")?;
                }
            }
        }
        writeln!(out, "  </testsuite>")?;
    }
    writeln!(out, "</testsuites>")
}

/// Escapes text for XML content and attribute values, dropping the characters XML 1.0
/// cannot carry.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The entries of a `check` report: per binding, one per target (and one for the binding
/// itself when it could not be checked or is suspended).
pub(super) fn report_entries(report: &Report) -> Vec<Entry> {
    let mut entries = Vec::new();
    for b in &report.bindings {
        let suite = format!("{}/{}", b.namespace, b.name);
        let binding = |outcome: Outcome| Entry {
            suite: suite.clone(),
            name: format!("binding {suite}"),
            location: b.declared_at.clone(),
            outcome,
        };
        if b.verdict == Verdict::Error {
            entries.push(binding(Outcome::Finding {
                rule: Rule::BindingError,
                message: format!(
                    "binding {suite} (project {}): Ready={} ({}): {}",
                    b.project, b.ready, b.reason, b.message
                ),
            }));
        } else if b.reason == "Suspended" {
            entries.push(binding(Outcome::Skipped(b.message.clone())));
        }
        for t in &b.targets {
            let name = format!("{} {}/{}", t.kind, t.location, t.name);
            let not_effective = t
                .effect
                .as_ref()
                .filter(|e| e.state == EffectState::NotEffective);
            let rule = match t.state {
                TargetState::Compliant | TargetState::Remediated if not_effective.is_some() => {
                    Some(Rule::TargetNotEffective)
                }
                TargetState::Compliant | TargetState::Remediated => None,
                TargetState::Superseded => {
                    entries.push(Entry {
                        suite: suite.clone(),
                        name,
                        location: b.declared_at.clone(),
                        outcome: Outcome::Skipped(t.message.clone()),
                    });
                    continue;
                }
                TargetState::Drifted => Some(Rule::TargetDrifted),
                TargetState::Conflicted => Some(Rule::TargetConflicted),
                TargetState::Failed => Some(Rule::TargetFailed),
                TargetState::Breakglass => Some(Rule::TargetBreakglass),
                TargetState::Excepted => Some(Rule::TargetExcepted),
            };
            let outcome = match rule {
                None => Outcome::Passed,
                Some(rule) => {
                    let mut message = format!(
                        "{name} (project {}): {} under binding {suite}: carries {}, the binding wants {}",
                        b.project, t.state, t.observed, t.desired
                    );
                    if !t.message.is_empty() {
                        message.push_str(": ");
                        message.push_str(&t.message);
                    }
                    if let Some(e) = not_effective {
                        message = format!(
                            "{name} (project {}): carries {} under binding {suite}, not yet in effect: {}",
                            b.project, t.observed, e.message
                        );
                    }
                    Outcome::Finding { rule, message }
                }
            };
            entries.push(Entry {
                suite: suite.clone(),
                name,
                location: b.declared_at.clone(),
                outcome,
            });
        }
    }
    // Coverage: a note per project holding resources no binding matches, at the first
    // binding that names the project.
    for c in report.coverage.iter().filter(|c| c.uncovered > 0) {
        let kinds: Vec<String> = c
            .by_kind
            .iter()
            .filter(|k| k.uncovered > 0)
            .map(|k| format!("{} {} ({})", k.uncovered, k.kind, k.first.join(", ")))
            .collect();
        entries.push(Entry {
            suite: "coverage".to_owned(),
            name: format!("project {}", c.project),
            location: report
                .bindings
                .iter()
                .find(|b| b.project == c.project)
                .and_then(|b| b.declared_at.clone()),
            outcome: Outcome::Finding {
                rule: Rule::ProjectUncovered,
                message: format!(
                    "project {}: {} of {} listed Cloud Run resource(s) no binding matches: {}",
                    c.project,
                    c.uncovered,
                    c.listed,
                    kinds.join("; ")
                ),
            },
        });
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_closed_pipe_ends_the_report_quietly_and_other_errors_stay() {
        assert!(closed_pipe_is_fine(Err(io::ErrorKind::BrokenPipe.into())).is_ok());
        assert!(closed_pipe_is_fine(Ok(())).is_ok());
        let full = closed_pipe_is_fine(Err(io::ErrorKind::StorageFull.into())).unwrap_err();
        assert_eq!(full.kind(), io::ErrorKind::StorageFull);
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                suite: "platform/prod".into(),
                name: "Service us-central1/checkout".into(),
                location: Some(FileLine {
                    file: "bindings/prod, east.yaml".into(),
                    line: Some(3),
                }),
                outcome: Outcome::Finding {
                    rule: Rule::TargetDrifted,
                    message: "100% drifted: carries none\nwants default".into(),
                },
            },
            Entry {
                suite: "platform/prod".into(),
                name: "Job us-central1/nightly".into(),
                location: None,
                outcome: Outcome::Passed,
            },
            Entry {
                suite: "platform/prod".into(),
                name: "Job us-central1/other".into(),
                location: None,
                outcome: Outcome::Skipped("owned by platform/high".into()),
            },
            Entry {
                suite: "binding manifests".into(),
                name: "binding a/<b>".into(),
                location: Some(FileLine {
                    file: "/abs/dir/x.yaml".into(),
                    line: None,
                }),
                outcome: Outcome::Finding {
                    rule: Rule::InvalidManifest,
                    message: "bad & \"worse\"".into(),
                },
            },
            Entry {
                suite: "platform/prod".into(),
                name: "Service us-central1/bg".into(),
                location: None,
                outcome: Outcome::Finding {
                    rule: Rule::TargetBreakglass,
                    message: "justified".into(),
                },
            },
        ]
    }

    const PRODUCER: Producer = Producer { command: "check" };

    #[test]
    fn github_commands_escape_data_and_properties() {
        let mut out = Vec::new();
        write_github(&mut out, &entries()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "::error file=bindings/prod%2C east.yaml,line=3,title=Cloud Run resource drifted from its binding's policy (target-drifted)::100%25 drifted: carries none%0Awants default",
                "::error file=/abs/dir/x.yaml,title=Invalid BinAuthzBinding manifest (invalid-manifest)::bad & \"worse\"",
                "::warning title=Cloud Run resource deployed with breakglass (target-breakglass)::justified",
            ]
        );
        assert_eq!(github_property("a:b,c%\r\n"), "a%3Ab%2Cc%25%0D%0A");
    }

    #[test]
    fn sarif_lists_every_rule_and_locates_results() {
        let log = sarif(&entries(), PRODUCER, false);
        let run = &log["runs"][0];
        let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
        assert_eq!(rules.len(), Rule::ALL.len());
        assert!(rules
            .iter()
            .all(|r| !r["help"]["text"].as_str().unwrap().is_empty()));
        let results = run["results"].as_array().unwrap();
        assert_eq!(results.len(), 3, "one per finding");
        assert_eq!(results[0]["ruleId"], "target-drifted");
        assert_eq!(
            rules[results[0]["ruleIndex"].as_u64().unwrap() as usize]["id"],
            "target-drifted"
        );
        let physical = &results[0]["locations"][0]["physicalLocation"];
        assert_eq!(
            physical["artifactLocation"]["uri"],
            "bindings/prod%2C%20east.yaml"
        );
        assert_eq!(physical["artifactLocation"]["uriBaseId"], "%SRCROOT%");
        assert_eq!(physical["region"]["startLine"], 3);
        let absolute = &results[1]["locations"][0]["physicalLocation"];
        assert_eq!(
            absolute["artifactLocation"]["uri"],
            "file:///abs/dir/x.yaml"
        );
        assert!(absolute.get("region").is_none());
        assert_eq!(results[2]["level"], "warning");
        assert!(results[2].get("locations").is_none());
        assert_eq!(camel("target-drifted"), "TargetDrifted");
    }

    #[test]
    fn junit_groups_cases_by_suite_and_escapes_text() {
        let mut out = Vec::new();
        write_junit(&mut out, &entries(), PRODUCER).unwrap();
        let text = String::from_utf8(out).unwrap();
        let doc = roxmltree::Document::parse(&text).unwrap();
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "testsuites");
        assert_eq!(root.attribute("tests"), Some("5"));
        assert_eq!(root.attribute("failures"), Some("1"));
        assert_eq!(root.attribute("errors"), Some("1"));
        assert_eq!(root.attribute("skipped"), Some("1"));
        let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
        assert_eq!(suites.len(), 2);
        assert_eq!(suites[0].attribute("name"), Some("platform/prod"));
        assert_eq!(suites[0].attribute("tests"), Some("4"));
        let failure = doc
            .descendants()
            .find(|n| n.has_tag_name("failure"))
            .unwrap();
        assert_eq!(failure.attribute("type"), Some("target-drifted"));
        assert_eq!(
            failure.attribute("message"),
            Some("100% drifted: carries none\nwants default")
        );
        let error = doc.descendants().find(|n| n.has_tag_name("error")).unwrap();
        assert_eq!(error.attribute("message"), Some("bad & \"worse\""));
        let case = error.parent().unwrap();
        assert_eq!(case.attribute("name"), Some("binding a/<b>"));
        assert_eq!(xml("a\u{1}b"), "ab");
    }
}
