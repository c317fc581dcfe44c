//! The BinAuthzBinding CRD on a real kube-apiserver: it is accepted and Established (the CEL
//! cost budget holds), the shared corpus of valid bindings is stored as written, every
//! invalid binding is refused by the server with the fragments its `# expect:` lines name,
//! `kubectl get` shows the printer columns, `kubectl explain` prints the descriptions, and
//! the Argo CD health samples (the testdata/ of
//! deploy/argocd/resource_customizations/binauthz.dev/BinAuthzBinding/) are what the server
//! really stores.

use crate::support::envtest;
use crate::support::kube::corpus;
use crate::support::repo;

use std::path::PathBuf;
use std::sync::OnceLock;

use binauthz_operator::api::{
    BinAuthzBinding, BinAuthzBindingStatus, Condition, FailureReason, OrgPolicyState,
    OrgPolicyStatus, PolicyCheck, PolicyCheckResult, ResourceKind, Summary, TargetState,
    TargetStatus, UnreadLocation, UNOBSERVED_GENERATION,
};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::Api;
use serde_json::{json, Value};

const CRD_NAME: &str = "binauthzbindings.binauthz.dev";
/// Set to 1 to rewrite the Argo CD samples (testdata/*.yaml) from the objects the server
/// returns.
const UPDATE_SAMPLES_ENV: &str = "BINAUTHZ_UPDATE_ARGOCD_SAMPLES";
/// The Argo CD health check's samples, in Argo CD's resource_customizations layout.
const ARGOCD_TESTDATA: &str =
    "deploy/argocd/resource_customizations/binauthz.dev/BinAuthzBinding/testdata";

/// The shared control plane with crds/ installed (once per test binary).
async fn control_plane() -> Option<&'static envtest::ControlPlane> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    let cp = envtest::control_plane_or_skip().await?;
    INSTALLED.get_or_init(|| cp.install_crds(repo().join("crds")));
    Some(cp)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The first path at which `stored` does not hold `written` (extra fields in `stored`, such
/// as defaults, are fine), or `None` when everything written was kept.
fn first_difference(written: &Value, stored: &Value, path: &str) -> Option<String> {
    match (written, stored) {
        (Value::Object(w), Value::Object(s)) => {
            w.iter().find_map(|(key, value)| match s.get(key) {
                Some(kept) => first_difference(value, kept, &format!("{path}.{key}")),
                None => Some(format!("{path}.{key} (dropped)")),
            })
        }
        (Value::Array(w), Value::Array(s)) if w.len() == s.len() => w
            .iter()
            .zip(s)
            .enumerate()
            .find_map(|(i, (a, b))| first_difference(a, b, &format!("{path}[{i}]"))),
        _ if written == stored => None,
        _ => Some(format!("{path}: wrote {written}, stored {stored}")),
    }
}

fn bindings_api(client: kube::Client, namespace: &str) -> Api<BinAuthzBinding> {
    Api::namespaced(client, namespace)
}

/// The same resource, untyped: lets the tests send what the Rust types cannot express.
fn dynamic_api(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client,
        namespace,
        &ApiResource::erase::<BinAuthzBinding>(&()),
    )
}

#[tokio::test]
async fn crd_is_established_with_every_rule_kept() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let json = cp.kubectl_ok(["get", "customresourcedefinition", CRD_NAME, "-o", "json"]);
    let stored: Value = serde_json::from_str(&json).expect("CRD as JSON");
    let conditions = stored["status"]["conditions"]
        .as_array()
        .expect("the CRD has status conditions");
    for wanted in ["Established", "NamesAccepted"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == wanted && c["status"] == "True"),
            "CRD condition {wanted} is not True: {conditions:#?}"
        );
    }
    for unwanted in [
        "NonStructuralSchema",
        "KubernetesAPIApprovalPolicyConformant",
    ] {
        assert!(
            !conditions
                .iter()
                .any(|c| c["type"] == unwanted && c["status"] == "True"),
            "CRD condition {unwanted} is True: {conditions:#?}"
        );
    }
    // The server stores the rules it accepted: none may have been dropped on the way.
    let file = std::fs::read_to_string(repo().join("crds").join(format!("{CRD_NAME}.yaml")))
        .expect("crds/ readable");
    let committed: Value = serde_yaml_ng::from_str(&file).expect("CRD YAML");
    let rules = |crd: &Value| {
        let mut out = Vec::new();
        collect_rules(&crd["spec"]["versions"][0]["schema"], &mut out);
        out.sort();
        out
    };
    let committed_rules = rules(&committed);
    assert!(
        committed_rules.len() >= 10,
        "expected the CEL rules of crds/, found {committed_rules:?}"
    );
    assert_eq!(rules(&stored), committed_rules);
}

