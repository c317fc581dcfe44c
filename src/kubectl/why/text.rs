//! `why`'s explanation for people: the resource, a table of the project's bindings, then
//! who owns it and what the operator will do.

use super::*;
use crate::api::EffectState;

fn match_cell(m: &MatchResult) -> String {
    match m {
        MatchResult::Matches {
            name: Some(n),
            labels: true,
        } => {
            format!("yes: names {n:?} and labels")
        }
        MatchResult::Matches {
            name: Some(n),
            labels: false,
        } => format!("yes: names {n:?}"),
        MatchResult::Matches { name: None, .. } => "yes: labels".to_owned(),
        MatchResult::LocationNotCovered { locations } => {
            format!("no: locations {}", locations.join(","))
        }
        MatchResult::KindNotTargeted => "no: kind not targeted".to_owned(),
        MatchResult::NameNotListed { .. } => "no: name not in names".to_owned(),
        MatchResult::LabelsDoNotMatch => "no: labels do not match".to_owned(),
        MatchResult::Excluded { pattern } => format!("no: excluded by {pattern:?}"),
    }
}

fn role_cell(v: &BindingVerdict) -> String {
    match (&v.participation, &v.role, &v.matching) {
        (Participation::Suspended, _, MatchResult::Matches { .. }) => {
            "steps aside (suspended)".to_owned()
        }
        (Participation::Invalid { .. }, _, MatchResult::Matches { .. }) => {
            "steps aside (invalid spec)".to_owned()
        }
        (Participation::NotPermitted { .. }, _, MatchResult::Matches { .. }) => {
            "steps aside (not permitted)".to_owned()
        }
        (_, Some(Role::Owner { .. }), _) => "owner".to_owned(),
        (_, Some(Role::Superseded { by, priority }), _) => {
            format!("superseded by {} (priority {priority})", by.join(", "))
        }
        (_, Some(Role::Conflicted { with }), _) => format!("conflicted with {}", with.join(", ")),
        _ => "-".to_owned(),
    }
}

fn mode_cell(v: &BindingVerdict) -> String {
    match &v.participation {
        Participation::Active => format!("{:?}", v.mode),
        Participation::Suspended => "Suspended".to_owned(),
        Participation::Invalid { .. } => "Invalid".to_owned(),
        Participation::NotPermitted { .. } => "NotPermitted".to_owned(),
    }
}

fn reported_cell(r: Option<&Reported>) -> String {
    r.map_or_else(
        || "-".to_owned(),
        |r| match &r.effect {
            Some(e) if e.state != EffectState::Effective => {
                format!("{} ({}), {}", r.state, r.observed, e.state)
            }
            _ => format!("{} ({})", r.state, r.observed),
        },
    )
}

