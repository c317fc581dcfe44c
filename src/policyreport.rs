//! PolicyReports (`wgpolicyk8s.io/v1alpha2`) of a binding, the format Policy Reporter and
//! similar dashboards read: one result per matched Cloud Run resource. Plain data, built
//! from the binding's complete target list (not the status's first 100); the controller
//! writes them (`controller/policyreport.rs`, with `--policy-reports`).
//!
//! A report holds at most [`RESULTS_PER_REPORT`] results, so that it stays far below the
//! API server's object size limit; a binding with more targets gets numbered pages
//! (`binauthz-NAME`, `binauthz-NAME-2`, ...), all labelled with the binding's uid.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ObjectReference;
use serde::{Deserialize, Serialize};

use crate::api::{TargetState, TargetStatus};

/// The reports' `apiVersion`.
pub const API_VERSION: &str = "wgpolicyk8s.io/v1alpha2";
/// The reports' group.
pub const GROUP: &str = "wgpolicyk8s.io";
/// The reports' version.
pub const VERSION: &str = "v1alpha2";
/// The reports' kind.
pub const KIND: &str = "PolicyReport";
/// The reports' plural.
pub const PLURAL: &str = "policyreports";
/// Every result's `source`.
pub const SOURCE: &str = "binauthz-operator";
/// Every result's `category`.
pub const CATEGORY: &str = "Binary Authorization";
/// Every result's `rule`: what is checked on the resource.
pub const RULE: &str = "binary-authorization-policy";
/// Label carrying the uid of the binding a report belongs to (its pages are found by it).
pub const BINDING_UID_LABEL: &str = "binauthz.dev/binding-uid";
/// `app.kubernetes.io/managed-by` of the reports.
pub const MANAGED_BY: &str = "binauthz-operator";
/// Results per report: about 0.5 KiB each, so a page stays under 1 MiB with room to spare.
pub const RESULTS_PER_REPORT: usize = 1000;

const MAX_NAME: usize = 253;

/// A result's verdict, as PolicyReport spells it.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The resource carries the policy.
    Pass,
    /// It does not (drifted, or the fix failed).
    Fail,
    /// Something needs a look: breakglass, a conflict, an exception holding a fix back.
    Warn,
    /// The binding could not be evaluated (invalid spec).
    Error,
    /// Not this binding's to judge (another binding owns it; the binding is suspended).
    Skip,
}

impl Verdict {
    /// The verdict of a target in `state`.
    pub fn of(state: TargetState) -> Self {
        match state {
            TargetState::Compliant | TargetState::Remediated => Self::Pass,
            TargetState::Drifted | TargetState::Failed => Self::Fail,
            // Excepted: unprotected by a time-boxed decision; shown, not failed.
            TargetState::Breakglass | TargetState::Conflicted | TargetState::Excepted => Self::Warn,
            TargetState::Superseded => Self::Skip,
        }
    }
}

/// Severity of a failing result.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A resource without the policy it must carry.
    High,
    /// A result worth a look.
    Medium,
}

/// `timestamp` of a result (protobuf Timestamp, as PolicyReport has it).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResultTime {
    /// Seconds since the Unix epoch.
    pub seconds: i64,
    /// Nanoseconds within the second.
    pub nanos: i32,
}

/// One result: one Cloud Run resource (or, for a binding that is not evaluated, the binding).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    /// Always [`SOURCE`].
    pub source: String,
    /// The binding's name (the report's namespace is the binding's).
    pub policy: String,
    /// Always [`RULE`].
    pub rule: String,
    /// The verdict.
    pub result: Verdict,
    /// What the binding's status says about the resource.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The Cloud Run resource, named in full (`projects/P/locations/L/services/S`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ObjectReference>,
    /// Project, location, kind, observed and desired policy, state.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub properties: BTreeMap<String, String>,
    /// Always [`CATEGORY`].
    pub category: String,
    /// High for a failing resource, medium for a warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// Since when the resource is in its state (stable across passes, so an unchanged
    /// report is never rewritten).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<ResultTime>,
    /// Whether the result counts towards a score: every resource result does.
    #[serde(default)]
    pub scored: bool,
}

