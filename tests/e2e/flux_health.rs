//! Flux health, end to end. Flux's Kustomization health checks (`wait: true`,
//! `healthChecks`) compute a binding's health with kstatus
//! (`sigs.k8s.io/cli-utils/pkg/kstatus/status`); this suite runs the real library
//! (scripts/gotools/kstatus, built once by `scripts/gotool.sh kstatus`) over bindings the
//! controller really wrote on a real kube-apiserver, one state at a time: the README's
//! "Flux health checks" table, row by row.
//!
//! Argo CD's health check answers the same: every state's object is a sample of its
//! test suite (the testdata/ of deploy/argocd/resource_customizations/binauthz.dev/
//! BinAuthzBinding/, which scripts/lint-deploy.sh runs health.lua against), and for every
//! sample of that suite kstatus agrees with the Argo CD health its health_test.yaml
//! expects. `BINAUTHZ_UPDATE_ARGOCD_SAMPLES=1` rewrites the samples from this run.

use crate::support::envtest;
use crate::support::gotool::gotool;
use crate::support::kube::{binding, condition, operator_cluster};
use crate::support::process::{Emulator, Operator, OperatorConfig};
use crate::support::repo;
use crate::support::wait::eventually;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use binauthz_operator::api::BinAuthzBinding;
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;
use serde::Deserialize;
use serde_json::{json, Value};

const SEED: &str = "examples/cloudrun-seed.yaml";
const STRICT: &str = "projects/acme-sec/platforms/cloudRun/policies/strict";
/// Generous: a pass takes well under a second here, but the machine may be busy.
const PATIENCE: Duration = Duration::from_secs(120);
/// The Argo CD health check, in Argo CD's resource_customizations layout.
const ARGOCD_HEALTH: &str = "deploy/argocd/resource_customizations/binauthz.dev/BinAuthzBinding";
/// Set to 1 to rewrite the samples in testdata/ from this run.
const UPDATE_SAMPLES_ENV: &str = "BINAUTHZ_UPDATE_ARGOCD_SAMPLES";
/// What stands for the per-run values in a sample.
const SAMPLE_NAMESPACE: &str = "platform";
const SAMPLE_TIME: &str = "2026-01-05T10:00:00Z";

// ---------------------------------------------------------------------------------------
// kstatus and Argo CD verdicts

/// A kstatus status (`status.Status` in cli-utils).
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum KStatus {
    Current,
    InProgress,
    Failed,
    Terminating,
    NotFound,
    Unknown,
}

/// What the kstatus helper prints for one object.
#[derive(Deserialize, Debug)]
struct KVerdict {
    status: KStatus,
    message: String,
}

/// An Argo CD health status.
#[derive(Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
enum ArgoHealth {
    Healthy,
    Progressing,
    Degraded,
    Suspended,
    Missing,
    Unknown,
}

impl ArgoHealth {
    /// The kstatus status that means the same: settled and fine, still moving, or in need
    /// of a person.
    fn kstatus(self) -> Option<KStatus> {
        match self {
            Self::Healthy | Self::Suspended => Some(KStatus::Current),
            Self::Progressing => Some(KStatus::InProgress),
            Self::Degraded => Some(KStatus::Failed),
            Self::Missing | Self::Unknown => None,
        }
    }
}

/// Argo CD's health_test.yaml.
#[derive(Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: HealthStatus,
    input_path: String,
}

#[derive(Deserialize)]
struct HealthStatus {
    status: ArgoHealth,
    message: String,
}

fn health_tests() -> Vec<HealthTest> {
    let path = repo().join(ARGOCD_HEALTH).join("health_test.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let tests: HealthTests = serde_yaml_ng::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not a health_test.yaml: {e}", path.display()));
    tests.tests
}