fn collect_rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "x-kubernetes-validations" {
                    for rule in value.as_array().into_iter().flatten() {
                        out.push(rule["rule"].as_str().unwrap_or_default().to_owned());
                    }
                } else {
                    collect_rules(value, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn valid_corpus_is_accepted_and_stored_as_written() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let samples = corpus("valid");
    assert!(samples.len() >= 15, "at least 15 valid samples");
    let mut problems = Vec::new();
    for s in &samples {
        let doc = s.in_namespace(&ns);
        // kubectl's default validation is the server's strict field validation.
        let out = cp.kubectl_stdin(
            ["create", "--validate=strict", "-o", "json", "-f", "-"],
            &doc.to_string(),
        );
        if !out.status.success() {
            problems.push(format!(
                "{}: refused: {}",
                s.file(),
                output_text(&out).trim()
            ));
            continue;
        }
        let stored: Value = serde_json::from_slice(&out.stdout).expect("created object as JSON");
        if let Some(diff) = first_difference(&doc["spec"], &stored["spec"], "spec") {
            problems.push(format!("{}: not stored as written: {diff}", s.file()));
        }
    }
    assert!(
        problems.is_empty(),
        "the API server did not take the valid corpus as written:\n{}",
        problems.join("\n")
    );
    let listed = cp.kubectl_ok(["get", "bab", "-n", &ns, "-o", "name"]);
    assert_eq!(listed.lines().count(), samples.len(), "listed: {listed}");
}

#[tokio::test]
async fn invalid_corpus_is_refused_by_the_server_naming_the_field() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let untyped = dynamic_api(cp.client().await, &ns);
    let samples = corpus("invalid");
    assert!(samples.len() >= 30, "at least 30 invalid samples");
    let mut problems = Vec::new();
    for s in &samples {
        assert!(
            !s.expect.is_empty(),
            "{} records no `# expect:` fragment",
            s.path.display()
        );
        let doc = s.in_namespace(&ns);

        // 1. What a person gets: kubectl with its default validation, which asks the server
        //    for strict field validation (unknown fields refused, not dropped).
        //    `-v=6` logs each response: the refusal must be the server's answer to the POST.
        let out = cp.kubectl_stdin(
            [
                "create",
                "-v=6",
                "--validate=strict",
                "-o",
                "name",
                "-f",
                "-",
            ],
            &doc.to_string(),
        );
        let strict = output_text(&out);
        if out.status.success() {
            problems.push(format!("{}: accepted: {}", s.file(), strict.trim()));
            continue;
        }
        let refused_by_server = strict.lines().any(|l| {
            l.contains(r#""Response" verb="POST""#)
                && l.contains("fieldValidation=Strict")
                && l.contains(r#"status="4"#)
        });
        let strict = without_klog(&strict);
        if !refused_by_server {
            problems.push(format!(
                "{}: refused, but not by the server answering a strict POST: {}",
                s.file(),
                strict.trim()
            ));
            continue;
        }
        for fragment in &s.expect {
            if !strict.contains(fragment.as_str()) {
                problems.push(format!(
                    "{}: the server's refusal lacks {fragment:?}: {}",
                    s.file(),
                    strict.trim()
                ));
            }
        }
        // A CEL rule that fails to evaluate ("type conversion error ... evaluating rule")
        // adds noise to a refusal: each rule must hold or fail cleanly on any input.
        if strict.contains("evaluating rule") {
            problems.push(format!(
                "{}: a CEL rule failed to evaluate: {}",
                s.file(),
                strict.trim()
            ));
        }

        // 2. The schema and CEL rules on their own: a client that does not ask for strict
        //    field validation (the kube client's POST). A sample whose only fault is an
        //    unknown field may then pass, but the field must not be stored.
        let object: DynamicObject = serde_json::from_value(doc.clone())
            .unwrap_or_else(|e| panic!("{}: not an object: {e}", s.file()));
        let decoding_only = strict.contains("strict decoding error");
        match untyped
            .create(
                &PostParams {
                    dry_run: true,
                    field_manager: None,
                },
                &object,
            )
            .await
        {
            Err(kube::Error::Api(status)) if !decoding_only => {
                for fragment in &s.expect {
                    if !status.message.contains(fragment.as_str()) {
                        problems.push(format!(
                            "{}: without strict field validation the refusal lacks {fragment:?}: {}",
                            s.file(),
                            status.message
                        ));
                    }
                }
            }
            Err(kube::Error::Api(_)) => {}
            Err(other) => panic!("{}: creating: {other}", s.file()),
            Ok(stored) if decoding_only => {
                let stored = serde_json::to_value(&stored).expect("object as JSON");
                if first_difference(&doc["spec"], &stored["spec"], "spec").is_none() {
                    problems.push(format!(
                        "{}: the unknown field was stored: {}",
                        s.file(),
                        stored["spec"]
                    ));
                }
            }
            Ok(_) => problems.push(format!(
                "{}: accepted without strict field validation: the schema does not refuse it",
                s.file()
            )),
        }
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with the invalid corpus on a real API server:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let listed = cp.kubectl_ok(["get", "bab", "-n", &ns, "-o", "name"]);
    assert!(
        listed.trim().is_empty(),
        "refused samples were stored: {listed}"
    );
}

/// kubectl's output without its `-v` log lines (and the response object they dump).
fn without_klog(text: &str) -> String {
    let is_klog = |l: &str| {
        let b = l.as_bytes();
        b.len() > 6
            && b"IWEF".contains(&b[0])
            && b[1..5].iter().all(u8::is_ascii_digit)
            && b[5] == b' '
    };
    let mut kept = Vec::new();
    let mut in_dump = false;
    for line in text.lines() {
        if is_klog(line) {
            in_dump = line.contains("server response object");
        } else if in_dump {
            in_dump = line != "}]";
        } else {
            kept.push(line);
        }
    }
    kept.join("\n")
}

/// One row of `kubectl get` output, by the header's column positions (cells may be empty).
fn table(output: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = output.lines();
    let header = lines.next().unwrap_or_default();
    let mut starts = Vec::new();
    let mut previous = ' ';
    for (i, c) in header.char_indices() {
        if c != ' ' && previous == ' ' {
            starts.push(i);
        }
        previous = c;
    }
    let names: Vec<String> = header.split_whitespace().map(str::to_owned).collect();
    lines
        .map(|line| {
            starts
                .iter()
                .enumerate()
                .map(|(i, &start)| {
                    let end = starts.get(i + 1).copied().unwrap_or(line.len());
                    let cell = line.get(start.min(line.len())..end.min(line.len()));
                    (names[i].clone(), cell.unwrap_or_default().trim().to_owned())
                })
                .collect()
        })
        .collect()
}

fn cell<'a>(row: &'a [(String, String)], column: &str) -> &'a str {
    row.iter()
        .find(|(name, _)| name == column)
        .map(|(_, value)| value.as_str())
        .unwrap_or_else(|| panic!("no column {column} in {row:?}"))
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: "2026-01-05T10:00:00Z".to_owned(),
        observed_generation: Some(1),
    }
}

