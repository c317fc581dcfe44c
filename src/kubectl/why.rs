//! `kubectl binauthz why RESOURCE`: which bindings match one Cloud Run resource, which one owns it and why (priority, conflict, exclude), and what the operator will do — decided by the planner, unchanged, over the bindings listed from the cluster.
//!
//! The planner's input is built as a controller pass builds it: every binding of the
//! resource's project ([`crate::fleet::project_inputs`]) and the one resource. Without
//! `--live` the resource is not read from Cloud Run: its labels are those given with
//! `--label`, and it is planned as carrying no policy, so an owner's decision reads as
//! "if it does not already carry the policy". With `--live` it is read (one GET) and the
//! decision is exact.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::api::{BinAuthzBinding, ResourceKind, TargetState, TargetStatus};
use crate::cloudrun::{CloudRunArgs, CloudRunClient};
use crate::fleet::{key_of, project_inputs};
use crate::matching::{label_selector_matches, Glob, LocationFilter};
use crate::plan::{self, Activity, BindingKey, Decision};
use crate::policy::ObservedPolicy;
use crate::resource::{BreakglassChange, Labels, ObservedResource, ResourceId};

use super::cluster::Cluster;
use super::output::write_columns;
use super::{KubectlError, WhyArgs};

/// `why`'s argument is not a Cloud Run resource name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("RESOURCE {given:?} is not a Cloud Run resource name: expected projects/PROJECT/locations/LOCATION/{{services|jobs|workerPools}}/NAME")]
pub struct ResourceNameError {
    /// The argument as given.
    pub given: String,
}

/// Parses `projects/P/locations/L/{services|jobs|workerPools}/NAME` (as `gcloud` and the
/// Admin API v2 name resources; a leading `//run.googleapis.com/` is accepted too).
///
/// # Errors
/// [`ResourceNameError`] for anything else.
pub fn parse_resource_name(text: &str) -> Result<ResourceId, ResourceNameError> {
    let error = || ResourceNameError {
        given: text.to_owned(),
    };
    let path = text
        .trim()
        .trim_start_matches("//run.googleapis.com/")
        .trim_end_matches('/');
    let parts: Vec<&str> = path.split('/').collect();
    let [p, project, l, location, collection, name] = parts.as_slice() else {
        return Err(error());
    };
    let kind = ResourceKind::ALL
        .into_iter()
        .find(|k| k.collection() == *collection)
        .ok_or_else(error)?;
    let segment_ok = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    if *p != "projects"
        || *l != "locations"
        || ![project, location, name].into_iter().all(|s| segment_ok(s))
    {
        return Err(error());
    }
    Ok(ResourceId {
        kind,
        project: (*project).to_owned(),
        location: (*location).to_owned(),
        name: (*name).to_owned(),
    })
}

/// What `why` prints (`-o json|yaml` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    /// The resource name.
    pub resource: String,
    /// Its kind.
    pub kind: ResourceKind,
    /// Its project.
    pub project: String,
    /// Its region.
    pub location: String,
    /// Its labels, as planned on.
    pub labels: BTreeMap<String, String>,
    /// Where the labels and the state come from.
    pub source: Source,
    /// With `--live`: what the resource carries now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveState>,
    /// Whose bindings were weighed: a namespace (`-n`) or every namespace.
    pub scope: String,
    /// Every binding of the resource's project, by namespace and name.
    pub bindings: Vec<BindingVerdict>,
    /// How many bindings in scope cover other projects (and so never this resource).
    pub other_projects: usize,
    /// Who owns the resource.
    pub ownership: Ownership,
    /// What the operator will do with it.
    pub action: OperatorAction,
}

/// Where `why` got the resource's labels and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Source {
    /// Not read: labels from `--label` (if any); planned as carrying no policy.
    Offline,
    /// Read from Cloud Run (`--live`).
    CloudRun,
}

/// What the resource carries, read with `--live`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    /// `none`, `default` or the policy name.
    pub policy: String,
    /// Its breakglass justification, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<String>,
    /// Cloud Run's message when its latest deploy was refused by Binary Authorization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deploy_blocked: Option<String>,
}

/// One binding of the resource's project and what it has to do with the resource.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BindingVerdict {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.priority`.
    pub priority: i32,
    /// Whether it takes part in ownership.
    pub participation: Participation,
    /// Enforce or Audit (`spec.mode`).
    pub mode: crate::api::Mode,
    /// Its desired policy: `default` or the policy name (`-` when its spec has none).
    pub policy: String,
    /// Whether its selectors cover the resource, and why (not).
    pub matching: MatchResult,
    /// Its role for the resource, as planned (only for active bindings that match).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// What its status reported about the resource at its last pass, if it lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_reported: Option<Reported>,
}

