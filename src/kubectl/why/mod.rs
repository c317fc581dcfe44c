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

use crate::api::{
    BinAuthzBinding, BinAuthzException, ResourceKind, TargetEffect, TargetState, TargetStatus,
};
use crate::cloudrun::{CloudRunArgs, CloudRunClient};
use crate::fleet::{key_of, project_inputs, Tenancy};
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
    /// No `BinAuthzTenancy` grant allows it: steps aside until one does.
    NotPermitted {
        /// What no grant gives it.
        reason: String,
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
    /// It drifts, and an active BinAuthzException of the binding's namespace names it.
    Excepted {
        /// The exception, `namespace/name`.
        exception: String,
        /// Its `expiresAt`.
        until: String,
    },
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
    /// Whether its policy was in effect for what it ran (targets carrying it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<TargetEffect>,
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
    /// An active `BinAuthzException` holds the fix back: reported `Excepted` until it
    /// expires, then enforced.
    Excepted {
        /// The exception, `namespace/name`.
        exception: String,
        /// Its `expiresAt`.
        until: String,
        /// Offline: only if it does not carry the policy already (not read).
        only_if_drifted: bool,
    },
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
    let exceptions = cluster.list_exceptions().await?;
    let tenancy = cluster.tenancy().await;
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
            last_change: None,
            running: Default::default(),
        }
    };
    let scope = match &cluster.namespace {
        Some(ns) => format!("namespace {ns}"),
        None => "all namespaces".to_owned(),
    };
    explain_with_exceptions(
        &bindings,
        &tenancy,
        &exceptions,
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
#[cfg(test)]
pub fn explain(
    bindings: &[Arc<BinAuthzBinding>],
    tenancy: &Tenancy,
    resource: &ObservedResource,
    source: Source,
    scope: String,
) -> Result<Explanation, KubectlError> {
    explain_with_exceptions(bindings, tenancy, &[], resource, source, scope)
}

/// Like [`explain`], honouring the `BinAuthzException`s as they stand now (the controller's
/// rules, at most [`plan::DEFAULT_EXCEPTION_MAX`] long: the operator's own maximum is a
/// flag the plugin cannot read).
///
/// # Errors
/// As [`explain`].
pub fn explain_with_exceptions(
    bindings: &[Arc<BinAuthzBinding>],
    tenancy: &Tenancy,
    exceptions: &[BinAuthzException],
    resource: &ObservedResource,
    source: Source,
    scope: String,
) -> Result<Explanation, KubectlError> {
    let id = &resource.id;
    let inputs = project_inputs(bindings, &id.project, tenancy);
    let exception_inputs: Vec<plan::ExceptionInput<'_>> = exceptions
        .iter()
        .map(|e| plan::ExceptionInput {
            key: plan::ExceptionKey {
                namespace: e.metadata.namespace.clone().unwrap_or_default(),
                name: e.metadata.name.clone().unwrap_or_default(),
            },
            spec: &e.spec,
            created: e.metadata.creation_timestamp.as_ref().map(|t| t.0),
        })
        .collect();
    let assessed = plan::Exceptions::assess(
        &exception_inputs,
        jiff::Timestamp::now(),
        plan::DEFAULT_EXCEPTION_MAX,
    );
    let plan = plan::plan_with_exceptions(&inputs, &assessed, std::iter::once(resource))
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
            Some(Activity::NotPermitted(refusal)) => Participation::NotPermitted {
                reason: refusal.to_string(),
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
            } else if let Some((exception, until)) =
                owner_decisions.iter().find_map(|(_, d)| match d {
                    OwnerDecision::Excepted { exception, until } => {
                        Some((exception.clone(), until.clone()))
                    }
                    _ => None,
                })
            {
                OperatorAction::Excepted {
                    exception,
                    until,
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
        Decision::Excepted { by } => OwnerDecision::Excepted {
            exception: by.key.to_string(),
            until: by.until.to_string(),
        },
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
            effect: t.effect.clone(),
        })
}

#[cfg(test)]
mod tests;
mod text;

pub(super) use text::write_text;
