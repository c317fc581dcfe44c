//! Builders for bindings and observed resources shared by the planner's tests.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;

use super::*;
use crate::api::{
    BinAuthzBindingSpec, BinAuthzBindingStatus, BreakglassMode, Condition, LabelSelector, Mode,
    PolicyRef, ResourceKind, TargetSelector, TargetState, Targets,
};
use crate::matching::BindingMatcher;
use crate::policy::{DesiredPolicy, ObservedPolicy, PolicyName};
use crate::resource::{BreakglassChange, ObservedResource, Remediation, ResourceId};

pub(super) const PROJECT: &str = "acme-prod";

/// A binding under construction: `binding("a").priority(5).audit().names(["pay-*"])`.
#[derive(Clone, Debug)]
pub(super) struct TestBinding {
    pub key: BindingKey,
    pub spec: BinAuthzBindingSpec,
    pub permission: Permission,
}

/// Covers every service in us-central1 of acme-prod with the project default policy.
pub(super) fn binding(name: &str) -> TestBinding {
    TestBinding {
        key: BindingKey::new("platform", name),
        spec: BinAuthzBindingSpec {
            project: PROJECT.into(),
            locations: vec!["us-central1".into()],
            targets: Targets {
                services: Some(TargetSelector {
                    names: Some(vec!["*".into()]),
                    ..TargetSelector::default()
                }),
                ..Targets::default()
            },
            policy: PolicyRef {
                use_default: Some(true),
                name: None,
            },
            mode: Mode::Enforce,
            breakglass: BreakglassMode::Allow,
            interval: "10m".into(),
            priority: 0,
            suspend: false,
        },
        permission: Permission::Open,
    }
}

pub(super) fn policy_name(id: &str) -> String {
    format!("projects/acme-sec/platforms/cloudRun/policies/{id}")
}

fn strings<const N: usize>(items: [&str; N]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

impl TestBinding {
    pub fn priority(mut self, p: i32) -> Self {
        self.spec.priority = p;
        self
    }
    pub fn audit(mut self) -> Self {
        self.spec.mode = Mode::Audit;
        self
    }
    pub fn clear_breakglass(mut self) -> Self {
        self.spec.breakglass = BreakglassMode::Clear;
        self
    }
    pub fn suspended(mut self) -> Self {
        self.spec.suspend = true;
        self
    }
    /// Requires the named policy `projects/acme-sec/platforms/cloudRun/policies/{id}`.
    pub fn policy(mut self, id: &str) -> Self {
        self.spec.policy = PolicyRef {
            use_default: None,
            name: Some(policy_name(id)),
        };
        self
    }
    pub fn locations<const N: usize>(mut self, locations: [&str; N]) -> Self {
        self.spec.locations = strings(locations);
        self
    }
    fn services(&mut self) -> &mut TargetSelector {
        self.spec
            .targets
            .services
            .get_or_insert_with(TargetSelector::default)
    }
    /// Service names/globs.
    pub fn names<const N: usize>(mut self, names: [&str; N]) -> Self {
        self.services().names = Some(strings(names));
        self
    }
    /// Services by labels only (drops `names`).
    pub fn labels<const N: usize>(mut self, labels: [(&str, &str); N]) -> Self {
        let s = self.services();
        s.names = None;
        s.label_selector = Some(LabelSelector {
            match_labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            match_expressions: Vec::new(),
        });
        self
    }
    pub fn exclude<const N: usize>(mut self, names: [&str; N]) -> Self {
        self.services().exclude = strings(names);
        self
    }
    pub fn jobs<const N: usize>(mut self, names: [&str; N]) -> Self {
        self.spec.targets.jobs = Some(TargetSelector {
            names: Some(strings(names)),
            ..TargetSelector::default()
        });
        self
    }
    pub fn no_services(mut self) -> Self {
        self.spec.targets.services = None;
        self
    }
    /// Breaks a CRD rule (no locations).
    pub fn invalid(mut self) -> Self {
        self.spec.locations.clear();
        self
    }
    /// No tenancy grant allows it.
    pub fn not_permitted(mut self) -> Self {
        self.permission = Permission::NotPermitted(Refusal::Namespace {
            namespace: self.key.namespace.clone(),
        });
        self
    }
    pub fn input(&self) -> BindingInput<'_> {
        BindingInput {
            key: self.key.clone(),
            spec: &self.spec,
            permission: self.permission.clone(),
        }
    }
}