/// The explanation for people: the resource, a table of the project's bindings, then who
/// owns it and what the operator will do.
pub(in crate::kubectl) fn write_text(e: &Explanation, out: &mut dyn Write) -> std::io::Result<()> {
    let id_line = format!(
        "{} {}/{} (project {})",
        e.kind,
        e.location,
        e.resource.rsplit('/').next().unwrap_or_default(),
        e.project
    );
    writeln!(out, "{id_line}")?;
    let labels = if e.labels.is_empty() {
        "none".to_owned()
    } else {
        e.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    match (&e.source, &e.live) {
        (Source::CloudRun, Some(live)) => {
            writeln!(out, "  labels: {labels} (read from Cloud Run)")?;
            let breakglass = live
                .breakglass
                .as_deref()
                .map(|j| format!(", breakglass justification {j:?}"))
                .unwrap_or_default();
            writeln!(out, "  policy: {}{breakglass}", live.policy)?;
            if let Some(blocked) = &live.deploy_blocked {
                writeln!(
                    out,
                    "  latest deploy refused by Binary Authorization: {blocked}"
                )?;
            }
        }
        _ => {
            writeln!(
                out,
                "  labels: {labels} (given with --label; bindings that select by labels are judged on these)"
            )?;
            writeln!(
                out,
                "  policy: not read (no Cloud Run call; --live reads the resource)"
            )?;
        }
    }
    writeln!(out)?;
    let others = match e.other_projects {
        0 => String::new(),
        1 => "; 1 other binding covers another project".to_owned(),
        n => format!("; {n} other bindings cover other projects"),
    };
    if e.bindings.is_empty() {
        writeln!(
            out,
            "No binding in {} covers project {}{others}.",
            e.scope, e.project
        )?;
    } else {
        writeln!(
            out,
            "Bindings of project {} ({}{others}):",
            e.project, e.scope
        )?;
        let mut rows = vec![[
            "BINDING",
            "PRIORITY",
            "MODE",
            "POLICY",
            "MATCH",
            "ROLE",
            "LAST REPORTED",
        ]
        .map(str::to_owned)
        .to_vec()];
        for v in &e.bindings {
            rows.push(vec![
                format!("{}/{}", v.namespace, v.name),
                v.priority.to_string(),
                mode_cell(v),
                v.policy.clone(),
                match_cell(&v.matching),
                role_cell(v),
                reported_cell(v.last_reported.as_ref()),
            ]);
        }
        let mut table = Vec::new();
        write_columns(&mut table, &rows)?;
        for line in String::from_utf8_lossy(&table).lines() {
            writeln!(out, "  {line}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "Owner: {}", ownership_sentence(e))?;
    writeln!(out, "Operator: {}", action_sentence(e))
}

fn ownership_sentence(e: &Explanation) -> String {
    match &e.ownership {
        Ownership::Unowned => {
            let aside = e
                .bindings
                .iter()
                .filter(|v| {
                    v.participation != Participation::Active
                        && matches!(v.matching, MatchResult::Matches { .. })
                })
                .count();
            if aside > 0 {
                format!("none: the {aside} matching binding(s) step aside (suspended or invalid)")
            } else {
                "none: no binding matches it".to_owned()
            }
        }
        Ownership::Owned {
            owners,
            priority,
            superseded,
        } => {
            let who = match owners.as_slice() {
                [one] => one.clone(),
                many => format!("{} (co-owners: same priority, same policy)", many.join(", ")),
            };
            match superseded {
                0 => format!("{who}, priority {priority}, the only matching binding"),
                n => format!(
                    "{who}, priority {priority}, the highest of {} matching bindings ({n} superseded)",
                    n + owners.len()
                ),
            }
        }
        Ownership::Conflicted { bindings, priority } => format!(
            "none: conflict: {} match it at the same priority {priority} with different policies; give one a higher priority or make their policies agree",
            bindings.join(" and ")
        ),
    }
}

fn action_sentence(e: &Explanation) -> String {
    match &e.action {
        OperatorAction::NotCovered => {
            "nothing: no active binding covers it, so the operator never writes it".to_owned()
        }
        OperatorAction::LeftUntouched => {
            "leaves it untouched; each conflicting binding reports it Conflicted and is Ready=False (Conflict)"
                .to_owned()
        }
        OperatorAction::Write {
            policy,
            clear_breakglass,
            bindings,
            only_if_drifted,
        } => {
            let clear = if *clear_breakglass {
                " and removes its breakglass justification (breakglass: Clear)"
            } else {
                ""
            };
            let condition = if *only_if_drifted {
                format!("if it does not carry {policy} (not read here), ")
            } else {
                String::new()
            };
            format!(
                "{condition}sets policy {policy}{clear} for {} (Enforce): one PATCH of binaryAuthorization only",
                bindings.join(", ")
            )
        }
        OperatorAction::ReportDrift {
            bindings,
            only_if_drifted,
        } => {
            let condition = if *only_if_drifted {
                "if it does not carry the policy (not read here), "
            } else {
                ""
            };
            format!(
                "{condition}reports it Drifted for {} (Audit): never writes it",
                bindings.join(", ")
            )
        }
        OperatorAction::ReportBreakglass => {
            "reports its breakglass justification (Warning event) and leaves it in place: the policy is right".to_owned()
        }
        OperatorAction::Excepted {
            exception,
            until,
            only_if_drifted,
        } => {
            let condition = if *only_if_drifted {
                "if it does not carry the policy (not read here), "
            } else {
                ""
            };
            format!("{condition}reports it Excepted and leaves it as is until {until} (BinAuthzException {exception}); at that moment it enforces the policy")
        }
        OperatorAction::Nothing => "nothing: it carries the desired policy".to_owned(),
    }
}
