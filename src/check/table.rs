//! The report as tables on a terminal: targets needing attention, fixes, organization policy lines.

use crate::api::{
    EffectState, Mode, OrgPolicyState, OrgPolicyStatus, PolicyCheckResult, TargetState,
};
use crate::cloudrun::{self};
use std::io::{IsTerminal, Write as _};

use super::output;
use super::report::{Change, ChangeResult, Report, TargetRow};
use super::{OutputFormat, Verdict};

pub(super) fn print_report(
    report: &Report,
    format: OutputFormat,
    wide: bool,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        OutputFormat::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        OutputFormat::Yaml => {
            let text = serde_yaml_ng::to_string(report).map_err(std::io::Error::other)?;
            out.write_all(text.as_bytes())?;
        }
        OutputFormat::Sarif | OutputFormat::Junit => {
            let entries = output::report_entries(report);
            let successful = report.verdict != Verdict::Error;
            return print_entries(&entries, format, successful);
        }
        OutputFormat::Github | OutputFormat::Table => {
            if format == OutputFormat::Github {
                output::write_github(&mut out, &output::report_entries(report))?;
            }
            let style = Style::detect();
            if let Some(before) = &report.before {
                writeln!(out, "{}", style.heading("Drift found"))?;
                table(&mut out, before, wide, style)?;
                writeln!(out)?;
            }
            if let Some(changes) = report.changes.as_deref().filter(|c| !c.is_empty()) {
                writeln!(out, "{}", style.heading("Fixed"))?;
                changes_table(&mut out, changes, style)?;
                writeln!(out)?;
                writeln!(out, "{}", style.heading("After fixing"))?;
            }
            table(&mut out, report, wide, style)?;
        }
    }
    out.flush()
}

/// Writes `entries` in a CI format on stdout: a SARIF log, a JUnit report or GitHub
/// annotations. The people formats (`table`, `json`, `yaml`) print nothing here: the
/// problems are on stderr.
pub(super) fn print_entries(
    entries: &[output::Entry],
    format: OutputFormat,
    successful: bool,
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    let producer = output::Producer { command: "check" };
    match format {
        OutputFormat::Sarif => output::write_sarif(&mut out, entries, producer, successful)?,
        OutputFormat::Junit => output::write_junit(&mut out, entries, producer)?,
        OutputFormat::Github => output::write_github(&mut out, entries)?,
        OutputFormat::Table | OutputFormat::Json | OutputFormat::Yaml => {}
    }
    out.flush()
}

/// Terminal styling: colour only on a terminal and when NO_COLOR is unset.
#[derive(Clone, Copy)]
pub(super) struct Style {
    colour: bool,
}