fn resource(kind: ResourceKind, location: &str, name: &str) -> ObservedResource {
    ObservedResource {
        id: ResourceId {
            kind,
            project: PROJECT.into(),
            location: location.into(),
            name: name.into(),
        },
        labels: Default::default(),
        deleted: false,
        policy: ObservedPolicy::None,
        breakglass: None,
        deploy_blocked: None,
        last_change: None,
        running: Default::default(),
    }
}

/// A service without Binary Authorization: `service("us-central1", "pay-1")`.
pub(super) fn service(location: &str, name: &str) -> ObservedResource {
    resource(ResourceKind::Service, location, name)
}

pub(super) fn job(location: &str, name: &str) -> ObservedResource {
    resource(ResourceKind::Job, location, name)
}

/// Builder methods on observed resources.
pub(super) trait Observed: Sized {
    fn edit(self, f: impl FnOnce(&mut ObservedResource)) -> Self;
    fn labels<const N: usize>(self, labels: [(&str, &str); N]) -> Self;
    fn policy_none(self) -> Self {
        self.edit(|r| r.policy = ObservedPolicy::None)
    }
    fn policy_default(self) -> Self {
        self.edit(|r| r.policy = ObservedPolicy::ProjectDefault)
    }
    fn policy_named(self, id: &str) -> Self {
        self.edit(|r| r.policy = ObservedPolicy::Named(policy_name(id)))
    }
    fn breakglass(self, why: &str) -> Self {
        self.edit(|r| r.breakglass = Some(why.into()))
    }
    fn deploy_blocked(self, message: &str) -> Self {
        self.edit(|r| r.deploy_blocked = Some(message.into()))
    }
    fn deleted(self) -> Self {
        self.edit(|r| r.deleted = true)
    }
    fn project(self, project: &str) -> Self {
        self.edit(|r| r.id.project = project.into())
    }
}

impl Observed for ObservedResource {
    fn edit(mut self, f: impl FnOnce(&mut ObservedResource)) -> Self {
        f(&mut self);
        self
    }
    fn labels<const N: usize>(self, labels: [(&str, &str); N]) -> Self {
        self.edit(|r| {
            r.labels = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
        })
    }
}

pub(super) fn run<'r>(bindings: &[TestBinding], resources: &'r [ObservedResource]) -> Plan<'r> {
    let inputs: Vec<BindingInput<'_>> = bindings.iter().map(TestBinding::input).collect();
    plan(&inputs, resources).unwrap()
}

fn key(name: &str) -> BindingKey {
    BindingKey::new("platform", name)
}

/// The decisions of one binding, by resource name.
fn decisions(plan: &Plan<'_>, binding: &str) -> Vec<(String, Decision)> {
    plan.binding(&key(binding))
        .unwrap()
        .targets()
        .iter()
        .map(|t| (t.resource.id.name.clone(), t.decision.clone()))
        .collect()
}

fn decision(plan: &Plan<'_>, binding: &str, name: &str) -> Option<Decision> {
    decisions(plan, binding)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, d)| d)
}

fn set_default(clear: bool) -> Decision {
    Decision::Remediate(Remediation {
        desired: DesiredPolicy::ProjectDefault,
        breakglass: if clear {
            BreakglassChange::Clear
        } else {
            BreakglassChange::Keep
        },
    })
}

fn set_named(id: &str) -> Decision {
    Decision::Remediate(Remediation {
        desired: DesiredPolicy::Named(PolicyName::parse(&policy_name(id)).unwrap()),
        breakglass: BreakglassChange::Keep,
    })
}

fn keys(names: &[&str]) -> Arc<[BindingKey]> {
    names.iter().map(|n| key(n)).collect()
}

mod breakglass;
mod decisions;
mod effect;
mod exceptions;
mod properties;
mod status;
mod tenancy;