/// How a binding takes part in ownership (see [`Activity`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "state",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Participation {
    /// Valid and not suspended.
    Active,
    /// `spec.suspend: true`: steps aside (neither owns, supersedes nor conflicts).
    Suspended,
    /// Its spec breaks a rule: steps aside until fixed.
    Invalid {
        /// The first problem.
        problem: String,
    },
}

/// Whether a binding's selectors cover the resource (the matching rules of
/// docs/planner.md, checked in their order), naming the entry that decided.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum MatchResult {
    /// Covered.
    Matches {
        /// The `names` entry that matched (none when it selects by labels only).
        #[serde(skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Whether a `labelSelector` matched too.
        labels: bool,
    },
    /// `spec.locations` does not include the resource's region.
    LocationNotCovered {
        /// `spec.locations`.
        locations: Vec<String>,
    },
    /// The binding has no selector for this kind.
    KindNotTargeted,
    /// No `names` entry matches the name.
    NameNotListed {
        /// `names`.
        names: Vec<String>,
    },
    /// The `labelSelector` does not match the labels.
    LabelsDoNotMatch,
    /// An `exclude` entry matches the name.
    Excluded {
        /// The entry.
        pattern: String,
    },
}

/// A matching active binding's role for the resource, from the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "role",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Role {
    /// It owns the resource (alone, or with equal-priority bindings of the same policy).
    Owner {
        /// Its decision.
        decision: OwnerDecision,
    },
    /// A higher-priority binding owns it.
    Superseded {
        /// The owning (or conflicting) bindings.
        by: Vec<String>,
        /// Their priority.
        priority: i32,
    },
    /// Equal-priority bindings want a different policy: nobody writes it.
    Conflicted {
        /// The bindings that disagree with this one.
        with: Vec<String>,
    },
}

/// An owner's decision about the resource (the planner's [`Decision`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "decision",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum OwnerDecision {
    /// It carries the desired policy.
    Compliant,
    /// Enforce: set the policy.
    Remediate {
        /// The policy written.
        policy: String,
        /// Whether the write also removes a breakglass justification.
        clear_breakglass: bool,
    },
    /// Audit: drift is reported, never written.
    Drifted,
    /// It carries the desired policy and a breakglass justification the binding allows.
    Breakglass,
}

/// What a binding's status says about the resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reported {
    /// Its state at the last pass.
    pub state: TargetState,
    /// What it carried then.
    pub observed: String,
    /// The status message.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Who owns the resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Ownership {
    /// No active binding matches it.
    Unowned,
    /// The highest-priority matching bindings, agreeing on the policy.
    Owned {
        /// The owners (several: co-owners).
        owners: Vec<String>,
        /// Their priority.
        priority: i32,
        /// How many lower-priority bindings match it too (they report it Superseded).
        superseded: usize,
    },
    /// The highest-priority matching bindings disagree on the policy.
    Conflicted {
        /// The bindings that disagree.
        bindings: Vec<String>,
        /// Their priority.
        priority: i32,
    },
}

/// What the operator will do with the resource.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(
    tag = "result",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum OperatorAction {
    /// No binding covers it: the operator never reads or writes it on anyone's behalf.
    NotCovered,
    /// A conflict: nobody writes it; the bindings report Conflict until a person decides.
    LeftUntouched,
    /// Enforce: one PATCH setting the policy (only `binaryAuthorization` changes).
    Write {
        /// The policy written.
        policy: String,
        /// Whether the write removes a breakglass justification.
        clear_breakglass: bool,
        /// The bindings asking for it.
        bindings: Vec<String>,
        /// Offline: only if it does not carry the policy already (not read).
        only_if_drifted: bool,
    },
    /// Audit: drift reported (status, event), never written.
    ReportDrift {
        /// The Audit owners.
        bindings: Vec<String>,
        /// Offline: only if it does not carry the policy already (not read).
        only_if_drifted: bool,
    },
    /// It carries the policy and a breakglass justification, which is reported and kept.
    ReportBreakglass,
    /// It carries the policy: nothing to do.
    Nothing,
}