impl Style {
    pub(super) fn detect() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    pub(super) fn paint(self, code: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub(super) fn heading(self, text: &str) -> String {
        self.paint("1", &format!("== {text}"))
    }

    pub(super) fn state(self, state: TargetState, width: usize) -> String {
        let text = format!("{:<width$}", state.to_string());
        let code = match state {
            TargetState::Compliant | TargetState::Remediated => "32",
            TargetState::Drifted
            | TargetState::Breakglass
            | TargetState::Superseded
            | TargetState::Excepted => "33",
            TargetState::Conflicted | TargetState::Failed => "31",
        };
        self.paint(code, &text)
    }
}

pub(super) fn table(
    out: &mut impl std::io::Write,
    report: &Report,
    wide: bool,
    style: Style,
) -> std::io::Result<()> {
    for b in &report.bindings {
        writeln!(
            out,
            "{}  project {}  {}  policy {}  Ready={} ({}): {}",
            style.paint("1", &format!("{}/{}", b.namespace, b.name)),
            b.project,
            match b.mode {
                Mode::Enforce => "Enforce",
                Mode::Audit => "Audit",
            },
            b.policy,
            b.ready,
            b.reason,
            b.message
        )?;
        for unread in &b.unread_locations {
            writeln!(
                out,
                "  {} region {} not read ({}): {}",
                style.paint("31", "!"),
                unread.location,
                unread.reason,
                unread.message
            )?;
        }
        if let Some(check) = b
            .policy_check
            .as_ref()
            .filter(|c| c.result != PolicyCheckResult::Verified)
        {
            writeln!(out, "  policy {:?}: {}", check.result, check.message)?;
        }
        if let Some(org) = &b.org_policy {
            writeln!(out, "  {}", org_policy_line(&b.project, org))?;
        }
        // By default the table lists what needs attention or changed: not the compliant
        // targets, nor those another binding owns.
        let listed = |t: &TargetRow| {
            wide || t.deploy_blocked
                || not_effective(t)
                || !matches!(t.state, TargetState::Compliant | TargetState::Superseded)
        };
        let rows: Vec<&TargetRow> = b.targets.iter().filter(|t| listed(t)).collect();
        if !rows.is_empty() {
            let cells: Vec<[String; 6]> = rows
                .iter()
                .map(|t| {
                    [
                        t.kind.to_string(),
                        t.location.clone(),
                        t.name.clone(),
                        t.state.to_string(),
                        format!("{} -> {}", t.observed, t.desired),
                        match (&t.effect, t.deploy_blocked && t.message.is_empty()) {
                            (Some(e), _) if e.state != EffectState::Effective => {
                                let said = if t.message.is_empty() {
                                    String::new()
                                } else {
                                    format!("{}; ", t.message)
                                };
                                format!("{said}{}: {}", effect_words(e.state), e.message)
                            }
                            (_, true) => "deploy blocked".into(),
                            _ => t.message.clone(),
                        },
                    ]
                })
                .collect();
            let header = [
                "KIND",
                "LOCATION",
                "NAME",
                "STATE",
                "OBSERVED -> DESIRED",
                "MESSAGE",
            ];
            let mut widths = header.map(str::len);
            for row in &cells {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            write!(out, "  ")?;
            for (w, h) in widths.iter().zip(header).take(5) {
                write!(out, "{h:<w$}  ")?;
            }
            writeln!(out, "{}", header[5])?;
            for (row, t) in cells.iter().zip(&rows) {
                write!(out, "  ")?;
                for (i, (w, cell)) in widths.iter().zip(row).take(5).enumerate() {
                    if i == 3 {
                        write!(out, "{}  ", style.state(t.state, *w))?;
                    } else {
                        write!(out, "{cell:<w$}  ")?;
                    }
                }
                writeln!(out, "{}", row[5])?;
            }
        }
        let hidden = b.targets.len() - rows.len();
        if hidden > 0 {
            let superseded = b
                .targets
                .iter()
                .filter(|t| !listed(t) && t.state == TargetState::Superseded)
                .count();
            let what = match (hidden - superseded, superseded) {
                (c, 0) => format!("{c} compliant"),
                (0, s) => format!("{s} superseded"),
                (c, s) => format!("{c} compliant and {s} superseded"),
            };
            writeln!(out, "  ({what} target(s) not listed; --wide lists them)")?;
        }
    }
    coverage(out, report, style)?;
    let s = &report.summary;
    let verdict = match report.verdict {
        Verdict::Compliant => style.paint("32", "all targets comply"),
        Verdict::DriftRemains => style.paint("33", "drift remains"),
        Verdict::Error => style.paint("31", "errors"),
    };
    writeln!(
        out,
        "{} binding(s), {} target(s): {} compliant ({} not yet in effect), {} remediated, {} drifted, {} breakglass, {} superseded, {} conflicted, {} failed, {} deploy(s) blocked — {verdict} (exit {})",
        report.bindings.len(),
        s.matched,
        s.compliant,
        s.not_effective,
        s.remediated,
        s.drifted,
        s.breakglass,
        s.superseded,
        s.conflicted,
        s.failed,
        s.deploy_blocked,
        report.exit_code
    )
}

/// Whether a target's policy is set but not known to be in effect.
fn not_effective(t: &TargetRow) -> bool {
    t.effect
        .as_ref()
        .is_some_and(|e| e.state == EffectState::NotEffective)
}

fn effect_words(state: EffectState) -> &'static str {
    match state {
        EffectState::Effective => "in effect",
        EffectState::NotEffective => "not yet in effect",
        EffectState::Unknown => "in effect or not: unknown",
    }
}

/// Per project the bindings name: the resources no binding matches (not an error).
fn coverage(out: &mut impl std::io::Write, report: &Report, style: Style) -> std::io::Result<()> {
    for c in &report.coverage {
        let kinds: Vec<String> = c.kinds.iter().map(ToString::to_string).collect();
        writeln!(
            out,
            "{} project {}: {} of {} listed resource(s) no binding matches ({} in {})",
            style.paint("1", "coverage"),
            c.project,
            c.uncovered,
            c.listed,
            kinds.join(", "),
            if c.locations.is_empty() {
                "no region with resources".to_owned()
            } else {
                c.locations.join(", ")
            }
        )?;
        for k in c.by_kind.iter().filter(|k| k.uncovered > 0) {
            let more = k.uncovered.saturating_sub(k.first.len());
            writeln!(
                out,
                "  {} {} of {}: {}{}",
                k.kind,
                k.uncovered,
                k.listed,
                k.first.join(", "),
                if more > 0 {
                    format!(" (and {more} more)")
                } else {
                    String::new()
                }
            )?;
        }
    }
    Ok(())
}

/// One line on a project's organization policy constraint: a security team wants to see
/// the preventive control off as much as on.
pub(super) fn org_policy_line(project: &str, org: &OrgPolicyStatus) -> String {
    match org.state {
        OrgPolicyState::Enforced if org.allowed_values.is_empty() => format!(
            "org policy {}: enforced in project {project}, every value denied",
            cloudrun::ORG_POLICY_CONSTRAINT
        ),
        OrgPolicyState::Enforced => format!(
            "org policy {}: enforced in project {project}, allows {}",
            cloudrun::ORG_POLICY_CONSTRAINT,
            org.allowed_values.join(", ")
        ),
        OrgPolicyState::NotSet => format!(
            "org policy {}: not set in project {project} (the preventive control is off)",
            cloudrun::ORG_POLICY_CONSTRAINT
        ),
        OrgPolicyState::Unreadable => format!(
            "org policy {}: unreadable in project {project}: {}",
            cloudrun::ORG_POLICY_CONSTRAINT,
            org.message
        ),
    }
}

pub(super) fn changes_table(
    out: &mut impl std::io::Write,
    changes: &[Change],
    style: Style,
) -> std::io::Result<()> {
    for c in changes {
        let result = match c.result {
            ChangeResult::Applied => style.paint("32", "applied"),
            ChangeResult::AlreadySatisfied => "already satisfied".to_owned(),
            ChangeResult::Pending => style.paint("33", "pending"),
            ChangeResult::Gone => "gone".to_owned(),
            ChangeResult::Failed => style.paint("31", "FAILED"),
        };
        write!(
            out,
            "  {} {}/{} (project {}): {} -> {}: {result}",
            c.kind, c.location, c.name, c.project, c.from, c.to
        )?;
        if c.message.is_empty() {
            writeln!(out)?;
        } else {
            writeln!(out, ": {}", c.message)?;
        }
    }
    Ok(())
}