/// Counts of results per verdict.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportSummary {
    /// Passing results.
    pub pass: u32,
    /// Failing results.
    pub fail: u32,
    /// Warnings.
    pub warn: u32,
    /// Errors.
    pub error: u32,
    /// Skipped results.
    pub skip: u32,
}

impl ReportSummary {
    fn count(results: &[ReportResult]) -> Self {
        let mut s = Self::default();
        for r in results {
            let n = match r.result {
                Verdict::Pass => &mut s.pass,
                Verdict::Fail => &mut s.fail,
                Verdict::Warn => &mut s.warn,
                Verdict::Error => &mut s.error,
                Verdict::Skip => &mut s.skip,
            };
            *n += 1;
        }
        s
    }
}

/// What a report says: compared with what is in the cluster to decide whether to write.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ReportContent {
    /// The binding.
    pub scope: ObjectReference,
    /// Counts per verdict.
    pub summary: ReportSummary,
    /// The results, in the status's order (attention first).
    pub results: Vec<ReportResult>,
}

/// One report to write: its name and content.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    /// The report's name in the binding's namespace.
    pub name: String,
    /// What it says.
    pub content: ReportContent,
}

/// The binding the reports are about.
#[derive(Clone, Copy, Debug)]
pub struct BindingRef<'a> {
    /// Its namespace (the reports' namespace).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// Its uid.
    pub uid: &'a str,
    /// Its `spec.project`.
    pub project: &'a str,
}

impl BindingRef<'_> {
    /// The reports' `scope` (and owner): the binding.
    pub fn object_ref(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("binauthz.dev/v1alpha1".to_owned()),
            kind: Some("BinAuthzBinding".to_owned()),
            namespace: Some(self.namespace.to_owned()),
            name: Some(self.name.to_owned()),
            uid: Some(self.uid.to_owned()),
            ..ObjectReference::default()
        }
    }

    /// The name of page `page` (1-based): `binauthz-NAME`, `binauthz-NAME-2`, ...; a
    /// binding whose name would make it longer than Kubernetes allows uses its uid.
    pub fn page_name(&self, page: usize) -> String {
        let suffix = if page <= 1 {
            String::new()
        } else {
            format!("-{page}")
        };
        let named = format!("binauthz-{}{suffix}", self.name);
        if named.len() <= MAX_NAME {
            named
        } else {
            format!("binauthz-{}{suffix}", self.uid)
        }
    }
}