#[tokio::test]
async fn kubectl_get_shows_the_printer_columns() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let ns = cp.fresh_namespace().await;
    let client = cp.client().await;
    let policy = "projects/acme-prod/platforms/cloudRun/policies/strict";

    // A status sent with the object is ignored: status has its own subresource.
    let untyped = dynamic_api(client.clone(), &ns);
    let web: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": { "name": "web" },
        "spec": {
            "project": "acme-prod",
            "locations": ["us-central1"],
            "targets": { "services": { "names": ["*"] } },
            "policy": { "name": policy },
            "mode": "Audit"
        },
        "status": { "observedGeneration": 1, "policy": "smuggled" }
    }))
    .expect("binding object");
    let created = untyped
        .create(&PostParams::default(), &web)
        .await
        .expect("creating web");
    // What is served instead is the CRD's default status (src/api/crd.rs), which kstatus
    // reads as "not observed yet".
    // (with its nested defaults).
    assert_eq!(
        created.data.get("status"),
        Some(&json!({ "observedGeneration": UNOBSERVED_GENERATION, "targetsTruncated": false })),
        "a status sent with create was stored"
    );
    let fresh: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": { "name": "fresh" },
        "spec": {
            "project": "123456789012",
            "locations": ["*"],
            "targets": { "jobs": { "names": ["nightly-*"] } },
            "policy": { "useDefault": true }
        }
    }))
    .expect("binding object");
    untyped
        .create(&PostParams::default(), &fresh)
        .await
        .expect("creating fresh");

    // The operator's way of writing status: the status subresource.
    let status = BinAuthzBindingStatus {
        observed_generation: Some(1),
        last_sync_time: Some("2026-01-05T10:00:00Z".to_owned()),
        policy: Some(policy.to_owned()),
        conditions: vec![
            condition(
                "Ready",
                "False",
                "Drifted",
                "3 of 12 targets drifted (Audit mode: not fixed)",
            ),
            condition("Reconciling", "False", "Idle", "No remediation in flight"),
            condition("Stalled", "False", "Progressing", "Nothing needs a human"),
        ],
        summary: Some(Summary {
            matched: 12,
            compliant: 9,
            drifted: 3,
            ..Summary::default()
        }),
        targets: vec![TargetStatus {
            kind: ResourceKind::Service,
            location: "us-central1".to_owned(),
            name: "checkout".to_owned(),
            state: TargetState::Drifted,
            observed: "none".to_owned(),
            desired: policy.to_owned(),
            message: String::new(),
            deploy_blocked: false,
            last_transition_time: Some("2026-01-05T10:00:00Z".to_owned()),
            breakglass_by: None,
            breakglass_since: None,
            effect: None,
        }],
        targets_truncated: false,
        unread_locations: vec![UnreadLocation {
            location: "me-west1".to_owned(),
            reason: FailureReason::VpcServiceControls,
            message: "listing services: Request is prohibited by organization's policy".to_owned(),
        }],
        policy_check: Some(PolicyCheck {
            result: PolicyCheckResult::Unverifiable,
            message: "cannot read policy".to_owned(),
        }),
        org_policy: Some(OrgPolicyStatus {
            state: OrgPolicyState::Enforced,
            allowed_values: vec!["default".to_owned()],
            message: String::new(),
        }),
        last_handled_reconcile_at: Some("2026-01-05T10:00:00Z".to_owned()),
    };
    let typed = bindings_api(client, &ns);
    let patched = typed
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("patching web's status");
    assert_eq!(patched.status.as_ref(), Some(&status));

    let plain = cp.kubectl_ok(["get", "bab", "-n", &ns]);
    let rows = table(&plain);
    let header: Vec<&str> = plain
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROJECT",
            "MODE",
            "MATCHED",
            "COMPLIANT",
            "READY",
            "AGE"
        ],
        "{plain}"
    );
    assert_eq!(rows.len(), 2, "{plain}");
    let row = |name: &str, rows: &[Vec<(String, String)>]| {
        rows.iter()
            .find(|r| cell(r, "NAME") == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}"))
    };
    let web_row = row("web", &rows);
    assert_eq!(cell(&web_row, "PROJECT"), "acme-prod");
    assert_eq!(cell(&web_row, "MODE"), "Audit");
    assert_eq!(cell(&web_row, "MATCHED"), "12");
    assert_eq!(cell(&web_row, "COMPLIANT"), "9");
    assert_eq!(cell(&web_row, "READY"), "False");
    assert!(!cell(&web_row, "AGE").is_empty(), "{plain}");
    // Before the operator's first pass: spec columns and the server's default Mode only.
    let fresh_row = row("fresh", &rows);
    assert_eq!(cell(&fresh_row, "PROJECT"), "123456789012");
    assert_eq!(cell(&fresh_row, "MODE"), "Enforce");
    assert_eq!(cell(&fresh_row, "MATCHED"), "");
    assert_eq!(cell(&fresh_row, "READY"), "");

    let wide = cp.kubectl_ok(["get", "binauthzbindings", "-n", &ns, "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROJECT",
            "MODE",
            "MATCHED",
            "COMPLIANT",
            "READY",
            "AGE",
            "POLICY",
            "REASON"
        ],
        "{wide}"
    );
    let web_row = row("web", &table(&wide));
    assert_eq!(cell(&web_row, "POLICY"), policy);
    assert_eq!(cell(&web_row, "REASON"), "Drifted");
}