/// Explains `id` over the bindings in scope (and, with `--live`, the resource as read).
pub(super) async fn why(
    cluster: &Cluster,
    id: ResourceId,
    args: &WhyArgs,
) -> Result<Explanation, KubectlError> {
    let WhyArgs {
        resource: _,
        labels,
        live,
        output: _,
        cloud_run,
    } = args;
    let labels = parse_labels(labels)?;
    let bindings: Vec<Arc<BinAuthzBinding>> = cluster
        .list_bindings()
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let resource = if *live {
        read_live(&id, cloud_run).await?
    } else {
        ObservedResource {
            id,
            labels,
            deleted: false,
            policy: ObservedPolicy::None,
            breakglass: None,
            deploy_blocked: None,
        }
    };
    let scope = match &cluster.namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_owned(),
    };
    explain(
        &bindings,
        &resource,
        if *live {
            Source::CloudRun
        } else {
            Source::Offline
        },
        scope,
    )
}

fn parse_labels(given: &[String]) -> Result<Labels, KubectlError> {
    given
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(KubectlError::Label(pair.clone())),
        })
        .collect()
}

/// One GET of the resource (`--live`).
async fn read_live(
    id: &ResourceId,
    cloud_run: &CloudRunArgs,
) -> Result<ObservedResource, KubectlError> {
    let failed = |detail: String| KubectlError::CloudRun {
        resource: id.resource_name(),
        detail,
    };
    let config = cloud_run.config().map_err(|e| failed(e.to_string()))?;
    let client = CloudRunClient::new(config)
        .await
        .map_err(|e| failed(e.to_string()))?;
    match client.get(id).await {
        Ok(live) => Ok(live.observed),
        Err(crate::cloudrun::Error::NotFound(_)) => Err(failed(
            "it does not exist (or your identity cannot see it)".to_owned(),
        )),
        Err(err) => Err(failed(err.to_string())),
    }
}

/// The explanation of `resource` over `bindings`: matching per binding, and ownership and
/// decisions from [`plan::plan`] over the bindings of its project.
///
/// # Errors
/// Only a [`plan::PlanError`] (two bindings with one namespace/name, which a cluster
/// cannot hold), as [`KubectlError::Output`].
pub fn explain(
    bindings: &[Arc<BinAuthzBinding>],
    resource: &ObservedResource,
    source: Source,
    scope: String,
) -> Result<Explanation, KubectlError> {
    let id = &resource.id;
    let inputs = project_inputs(bindings, &id.project);
    let plan = plan::plan(&inputs, std::iter::once(resource))
        .map_err(|e| KubectlError::Output(e.to_string()))?;
    let label_map: BTreeMap<String, String> = resource
        .labels
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let mut ours: Vec<&Arc<BinAuthzBinding>> = bindings
        .iter()
        .filter(|b| b.spec.project == id.project)
        .collect();
    ours.sort_by_key(|b| key_of(b));
    let mut verdicts = Vec::with_capacity(ours.len());
    for b in &ours {
        let key = key_of(b);
        let planned = plan.binding(&key);
        let participation = match planned.map(|p| p.activity()) {
            Some(Activity::Active(_)) => Participation::Active,
            Some(Activity::Suspended) => Participation::Suspended,
            Some(Activity::Invalid(errors)) => Participation::Invalid {
                problem: errors
                    .0
                    .first()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .unwrap_or_default(),
            },
            None => Participation::Invalid {
                problem: "not planned".to_owned(),
            },
        };
        let role = planned
            .and_then(|p| p.target(id))
            .map(|t| role_of(&t.decision));
        verdicts.push(BindingVerdict {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            priority: b.spec.priority,
            participation,
            mode: b.spec.mode,
            policy: b
                .spec
                .desired_policy()
                .map_or_else(|| "-".to_owned(), |p| p.to_string()),
            matching: match_result(b, id, &resource.labels),
            role,
            last_reported: b.status.as_ref().and_then(|s| reported(&s.targets, id)),
        });
    }

    let ownership = ownership(&verdicts);
    let only_if_drifted = source == Source::Offline;
    let writes = plan.writes();
    let action = match &ownership {
        Ownership::Unowned => OperatorAction::NotCovered,
        Ownership::Conflicted { .. } => OperatorAction::LeftUntouched,
        Ownership::Owned { .. } => {
            let owner_decisions: Vec<(&BindingVerdict, &OwnerDecision)> = verdicts
                .iter()
                .filter_map(|v| match &v.role {
                    Some(Role::Owner { decision }) => Some((v, decision)),
                    _ => None,
                })
                .collect();
            if let Some(write) = writes.first() {
                OperatorAction::Write {
                    policy: write.remediation.desired.to_string(),
                    clear_breakglass: write.remediation.breakglass == BreakglassChange::Clear,
                    bindings: write.bindings.iter().map(ToString::to_string).collect(),
                    only_if_drifted,
                }
            } else if owner_decisions
                .iter()
                .any(|(_, d)| **d == OwnerDecision::Drifted)
            {
                OperatorAction::ReportDrift {
                    bindings: owner_decisions
                        .iter()
                        .filter(|(_, d)| **d == OwnerDecision::Drifted)
                        .map(|(v, _)| format!("{}/{}", v.namespace, v.name))
                        .collect(),
                    only_if_drifted,
                }
            } else if owner_decisions
                .iter()
                .any(|(_, d)| **d == OwnerDecision::Breakglass)
            {
                OperatorAction::ReportBreakglass
            } else {
                OperatorAction::Nothing
            }
        }
    };
    Ok(Explanation {
        resource: id.resource_name(),
        kind: id.kind,
        project: id.project.clone(),
        location: id.location.clone(),
        labels: label_map,
        source,
        live: (source == Source::CloudRun).then(|| LiveState {
            policy: resource.policy.to_string(),
            breakglass: resource.breakglass.clone(),
            deploy_blocked: resource.deploy_blocked.clone(),
        }),
        scope,
        other_projects: bindings.len() - ours.len(),
        bindings: verdicts,
        ownership,
        action,
    })
}