/// Why a binding has no resource results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotEvaluated<'m> {
    /// `spec.suspend` is true.
    Suspended,
    /// The spec is invalid; the message says how.
    Invalid(&'m str),
    /// No `BinAuthzTenancy` grant allows the binding; the message says what is missing.
    NotPermitted(&'m str),
}

/// The reports of a binding whose pass read Cloud Run: one result per target of
/// `targets` (every target: pass the complete list, not the status's), in pages.
pub fn pages(binding: &BindingRef<'_>, targets: &[TargetStatus]) -> Vec<Page> {
    let results: Vec<ReportResult> = targets.iter().map(|t| result(binding, t)).collect();
    if results.is_empty() {
        return vec![page(binding, 1, Vec::new())];
    }
    results
        .chunks(RESULTS_PER_REPORT)
        .enumerate()
        .map(|(i, chunk)| page(binding, i + 1, chunk.to_vec()))
        .collect()
}

/// The report of a binding that was not evaluated: one result about the binding itself.
pub fn not_evaluated(binding: &BindingRef<'_>, why: NotEvaluated<'_>) -> Vec<Page> {
    let (verdict, message) = match why {
        NotEvaluated::Suspended => (
            Verdict::Skip,
            "spec.suspend is true: the operator makes no Cloud Run calls for this binding"
                .to_owned(),
        ),
        NotEvaluated::Invalid(errors) => (
            Verdict::Error,
            format!("the spec is invalid: {errors}; fix the binding"),
        ),
        NotEvaluated::NotPermitted(refusal) => (
            Verdict::Error,
            format!("not permitted, nothing is done for this binding: {refusal}"),
        ),
    };
    let result = ReportResult {
        source: SOURCE.to_owned(),
        policy: binding.name.to_owned(),
        rule: RULE.to_owned(),
        result: verdict,
        message,
        resources: Vec::new(),
        properties: BTreeMap::from([("project".to_owned(), binding.project.to_owned())]),
        category: CATEGORY.to_owned(),
        severity: None,
        timestamp: None,
        scored: false,
    };
    vec![page(binding, 1, vec![result])]
}

fn page(binding: &BindingRef<'_>, number: usize, results: Vec<ReportResult>) -> Page {
    Page {
        name: binding.page_name(number),
        content: ReportContent {
            scope: binding.object_ref(),
            summary: ReportSummary::count(&results),
            results,
        },
    }
}

fn result(binding: &BindingRef<'_>, target: &TargetStatus) -> ReportResult {
    let verdict = Verdict::of(target.state);
    let full_name = format!(
        "projects/{}/locations/{}/{}/{}",
        binding.project,
        target.location,
        target.kind.collection(),
        target.name
    );
    let mut message = target.message.clone();
    if message.is_empty() {
        message = match verdict {
            Verdict::Pass => format!("carries the policy {}", target.desired),
            _ => format!(
                "{}: carries {}, must carry {}",
                target.state, target.observed, target.desired
            ),
        };
    }
    let mut properties = BTreeMap::from([
        ("project".to_owned(), binding.project.to_owned()),
        ("location".to_owned(), target.location.clone()),
        ("kind".to_owned(), target.kind.to_string()),
        ("state".to_owned(), target.state.to_string()),
        ("observed".to_owned(), target.observed.clone()),
        ("desired".to_owned(), target.desired.clone()),
        (
            "deployBlocked".to_owned(),
            target.deploy_blocked.to_string(),
        ),
    ]);
    if let Some(by) = &target.breakglass_by {
        properties.insert("breakglassBy".to_owned(), by.clone());
    }
    if let Some(since) = &target.breakglass_since {
        properties.insert("breakglassSince".to_owned(), since.clone());
    }
    ReportResult {
        source: SOURCE.to_owned(),
        policy: binding.name.to_owned(),
        rule: RULE.to_owned(),
        result: verdict,
        message,
        resources: vec![ObjectReference {
            api_version: Some("run.googleapis.com/v2".to_owned()),
            kind: Some(target.kind.to_string()),
            name: Some(full_name),
            ..ObjectReference::default()
        }],
        properties,
        category: CATEGORY.to_owned(),
        severity: match verdict {
            Verdict::Fail => Some(Severity::High),
            Verdict::Warn => Some(Severity::Medium),
            _ => None,
        },
        timestamp: target
            .last_transition_time
            .as_deref()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .map(|t| ResultTime {
                seconds: t.as_second(),
                nanos: t.subsec_nanosecond(),
            }),
        scored: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ResourceKind;

    fn binding() -> BindingRef<'static> {
        BindingRef {
            namespace: "team-a",
            name: "prod",
            uid: "0b8e3c52-5d7e-4b9e-a8a3-1f3f1c1a2b3c",
            project: "acme-prod",
        }
    }

    fn target(name: &str, state: TargetState) -> TargetStatus {
        TargetStatus {
            kind: ResourceKind::Service,
            location: "us-central1".to_owned(),
            name: name.to_owned(),
            state,
            observed: if state == TargetState::Drifted {
                "none"
            } else {
                "default"
            }
            .to_owned(),
            desired: "default".to_owned(),
            message: String::new(),
            deploy_blocked: false,
            effect: None,
            last_transition_time: Some("2026-12-01T10:00:00.5Z".to_owned()),
            breakglass_by: (state == TargetState::Breakglass).then(|| "dev@example.com".to_owned()),
            breakglass_since: (state == TargetState::Breakglass)
                .then(|| "2026-11-30T08:00:00Z".to_owned()),
        }
    }

    #[test]
    fn each_state_gets_the_verdict_a_dashboard_shows() {
        let targets = [
            target("a", TargetState::Compliant),
            target("b", TargetState::Remediated),
            target("c", TargetState::Drifted),
            target("d", TargetState::Failed),
            target("e", TargetState::Breakglass),
            target("f", TargetState::Conflicted),
            target("g", TargetState::Superseded),
            target("h", TargetState::Excepted),
        ];
        let pages = pages(&binding(), &targets);
        assert_eq!(pages.len(), 1);
        let report = &pages[0].content;
        assert_eq!(
            report.summary,
            ReportSummary {
                pass: 2,
                fail: 2,
                warn: 3,
                error: 0,
                skip: 1
            }
        );
        let verdicts: Vec<Verdict> = report.results.iter().map(|r| r.result).collect();
        use Verdict::*;
        assert_eq!(verdicts, [Pass, Pass, Fail, Fail, Warn, Warn, Skip, Warn]);
        assert_eq!(report.results[2].severity, Some(Severity::High));
        assert_eq!(
            report.results[4]
                .properties
                .get("breakglassBy")
                .map(String::as_str),
            Some("dev@example.com"),
            "a breakglass result says who set the justification"
        );
        assert_eq!(report.results[0].severity, None);
    }

    #[test]
    fn a_result_names_the_cloud_run_resource_in_full_and_keeps_its_transition_time() {
        let pages = pages(&binding(), &[target("checkout", TargetState::Drifted)]);
        let r = &pages[0].content.results[0];
        assert_eq!(
            r.resources[0].name.as_deref(),
            Some("projects/acme-prod/locations/us-central1/services/checkout")
        );
        assert_eq!(r.resources[0].kind.as_deref(), Some("Service"));
        assert_eq!(r.policy, "prod");
        assert_eq!(r.message, "Drifted: carries none, must carry default");
        assert_eq!(
            r.timestamp,
            Some(ResultTime {
                seconds: 1_796_119_200,
                nanos: 500_000_000
            })
        );
        let json = serde_json::to_value(r).unwrap();
        assert_eq!(json["result"], "fail");
        assert_eq!(json["severity"], "high");
        assert_eq!(json["properties"]["project"], "acme-prod");
    }

    #[test]
    fn many_targets_are_split_into_numbered_pages_and_none_is_lost() {
        let targets: Vec<TargetStatus> = (0..2_345)
            .map(|i| target(&format!("svc-{i:05}"), TargetState::Compliant))
            .collect();
        let pages = pages(&binding(), &targets);
        let names: Vec<&str> = pages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["binauthz-prod", "binauthz-prod-2", "binauthz-prod-3"]
        );
        let total: usize = pages.iter().map(|p| p.content.results.len()).sum();
        assert_eq!(total, 2_345);
        assert!(pages
            .iter()
            .all(|p| p.content.results.len() <= RESULTS_PER_REPORT));
        assert_eq!(pages[2].content.summary.pass, 345);
    }

    #[test]
    fn a_binding_without_targets_still_has_a_report() {
        let pages = pages(&binding(), &[]);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].content.summary, ReportSummary::default());
    }

    #[test]
    fn a_suspended_or_invalid_binding_reports_itself_not_its_resources() {
        let suspended = not_evaluated(&binding(), NotEvaluated::Suspended);
        assert_eq!(suspended[0].content.results[0].result, Verdict::Skip);
        assert!(suspended[0].content.results[0].resources.is_empty());
        let invalid = not_evaluated(
            &binding(),
            NotEvaluated::Invalid("spec.interval: too short"),
        );
        assert_eq!(invalid[0].content.summary.error, 1);
        assert!(invalid[0].content.results[0]
            .message
            .contains("spec.interval: too short"));
    }

    #[test]
    fn a_name_too_long_for_kubernetes_falls_back_to_the_uid() {
        let long = "n".repeat(250);
        let b = BindingRef {
            name: &long,
            ..binding()
        };
        assert_eq!(b.page_name(1), format!("binauthz-{}", b.uid));
        assert_eq!(b.page_name(2), format!("binauthz-{}-2", b.uid));
        assert_eq!(binding().page_name(1), "binauthz-prod");
    }
}