/// What kstatus computes for `object`.
fn kstatus(object: &Value) -> KVerdict {
    let mut child = Command::new(gotool("kstatus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the kstatus helper");
    child
        .stdin
        .take()
        .expect("helper stdin")
        .write_all(&serde_json::to_vec(object).expect("object as JSON"))
        .expect("writing to the kstatus helper");
    let out = child.wait_with_output().expect("the kstatus helper ran");
    assert!(
        out.status.success(),
        "the kstatus helper refused the object: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "the kstatus helper's answer is not its JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// For every case of Argo CD's health_test.yaml, kstatus says what Argo CD says: the same
/// fixtures through both.
#[test]
fn kstatus_agrees_with_argocd_on_every_sample() {
    if envtest::e2e_skipped() {
        return;
    }
    let tests = health_tests();
    assert!(tests.len() >= 12, "expected the Argo CD samples");
    let mut disagreements = Vec::new();
    for test in &tests {
        let path = repo().join(ARGOCD_HEALTH).join(&test.input_path);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let object: Value = serde_yaml_ng::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not YAML: {e}", test.input_path));
        let verdict = kstatus(&object);
        let argo = test.health_status.status;
        if argo.kstatus() != Some(verdict.status) {
            disagreements.push(format!(
                "{}: Argo CD {argo:?} ({}), kstatus {:?} ({})",
                test.input_path, test.health_status.message, verdict.status, verdict.message
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "kstatus and Argo CD's health check disagree:\n{}",
        disagreements.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The cluster, the controller and the samples

/// A one-line picture of a binding's status, for failure messages.
fn describe(b: &BinAuthzBinding) -> String {
    match &b.status {
        None => "no status".to_owned(),
        Some(s) => format!(
            "generation {:?}, observedGeneration {:?}, conditions {:?}",
            b.metadata.generation,
            s.observed_generation,
            s.conditions
                .iter()
                .map(|c| format!("{}={} {}: {}", c.type_, c.status, c.reason, c.message))
                .collect::<Vec<_>>(),
        ),
    }
}

/// The binding as the controller left it, with what differs from run to run replaced by
/// fixed values: uid, resourceVersion, timestamps, the namespace (also inside messages).
fn as_sample(mut object: Value, ns: &str) -> Value {
    fn walk(value: &mut Value, ns: &str) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map.iter_mut() {
                    if matches!(
                        key.as_str(),
                        "lastTransitionTime"
                            | "lastSyncTime"
                            | "creationTimestamp"
                            | "policySetTime"
                            | "breakglassSince"
                    ) {
                        *inner = json!(SAMPLE_TIME);
                    } else {
                        walk(inner, ns);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, ns)),
            Value::String(text) => {
                *text = without_times(&without_uuids(&text.replace(ns, SAMPLE_NAMESPACE)));
            }
            _ => {}
        }
    }
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.remove("managedFields");
        metadata.insert("uid".into(), json!("00000000-0000-4000-8000-000000000000"));
        metadata.insert("resourceVersion".into(), json!("1"));
    }
    walk(&mut object, ns);
    object
}

/// `text` with every RFC 3339 UTC time to the second (`2026-12-02T21:16:54Z`, e.g. when the
/// operator set a policy, in an effect message) replaced by the sample time.
fn without_times(text: &str) -> String {
    const SHAPE: &[u8; 20] = b"dddd-dd-ddTdd:dd:ddZ";
    let fits = |candidate: &[u8]| {
        candidate.len() == SHAPE.len()
            && candidate.iter().zip(SHAPE).all(|(b, s)| match s {
                b'd' => b.is_ascii_digit(),
                _ => b == s,
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if i + SHAPE.len() <= bytes.len() && fits(&bytes[i..i + SHAPE.len()]) {
            out.push_str(SAMPLE_TIME);
            i += SHAPE.len();
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// `text` with every UUID (e.g. a Cloud Run operation id) replaced by a fixed one.
fn without_uuids(text: &str) -> String {
    const FIXED: &str = "00000000-0000-4000-8000-000000000000";
    let is_uuid = |candidate: &[u8]| {
        candidate.len() == 36
            && candidate.iter().enumerate().all(|(i, b)| match i {
                8 | 13 | 18 | 23 => *b == b'-',
                _ => b.is_ascii_hexdigit(),
            })
    };
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if i + 36 <= bytes.len() && is_uuid(&bytes[i..i + 36]) {
            out.push_str(FIXED);
            i += 36;
        } else {
            let c = text[i..].chars().next().unwrap_or_default();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Checks that testdata/`sample`.yaml is `served` (normalized), or rewrites it with
/// BINAUTHZ_UPDATE_ARGOCD_SAMPLES=1; and that health_test.yaml expects `argo` for it.
fn argocd_sample(served: &Value, ns: &str, sample: &str, argo: ArgoHealth) {
    let served = as_sample(served.clone(), ns);
    let input_path = format!("testdata/{sample}.yaml");
    let path = repo().join(ARGOCD_HEALTH).join(&input_path);
    if std::env::var(UPDATE_SAMPLES_ENV).is_ok_and(|v| v == "1") {
        let text = serde_yaml_ng::to_string(&served).expect("YAML");
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {input_path}: {e}"));
    } else {
        let committed: Value = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| serde_yaml_ng::from_str(&text).ok())
            .unwrap_or(Value::Null);
        assert!(
            committed == served,
            "{ARGOCD_HEALTH}/{input_path} is not what the controller writes now; rewrite it \
             with `{UPDATE_SAMPLES_ENV}=1 cargo test --test e2e flux_health::`, review the \
             diff and health_test.yaml, and run scripts/lint-deploy.sh.\nnow:\n{}",
            serde_yaml_ng::to_string(&served).unwrap_or_default()
        );
    }
    let expected = health_tests()
        .into_iter()
        .find(|t| t.input_path == input_path)
        .map(|t| t.health_status.status);
    assert_eq!(
        expected,
        Some(argo),
        "{ARGOCD_HEALTH}/health_test.yaml must expect {argo:?} for {input_path}"
    );
}

// ---------------------------------------------------------------------------------------
// The states

/// How a case's binding gets into its state.
enum Steps {
    /// No controller runs: the binding has only the CRD's default status.
    NeverSeen,
    /// The controller runs until the binding's Ready reason is this, for its generation.
    Ready(&'static str),
    /// The controller runs until Reconciling is True.
    Reconciling,
    /// Compliant first, then `spec.suspend: true` until the status says Suspended.
    Suspend,
    /// Compliant first, then the controller stops and the spec is edited.
    EditWhileStopped,
}

/// One row of the table: a binding state, what kstatus says and what Argo CD says.
struct Case {
    /// testdata/`sample`.yaml.
    sample: &'static str,
    emulator_args: &'static [&'static str],
    /// The bindings created, the first is the one judged.
    bindings: Vec<(&'static str, Value)>,
    steps: Steps,
    kstatus: KStatus,
    argo: ArgoHealth,
}

fn services(project: &str, policy: Value, extra: Value) -> Value {
    let mut spec = json!({
        "project": project,
        "locations": ["us-central1"],
        "targets": { "services": { "names": ["*"] } },
        "policy": policy,
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn strict() -> Value {
    json!({ "name": STRICT })
}

fn default_policy() -> Value {
    json!({ "useDefault": true })
}

/// Drives `case` on its own namespace, emulator and controller, and checks what kstatus
/// and Argo CD's samples say about the binding the controller left.
async fn check(case: Case) {
    let Some((cp, kubeconfig)) = operator_cluster().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let api: Api<BinAuthzBinding> = Api::namespaced(cp.client().await, &ns);
    let emulator = Emulator::start_with(SEED, case.emulator_args);
    let mut operator = match case.steps {
        Steps::NeverSeen => None,
        _ => Some(
            Operator::start(
                &OperatorConfig::new(kubeconfig, emulator.url())
                    .namespace(&ns)
                    .identity(&format!("operator-{ns}")),
            )
            .await,
        ),
    };
    for (name, spec) in &case.bindings {
        api.create(&PostParams::default(), &binding(name, spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("creating {name}: {e}"));
    }
    let name = case.bindings[0].0;
    match case.steps {
        Steps::NeverSeen => {}
        Steps::Ready(reason) => wait(&api, name, ready(reason)).await,
        Steps::Reconciling => {
            wait(&api, name, |b| {
                condition(b, "Reconciling").is_some_and(|c| c.status == "True")
            })
            .await;
        }
        Steps::Suspend => {
            wait(&api, name, ready("Compliant")).await;
            patch_spec(&api, name, json!({ "suspend": true })).await;
            wait(&api, name, |b| {
                observed(b) && condition(b, "Reconciling").is_some_and(|c| c.reason == "Suspended")
            })
            .await;
        }
        Steps::EditWhileStopped => {
            wait(&api, name, ready("Compliant")).await;
            if let Some(mut stopped) = operator.take() {
                stopped.kill();
            }
            patch_spec(&api, name, json!({ "priority": 1 })).await;
        }
    }
    let json = cp.kubectl_ok(["get", "bab", name, "-n", &ns, "-o", "json"]);
    let served: Value = serde_json::from_str(&json).expect("binding JSON");
    let verdict = kstatus(&served);
    assert_eq!(
        verdict.status,
        case.kstatus,
        "{}: kstatus says {:?} ({}); the binding: {}",
        case.sample,
        verdict.status,
        verdict.message,
        serde_json::to_string_pretty(&served["status"]).unwrap_or_default()
    );
    assert!(
        !verdict.message.is_empty(),
        "{}: no kstatus message",
        case.sample
    );
    assert_eq!(
        case.argo.kstatus(),
        Some(case.kstatus),
        "{}: the table's Argo CD health disagrees with its kstatus status",
        case.sample
    );
    argocd_sample(&served, &ns, case.sample, case.argo);
    drop(operator);
    drop(emulator);
}

/// The binding's status describes its generation, with this Ready reason.
fn ready(reason: &'static str) -> impl Fn(&BinAuthzBinding) -> bool {
    move |b| observed(b) && condition(b, "Ready").is_some_and(|c| c.reason == reason)
}

/// The binding's status describes its current generation.
fn observed(b: &BinAuthzBinding) -> bool {
    b.status.as_ref().and_then(|s| s.observed_generation) == b.metadata.generation
}

/// Waits until binding `name` satisfies `reached`.
async fn wait(api: &Api<BinAuthzBinding>, name: &str, reached: impl Fn(&BinAuthzBinding) -> bool) {
    eventually(
        &format!("binding {name} reaches its state"),
        PATIENCE,
        || async {
            let b = api.get(name).await.map_err(|e| e.to_string())?;
            if reached(&b) {
                Ok(())
            } else {
                Err(describe(&b))
            }
        },
    )
    .await;
}

async fn patch_spec(api: &Api<BinAuthzBinding>, name: &str, spec: Value) {
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "spec": spec })),
    )
    .await
    .unwrap_or_else(|e| panic!("editing {name}: {e}"));
}

// One test per row of the README's "Flux health checks" table.

#[tokio::test]
async fn a_binding_the_controller_has_not_seen_is_in_progress() {
    // kstatus reads a custom resource without status as Current: the CRD's default status
    // (observedGeneration -1) makes it wait for the operator's first look instead.
    check(Case {
        sample: "progressing-new",
        emulator_args: &[],
        bindings: vec![("prod-services", services("acme-prod", strict(), json!({})))],
        steps: Steps::NeverSeen,
        kstatus: KStatus::InProgress,
        argo: ArgoHealth::Progressing,
    })
    .await;
}

#[tokio::test]
async fn an_edit_the_controller_has_not_seen_is_in_progress() {
    check(Case {
        sample: "progressing-spec-edited",
        emulator_args: &[],
        bindings: vec![("prod-services", services("acme-prod", strict(), json!({})))],
        steps: Steps::EditWhileStopped,
        kstatus: KStatus::InProgress,
        argo: ArgoHealth::Progressing,
    })
    .await;
}

#[tokio::test]
async fn a_compliant_binding_is_current() {
    check(Case {
        sample: "healthy-compliant",
        emulator_args: &[],
        bindings: vec![("prod-services", services("acme-prod", strict(), json!({})))],
        steps: Steps::Ready("Compliant"),
        kstatus: KStatus::Current,
        argo: ArgoHealth::Healthy,
    })
    .await;
}

#[tokio::test]
async fn breakglass_and_blocked_deploys_leave_a_binding_current() {
    check(Case {
        sample: "healthy-breakglass",
        emulator_args: &[],
        bindings: vec![(
            "eu-web",
            json!({
                "project": "acme-prod",
                "locations": ["europe-west1"],
                "targets": { "services": { "names": ["frontend-eu", "recommendations"] } },
                "policy": { "useDefault": true },
                "breakglass": "Allow",
            }),
        )],
        steps: Steps::Ready("Compliant"),
        kstatus: KStatus::Current,
        argo: ArgoHealth::Healthy,
    })
    .await;
}

#[tokio::test]
async fn a_suspended_binding_is_current() {
    check(Case {
        sample: "suspended",
        emulator_args: &[],
        bindings: vec![("paused", services("acme-prod", strict(), json!({})))],
        steps: Steps::Suspend,
        kstatus: KStatus::Current,
        argo: ArgoHealth::Suspended,
    })
    .await;
}

#[tokio::test]
async fn remediations_in_flight_are_in_progress() {
    // Cloud Run takes ten minutes to finish each write: the fixes stay in flight.
    check(Case {
        sample: "progressing-reconciling",
        emulator_args: &["--operation-delay-ms=600000"],
        bindings: vec![("in-flight", services("acme-prod", strict(), json!({})))],
        steps: Steps::Reconciling,
        kstatus: KStatus::InProgress,
        argo: ArgoHealth::Progressing,
    })
    .await;
}

#[tokio::test]
async fn failed_remediations_are_retried_so_in_progress() {
    check(Case {
        sample: "progressing-remediation-failed",
        emulator_args: &["--operation-failure-rate=1"],
        bindings: vec![("failing", services("acme-prod", strict(), json!({})))],
        steps: Steps::Ready("RemediationFailed"),
        kstatus: KStatus::InProgress,
        argo: ArgoHealth::Progressing,
    })
    .await;
}

#[tokio::test]
async fn drift_in_audit_mode_needs_a_person_so_failed() {
    check(Case {
        sample: "degraded-audit-drift",
        emulator_args: &[],
        bindings: vec![(
            "audit",
            services("acme-prod", strict(), json!({ "mode": "Audit" })),
        )],
        steps: Steps::Ready("Drifted"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn a_conflict_is_failed() {
    let checkout = || {
        json!({
            "project": "acme-prod",
            "locations": ["us-central1"],
            "targets": { "services": { "names": ["checkout"] } },
        })
    };
    let mut team_a = checkout();
    team_a["policy"] = strict();
    let mut team_b = checkout();
    team_b["policy"] = default_policy();
    check(Case {
        sample: "degraded-conflict",
        emulator_args: &[],
        bindings: vec![("team-a", team_a), ("team-b", team_b)],
        steps: Steps::Ready("Conflict"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn a_refused_project_is_failed() {
    check(Case {
        sample: "degraded-project-refused",
        emulator_args: &["--forbid=acme-prod"],
        bindings: vec![(
            "project-refused",
            services("acme-prod", strict(), json!({})),
        )],
        steps: Steps::Ready("ProjectNotFoundOrForbidden"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn a_refused_write_is_failed() {
    check(Case {
        sample: "degraded-permission-denied",
        emulator_args: &["--forbid=write:acme-prod"],
        bindings: vec![(
            "write-denied",
            services("acme-prod", default_policy(), json!({})),
        )],
        steps: Steps::Ready("PermissionDenied"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn a_policy_that_does_not_exist_is_failed() {
    check(Case {
        sample: "degraded-policy-not-found",
        emulator_args: &[],
        bindings: vec![(
            "policy-not-found",
            services(
                "acme-prod",
                json!({ "name": "projects/acme-sec/platforms/cloudRun/policies/missing" }),
                json!({}),
            ),
        )],
        steps: Steps::Ready("PolicyNotFound"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn an_organization_policy_conflict_is_failed() {
    check(Case {
        sample: "degraded-org-policy-conflict",
        emulator_args: &[],
        bindings: vec![(
            "org-policy-conflict",
            services("acme-legacy", default_policy(), json!({})),
        )],
        steps: Steps::Ready("OrgPolicyConflict"),
        kstatus: KStatus::Failed,
        argo: ArgoHealth::Degraded,
    })
    .await;
}

#[tokio::test]
async fn an_unavailable_cloud_run_is_retried_so_in_progress() {
    check(Case {
        sample: "progressing-cloudrun-unavailable",
        emulator_args: &["--error-rate=503=1"],
        bindings: vec![("outage", services("acme-prod", strict(), json!({})))],
        steps: Steps::Ready("CloudRunUnavailable"),
        kstatus: KStatus::InProgress,
        argo: ArgoHealth::Progressing,
    })
    .await;
}