fn keys(keys: &[BindingKey]) -> Vec<String> {
    keys.iter().map(ToString::to_string).collect()
}

fn role_of(decision: &Decision) -> Role {
    let decision = match decision {
        Decision::Superseded { by, priority } => {
            return Role::Superseded {
                by: keys(by),
                priority: *priority,
            }
        }
        Decision::Conflicted { with } => return Role::Conflicted { with: keys(with) },
        Decision::Compliant => OwnerDecision::Compliant,
        Decision::Remediate(r) => OwnerDecision::Remediate {
            policy: r.desired.to_string(),
            clear_breakglass: r.breakglass == BreakglassChange::Clear,
        },
        Decision::Drifted => OwnerDecision::Drifted,
        Decision::Breakglass => OwnerDecision::Breakglass,
    };
    Role::Owner { decision }
}

/// Ownership as the plan decided it, read from the roles.
fn ownership(verdicts: &[BindingVerdict]) -> Ownership {
    let name = |v: &BindingVerdict| format!("{}/{}", v.namespace, v.name);
    let owners: Vec<&BindingVerdict> = verdicts
        .iter()
        .filter(|v| matches!(v.role, Some(Role::Owner { .. })))
        .collect();
    let conflicted: Vec<&BindingVerdict> = verdicts
        .iter()
        .filter(|v| matches!(v.role, Some(Role::Conflicted { .. })))
        .collect();
    let superseded = verdicts
        .iter()
        .filter(|v| matches!(v.role, Some(Role::Superseded { .. })))
        .count();
    if let Some(first) = conflicted.first() {
        return Ownership::Conflicted {
            bindings: conflicted.iter().map(|v| name(v)).collect(),
            priority: first.priority,
        };
    }
    match owners.first() {
        Some(first) => Ownership::Owned {
            owners: owners.iter().map(|v| name(v)).collect(),
            priority: first.priority,
            superseded,
        },
        None => Ownership::Unowned,
    }
}

/// Why `binding` does (not) cover `id`, checking the rules in their documented order.
fn match_result(binding: &BinAuthzBinding, id: &ResourceId, labels: &Labels) -> MatchResult {
    let spec = &binding.spec;
    if !LocationFilter::new(&spec.locations).contains(&id.location) {
        return MatchResult::LocationNotCovered {
            locations: spec.locations.clone(),
        };
    }
    let Some(selector) = spec.targets.for_kind(id.kind) else {
        return MatchResult::KindNotTargeted;
    };
    let name = match &selector.names {
        Some(names) => match names.iter().find(|n| Glob::new(n).matches(&id.name)) {
            Some(found) => Some(found.clone()),
            None => {
                return MatchResult::NameNotListed {
                    names: names.clone(),
                }
            }
        },
        None if selector.label_selector.is_none() => {
            return MatchResult::NameNotListed { names: Vec::new() }
        }
        None => None,
    };
    if let Some(ls) = &selector.label_selector {
        if !label_selector_matches(ls, labels) {
            return MatchResult::LabelsDoNotMatch;
        }
    }
    if let Some(pattern) = selector
        .exclude
        .iter()
        .find(|e| Glob::new(e).matches(&id.name))
    {
        return MatchResult::Excluded {
            pattern: pattern.clone(),
        };
    }
    MatchResult::Matches {
        name,
        labels: selector.label_selector.is_some(),
    }
}