/// The schema node for a dotted path under the CRD's openAPIV3Schema.
fn schema_at<'a>(schema: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(schema, |node, part| {
        let node = if node["type"] == "array" {
            &node["items"]
        } else {
            node
        };
        &node["properties"][part]
    })
}

fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn kubectl_explain_prints_the_descriptions() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let file = std::fs::read_to_string(repo().join("crds").join(format!("{CRD_NAME}.yaml")))
        .expect("crds/ readable");
    let crd: Value = serde_yaml_ng::from_str(&file).expect("CRD YAML");
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    for path in [
        "spec.targets.services.names",
        "spec.project",
        "spec.mode",
        "spec.policy.useDefault",
        "spec.targets.jobs.labelSelector.matchExpressions.operator",
        "spec.interval",
        "status.conditions.reason",
        "status.summary.deployBlocked",
    ] {
        let description = schema_at(schema, path)["description"]
            .as_str()
            .unwrap_or_else(|| panic!("crds/ has no description for {path}"));
        let out = cp.kubectl_ok(["explain", &format!("binauthzbinding.{path}")]);
        assert!(
            words(&out).contains(&words(description)),
            "kubectl explain binauthzbinding.{path} lacks the description {description:?}:\n{out}"
        );
    }
    // The resource itself, with the kind's description and its fields.
    let out = cp.kubectl_ok(["explain", "bab.spec"]);
    for field in [
        "project",
        "locations",
        "targets",
        "policy",
        "mode",
        "suspend",
    ] {
        assert!(
            out.lines().any(|l| l.trim_start().starts_with(field)),
            "kubectl explain bab.spec does not list {field}:\n{out}"
        );
    }
    let out = cp.kubectl_ok(["explain", "bab.spec.mode"]);
    assert!(
        out.contains("Enforce") && out.contains("Audit"),
        "kubectl explain bab.spec.mode lists no enum values:\n{out}"
    );
}

// ---------------------------------------------------------------------------------------
// Argo CD health samples

/// Metadata the server invents per object: taken from the committed sample so that the
/// samples stay stable; everything else in a sample is what the server returned.
const VOLATILE_METADATA: [&str; 4] = ["uid", "resourceVersion", "creationTimestamp", "namespace"];

fn argocd_samples() -> Vec<PathBuf> {
    let dir = repo().join(ARGOCD_TESTDATA);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    paths
}

/// A spec that differs from `spec` (so that switching between the two bumps the generation).
fn other_spec(spec: &Value) -> Value {
    let mut other = spec.clone();
    let priority = spec["priority"].as_i64().unwrap_or(0);
    other["priority"] = json!(if priority == 1000 { 999 } else { priority + 1 });
    other
}

/// Creates the sample's binding in `ns`, edits its spec until `metadata.generation` equals
/// the sample's, writes its status through the status subresource, and returns the object
/// the server then serves.
async fn replay(cp: &envtest::ControlPlane, api: &Api<DynamicObject>, sample: &Value) -> Value {
    let name = sample["metadata"]["name"].as_str().expect("sample name");
    let spec = &sample["spec"];
    let generation = sample["metadata"]["generation"]
        .as_i64()
        .unwrap_or(1)
        .max(1);
    let other = other_spec(spec);
    // Generation 1 is the created spec; each edit alternates between the two specs and
    // ends on the sample's own.
    let first = if generation % 2 == 1 { spec } else { &other };
    let mut metadata = json!({ "name": name });
    for key in ["labels", "annotations"] {
        if let Some(value) = sample["metadata"].get(key) {
            metadata[key] = value.clone();
        }
    }
    let object: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "binauthz.dev/v1alpha1",
        "kind": "BinAuthzBinding",
        "metadata": metadata,
        "spec": first,
    }))
    .expect("sample object");
    api.create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("{name}: the server refused the sample's spec: {e}"));
    for step in 2..=generation {
        let next = if (generation - step) % 2 == 0 {
            spec
        } else {
            &other
        };
        api.patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": next })),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: editing the spec: {e}"));
    }
    if let Some(status) = sample.get("status") {
        api.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .unwrap_or_else(|e| panic!("{name}: the server refused the sample's status: {e}"));
    }
    let ns = api.namespace().expect("a namespaced api");
    let json = cp.kubectl_ok(["get", "bab", name, "-n", ns, "-o", "json"]);
    serde_json::from_str(&json).expect("object as JSON")
}