fn reported(targets: &[TargetStatus], id: &ResourceId) -> Option<Reported> {
    targets
        .iter()
        .find(|t| t.kind == id.kind && t.location == id.location && t.name == id.name)
        .map(|t| Reported {
            state: t.state,
            observed: t.observed.clone(),
            message: t.message.clone(),
        })
}

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
    }
}

fn reported_cell(r: Option<&Reported>) -> String {
    r.map_or_else(
        || "-".to_owned(),
        |r| format!("{} ({})", r.state, r.observed),
    )
}

/// The explanation for people: the resource, a table of the project's bindings, then who
/// owns it and what the operator will do.
pub(super) fn write_text(e: &Explanation, out: &mut dyn Write) -> std::io::Result<()> {
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
        OperatorAction::Nothing => "nothing: it carries the desired policy".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shared test binding, in namespace `ns`, with these spec overrides.
    fn binding(ns: &str, name: &str, spec: serde_json::Value) -> Arc<BinAuthzBinding> {
        let mut b = crate::testing::binding(name, spec);
        b.metadata.namespace = Some(ns.to_owned());
        Arc::new(b)
    }

    fn service(name: &str, labels: &[(&str, &str)]) -> ObservedResource {
        ObservedResource {
            id: parse_resource_name(&format!(
                "projects/acme-prod/locations/us-central1/services/{name}"
            ))
            .unwrap(),
            labels: labels.iter().copied().collect(),
            deleted: false,
            policy: ObservedPolicy::None,
            breakglass: None,
            deploy_blocked: None,
        }
    }

    const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";

    #[test]
    fn resource_names_parse_or_name_the_expected_form() {
        let id =
            parse_resource_name("projects/p1/locations/europe-west1/workerPools/pool").unwrap();
        assert_eq!(id.kind, ResourceKind::WorkerPool);
        assert_eq!(
            (id.project.as_str(), id.location.as_str(), id.name.as_str()),
            ("p1", "europe-west1", "pool")
        );
        let job =
            parse_resource_name("//run.googleapis.com/projects/p/locations/l/jobs/j").unwrap();
        assert_eq!(job.kind, ResourceKind::Job);
        for bad in [
            "checkout",
            "projects/p/locations/l/services",
            "projects/p/locations/l/functions/f",
            "projects/p/regions/l/services/s",
            "projects//locations/l/services/s",
            "projects/p/locations/l/services/s/revisions/r",
        ] {
            let err = parse_resource_name(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("RESOURCE {bad:?} is not")),
                "{err}"
            );
            assert!(
                err.ends_with(
                    "expected projects/PROJECT/locations/LOCATION/{services|jobs|workerPools}/NAME"
                ),
                "{err}"
            );
        }
    }

    #[test]
    fn the_highest_priority_owns_and_the_others_say_why_not() {
        let bindings = [
            binding("a", "all", json!({"priority": 0})),
            binding(
                "b",
                "checkout",
                json!({"priority": 10, "targets": {"services": {"names": ["check*"]}}}),
            ),
            binding(
                "c",
                "excluder",
                json!({"targets": {"services": {"names": ["*"], "exclude": ["checkout"]}}}),
            ),
            binding("d", "eu", json!({"locations": ["europe-west1"]})),
            binding("e", "jobs", json!({"targets": {"jobs": {"names": ["*"]}}})),
            binding(
                "f",
                "labelled",
                json!({"targets": {"services": {"labelSelector": {"matchLabels": {"env": "prod"}}}}}),
            ),
            binding("g", "paused", json!({"priority": 100, "suspend": true})),
            binding("h", "other", json!({"project": "acme-staging"})),
        ];
        let e = explain(
            &bindings,
            &service("checkout", &[("env", "dev")]),
            Source::Offline,
            "all namespaces".into(),
        )
        .unwrap();
        assert_eq!(e.other_projects, 1);
        let by_name: BTreeMap<&str, &BindingVerdict> =
            e.bindings.iter().map(|v| (v.name.as_str(), v)).collect();
        assert_eq!(
            by_name["checkout"].role,
            Some(Role::Owner {
                decision: OwnerDecision::Remediate {
                    policy: "default".into(),
                    clear_breakglass: false
                }
            })
        );
        assert_eq!(
            by_name["all"].role,
            Some(Role::Superseded {
                by: vec!["b/checkout".into()],
                priority: 10
            })
        );
        assert_eq!(
            by_name["excluder"].matching,
            MatchResult::Excluded {
                pattern: "checkout".into()
            }
        );
        assert!(matches!(
            by_name["eu"].matching,
            MatchResult::LocationNotCovered { .. }
        ));
        assert_eq!(by_name["jobs"].matching, MatchResult::KindNotTargeted);
        assert_eq!(by_name["labelled"].matching, MatchResult::LabelsDoNotMatch);
        assert_eq!(by_name["paused"].participation, Participation::Suspended);
        assert_eq!(by_name["paused"].role, None);
        assert_eq!(
            e.ownership,
            Ownership::Owned {
                owners: vec!["b/checkout".into()],
                priority: 10,
                superseded: 1
            }
        );
        assert_eq!(
            e.action,
            OperatorAction::Write {
                policy: "default".into(),
                clear_breakglass: false,
                bindings: vec!["b/checkout".into()],
                only_if_drifted: true
            }
        );
        // JSON fields are camelCase, inside the tagged variants too.
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(
            json["action"],
            json!({"result": "write", "policy": "default", "clearBreakglass": false,
                   "bindings": ["b/checkout"], "onlyIfDrifted": true})
        );
        assert_eq!(
            json["bindings"][1]["role"],
            json!({"role": "owner", "decision": {"decision": "remediate", "policy": "default", "clearBreakglass": false}})
        );
        assert_eq!(json["otherProjects"], 1);
        let mut out = Vec::new();
        write_text(&e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "Owner: b/checkout, priority 10, the highest of 2 matching bindings (1 superseded)"
            ),
            "{text}"
        );
        assert!(text.contains("Operator: if it does not carry default (not read here), sets policy default for b/checkout (Enforce)"), "{text}");
        assert!(text.contains("no: excluded by \"checkout\""), "{text}");
        assert!(text.contains("steps aside (suspended)"), "{text}");

        // The label given makes the label selector match: an equal-priority co-owner.
        let e = explain(
            &bindings,
            &service("checkout", &[("env", "prod")]),
            Source::Offline,
            "all namespaces".into(),
        )
        .unwrap();
        let labelled = e.bindings.iter().find(|v| v.name == "labelled").unwrap();
        assert_eq!(
            labelled.matching,
            MatchResult::Matches {
                name: None,
                labels: true
            }
        );
        assert!(matches!(labelled.role, Some(Role::Superseded { .. })));
    }

    #[test]
    fn a_conflict_leaves_the_resource_untouched() {
        let bindings = [
            binding("a", "default", json!({})),
            binding("b", "strict", json!({"policy": {"name": STRICT}})),
            binding("c", "low", json!({"priority": -5, "mode": "Audit"})),
        ];
        let e = explain(
            &bindings,
            &service("web", &[]),
            Source::Offline,
            "all namespaces".into(),
        )
        .unwrap();
        assert_eq!(
            e.ownership,
            Ownership::Conflicted {
                bindings: vec!["a/default".into(), "b/strict".into()],
                priority: 0
            }
        );
        assert_eq!(e.action, OperatorAction::LeftUntouched);
        let mut out = Vec::new();
        write_text(&e, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("conflicted with b/strict"), "{text}");
        assert!(
            text.contains(
                "Owner: none: conflict: a/default and b/strict match it at the same priority 0"
            ),
            "{text}"
        );
    }

    #[test]
    fn live_state_decides_exactly() {
        let bindings = [binding("a", "audit", json!({"mode": "Audit"}))];
        let mut live = service("web", &[]);
        live.policy = ObservedPolicy::ProjectDefault;
        let e = explain(&bindings, &live, Source::CloudRun, "all namespaces".into()).unwrap();
        assert_eq!(e.action, OperatorAction::Nothing);
        assert_eq!(e.live.as_ref().map(|l| l.policy.as_str()), Some("default"));
        live.policy = ObservedPolicy::None;
        let e = explain(&bindings, &live, Source::CloudRun, "all namespaces".into()).unwrap();
        assert_eq!(
            e.action,
            OperatorAction::ReportDrift {
                bindings: vec!["a/audit".into()],
                only_if_drifted: false
            }
        );
        let e = explain(&[], &live, Source::CloudRun, "namespace x".into()).unwrap();
        assert_eq!(e.ownership, Ownership::Unowned);
        assert_eq!(e.action, OperatorAction::NotCovered);
    }
}