/// The server's object in the sample's clothes: its own metadata.uid & co replaced by the
/// sample's, managedFields dropped (they carry timestamps and field manager names).
fn as_sample(mut served: Value, sample: &Value) -> Value {
    let metadata = served["metadata"]
        .as_object_mut()
        .expect("served object has metadata");
    metadata.remove("managedFields");
    for key in VOLATILE_METADATA {
        match sample["metadata"].get(key) {
            Some(value) => {
                metadata.insert(key.to_owned(), value.clone());
            }
            None => {
                metadata.remove(key);
            }
        }
    }
    served
}

#[tokio::test]
async fn argocd_health_samples_are_objects_the_server_serves() {
    let Some(cp) = control_plane().await else {
        return;
    };
    let update = std::env::var(UPDATE_SAMPLES_ENV).is_ok_and(|v| v == "1");
    let samples = argocd_samples();
    assert!(samples.len() >= 10, "expected the Argo CD samples");
    let mut stale = Vec::new();
    for path in &samples {
        let file = path.file_name().map(|n| n.to_string_lossy().into_owned());
        let file = file.unwrap_or_default();
        let text = std::fs::read_to_string(path).expect("sample readable");
        let sample: Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
        // Samples share names (team-a, ...): a namespace each keeps them apart.
        let ns = cp.fresh_namespace().await;
        let api = dynamic_api(cp.client().await, &ns);
        let served = as_sample(replay(cp, &api, &sample).await, &sample);
        if served != sample {
            if update {
                let text = serde_yaml_ng::to_string(&served).expect("YAML");
                std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {file}: {e}"));
            }
            stale.push(file);
        }
    }
    assert!(
        update || stale.is_empty(),
        "these Argo CD samples differ from what the API server serves for them (a field the \
         schema drops or defaults, or a hand edit): {stale:?}. Rewrite them from the server \
         with `{UPDATE_SAMPLES_ENV}=1 cargo test --test e2e crd::argocd`, review the diff, and \
         check health_test.yaml beside testdata/ still holds (scripts/lint-deploy.sh)."
    );
    if update && !stale.is_empty() {
        eprintln!("rewrote {} sample(s): {stale:?}", stale.len());
    }
}
