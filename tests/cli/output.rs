//! The CI formats of `check` and `validate` (SARIF, JUnit XML, GitHub annotations), the
//! shift-left check of Cloud Run manifests, and the composite GitHub Action — each through
//! the built binary, as a CI job runs it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::process::{self, text, BINARY as BIN};
use crate::support::repo;
use crate::{INVALID_BINDING, VALID_BINDING};

/// `binauthz-operator ARGS...` in `dir` (see [`process::run`]).
fn run_in(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    process::run(Some(dir), args, stdin)
}

/// The published SARIF 2.1.0 schema (tests/fixtures/sarif/ORIGIN.md).
fn sarif_validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let schema: Value = serde_json::from_str(
            &std::fs::read_to_string(repo().join("tests/fixtures/sarif/sarif-schema-2.1.0.json"))
                .expect("the vendored SARIF schema"),
        )
        .expect("the schema is JSON");
        assert_eq!(
            schema["id"],
            "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
        );
        jsonschema::draft4::new(&schema).expect("the schema compiles")
    })
}

/// Parses stdout as SARIF and validates it against the schema; returns the log.
fn valid_sarif(out: &Output) -> Value {
    let log: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("SARIF is JSON: {e}\n{}", text(&out.stdout)));
    let errors: Vec<String> = sarif_validator()
        .iter_errors(&log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "invalid SARIF:\n{}", errors.join("\n"));
    // Beyond the schema: every result names a listed rule at its index.
    let run = &log["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().expect("rules");
    for result in run["results"].as_array().expect("results") {
        let index = result["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(rules[index]["id"], result["ruleId"], "{result}");
        assert!(!rules[index]["help"]["text"]
            .as_str()
            .unwrap_or_default()
            .is_empty());
    }
    log
}

fn results(log: &Value) -> &Vec<Value> {
    log["runs"][0]["results"].as_array().expect("results")
}

/// `(uri, startLine)` of a result's first location.
fn located(result: &Value) -> (String, Option<u64>) {
    let physical = &result["locations"][0]["physicalLocation"];
    (
        physical["artifactLocation"]["uri"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        physical["region"]["startLine"].as_u64(),
    )
}

/// Parses stdout as JUnit XML: per test case `(suite, name, outcome)` where outcome is
/// `passed`, `failure:TYPE`, `error:TYPE` or `skipped`; checks the suites' counts.
fn junit_cases(out: &Output) -> Vec<(String, String, String)> {
    let xml = text(&out.stdout);
    let doc = roxmltree::Document::parse(&xml).unwrap_or_else(|e| panic!("JUnit XML: {e}\n{xml}"));
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let mut cases = Vec::new();
    for suite in root.children().filter(|n| n.has_tag_name("testsuite")) {
        let suite_name = suite.attribute("name").expect("suite name").to_owned();
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        let mut tests = 0;
        for case in suite.children().filter(|n| n.has_tag_name("testcase")) {
            tests += 1;
            let child = case
                .children()
                .find(|n| n.is_element() && !n.has_tag_name("system-out"));
            let outcome = match child {
                None => "passed".to_owned(),
                Some(c) if c.has_tag_name("skipped") => {
                    *counts.entry("skipped").or_default() += 1;
                    "skipped".to_owned()
                }
                Some(c) => {
                    let kind = c.tag_name().name();
                    *counts
                        .entry(if kind == "failure" {
                            "failures"
                        } else {
                            "errors"
                        })
                        .or_default() += 1;
                    assert!(!c.attribute("message").unwrap_or_default().is_empty());
                    format!("{kind}:{}", c.attribute("type").unwrap_or_default())
                }
            };
            cases.push((
                suite_name.clone(),
                case.attribute("name").expect("case name").to_owned(),
                outcome,
            ));
        }
        assert_eq!(suite.attribute("tests"), Some(tests.to_string().as_str()));
        for what in ["failures", "errors", "skipped"] {
            assert_eq!(
                suite.attribute(what),
                Some(
                    counts
                        .get(what)
                        .copied()
                        .unwrap_or_default()
                        .to_string()
                        .as_str()
                ),
                "{suite_name}: {what}"
            );
        }
    }
    assert_eq!(
        root.attribute("tests"),
        Some(cases.len().to_string().as_str())
    );
    cases
}

/// The GitHub workflow commands among stdout's lines.
fn workflow_commands(out: &Output) -> Vec<String> {
    text(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("::"))
        .map(str::to_owned)
        .collect()
}

/// `check` over examples/bindings (legacy.yaml included: an organization policy conflict,
/// exit 1) against the embedded emulator, from the repository root as a CI job runs it.
fn check_examples(format: &str) -> Output {
    run_in(
        &repo(),
        &[
            "check",
            "-f",
            "examples/bindings",
            "--emulator",
            "examples/cloudrun-seed.yaml",
            "-o",
            format,
        ],
        None,
    )
}

/// What the JSON report says each format must carry.
struct Expected {
    exit: Option<i32>,
    /// (binding, `Kind location/name`, state) of every target.
    targets: Vec<(String, String, String)>,
    /// Bindings whose Ready reason needs a person.
    failed_bindings: Vec<String>,
    /// Projects holding resources no binding matches (a note each).
    uncovered_projects: Vec<String>,
}

fn expected() -> &'static Expected {
    static EXPECTED: OnceLock<Expected> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let out = check_examples("json");
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let mut targets = Vec::new();
        let mut failed_bindings = Vec::new();
        for b in report["bindings"].as_array().expect("bindings") {
            let key = format!(
                "{}/{}",
                b["namespace"].as_str().unwrap(),
                b["name"].as_str().unwrap()
            );
            if !["Compliant", "Drifted", "Conflict", "Suspended"]
                .contains(&b["reason"].as_str().unwrap())
            {
                failed_bindings.push(key.clone());
            }
            for t in b["targets"].as_array().expect("targets") {
                targets.push((
                    key.clone(),
                    format!(
                        "{} {}/{}",
                        t["kind"].as_str().unwrap(),
                        t["location"].as_str().unwrap(),
                        t["name"].as_str().unwrap()
                    ),
                    // A complying target whose policy is not yet in effect is a note.
                    if t["effect"]["state"] == "NotEffective"
                        && ["Compliant", "Remediated"].contains(&t["state"].as_str().unwrap())
                    {
                        "NotEffective".to_owned()
                    } else {
                        t["state"].as_str().unwrap().to_owned()
                    },
                ));
            }
        }
        assert_eq!(
            failed_bindings,
            ["platform/legacy"],
            "the demo's org policy conflict"
        );
        assert!(
            targets.iter().any(|t| t.2 == "Drifted") && targets.iter().any(|t| t.2 == "Breakglass")
        );
        let uncovered_projects = report["coverage"]
            .as_array()
            .expect("coverage")
            .iter()
            .filter(|c| c["uncovered"].as_u64().unwrap() > 0)
            .map(|c| c["project"].as_str().unwrap().to_owned())
            .collect();
        Expected {
            uncovered_projects,
            exit: out.status.code(),
            targets,
            failed_bindings,
        }
    })
}

/// The 1-based line of `policy:` in a binding file of the repository.
fn policy_line(path: &str) -> u64 {
    let text = std::fs::read_to_string(repo().join(path)).unwrap();
    let index = text
        .lines()
        .position(|l| l.starts_with("  policy:"))
        .unwrap_or_else(|| panic!("{path} has no spec.policy"));
    index as u64 + 1
}

fn rule_of(state: &str) -> Option<&'static str> {
    match state {
        "Drifted" => Some("target-drifted"),
        "Conflicted" => Some("target-conflicted"),
        "Failed" => Some("target-failed"),
        "Breakglass" => Some("target-breakglass"),
        "NotEffective" => Some("target-not-effective"),
        _ => None,
    }
}

#[test]
fn check_sarif_is_valid_sarif_with_a_result_per_target_needing_attention_at_its_binding() {
    let expected = expected();
    assert_eq!(expected.exit, Some(1));
    let out = check_examples("sarif");
    assert_eq!(
        out.status.code(),
        expected.exit,
        "same exit code: {}",
        text(&out.stderr)
    );
    let log = valid_sarif(&out);
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(
        log["runs"][0]["tool"]["driver"]["name"],
        "binauthz-operator"
    );
    let mut want: Vec<String> = expected
        .targets
        .iter()
        .filter_map(|(_, _, state)| rule_of(state).map(str::to_owned))
        .collect();
    want.extend(
        expected
            .failed_bindings
            .iter()
            .map(|_| "binding-error".to_owned()),
    );
    want.extend(
        expected
            .uncovered_projects
            .iter()
            .map(|_| "project-uncovered".to_owned()),
    );
    assert!(
        !expected.uncovered_projects.is_empty(),
        "the demo estate holds resources no binding names"
    );
    want.sort();
    let mut got: Vec<String> = results(&log)
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap().to_owned())
        .collect();
    got.sort();
    assert_eq!(got, want);
    for result in results(&log) {
        let (uri, line) = located(result);
        assert!(
            uri.starts_with("examples/bindings/") && uri.ends_with(".yaml"),
            "{result}"
        );
        assert_eq!(
            line,
            Some(policy_line(&uri)),
            "at the binding's spec.policy: {result}"
        );
        assert_eq!(
            result["locations"][0]["physicalLocation"]["artifactLocation"]["uriBaseId"],
            "%SRCROOT%"
        );
        let level = result["level"].as_str().unwrap();
        let rule = result["ruleId"].as_str().unwrap();
        assert_eq!(
            level,
            match rule {
                "target-breakglass" => "warning",
                "target-not-effective" | "project-uncovered" => "note",
                _ => "error",
            },
            "{result}"
        );
    }
    let legacy = results(&log)
        .iter()
        .find(|r| r["ruleId"] == "binding-error")
        .unwrap();
    assert_eq!(located(legacy).0, "examples/bindings/legacy.yaml");
    assert!(
        legacy["message"]["text"]
            .as_str()
            .unwrap()
            .contains("OrgPolicyConflict"),
        "{legacy}"
    );
    assert_eq!(
        log["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
}

#[test]
fn check_junit_has_a_test_case_per_target_and_failures_for_non_compliant_ones() {
    let expected = expected();
    let out = check_examples("junit");
    assert_eq!(out.status.code(), expected.exit, "{}", text(&out.stderr));
    let cases = junit_cases(&out);
    let mut want: Vec<(String, String, String)> = expected
        .targets
        .iter()
        .map(|(binding, name, state)| {
            let outcome = match state.as_str() {
                "Drifted" | "Conflicted" | "Failed" => {
                    format!("failure:{}", rule_of(state).unwrap())
                }
                "Superseded" => "skipped".to_owned(),
                _ => "passed".to_owned(),
            };
            (binding.clone(), name.clone(), outcome)
        })
        .collect();
    want.extend(expected.failed_bindings.iter().map(|b| {
        (
            b.clone(),
            format!("binding {b}"),
            "error:binding-error".to_owned(),
        )
    }));
    // Coverage notes pass: uncovered resources are not an error.
    want.extend(expected.uncovered_projects.iter().map(|p| {
        (
            "coverage".to_owned(),
            format!("project {p}"),
            "passed".to_owned(),
        )
    }));
    let mut got = cases;
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn check_github_annotates_each_finding_then_prints_the_table() {
    let expected = expected();
    let out = check_examples("github");
    assert_eq!(out.status.code(), expected.exit, "{}", text(&out.stderr));
    let commands = workflow_commands(&out);
    let errors = commands
        .iter()
        .filter(|c| c.starts_with("::error "))
        .count();
    let warnings = commands
        .iter()
        .filter(|c| c.starts_with("::warning "))
        .count();
    let count = |states: &[&str]| {
        expected
            .targets
            .iter()
            .filter(|t| states.contains(&t.2.as_str()))
            .count()
    };
    assert_eq!(
        errors,
        count(&["Drifted", "Conflicted", "Failed"]) + expected.failed_bindings.len()
    );
    assert_eq!(warnings, count(&["Breakglass"]));
    let notices = commands
        .iter()
        .filter(|c| c.starts_with("::notice "))
        .count();
    assert_eq!(
        notices,
        count(&["NotEffective"]) + expected.uncovered_projects.len()
    );
    assert_eq!(commands.len(), errors + warnings + notices);
    for command in &commands {
        let (properties, message) = command
            .strip_prefix("::error ")
            .or_else(|| command.strip_prefix("::warning "))
            .or_else(|| command.strip_prefix("::notice "))
            .and_then(|rest| rest.split_once("::"))
            .unwrap_or_else(|| panic!("{command}"));
        let file = properties
            .strip_prefix("file=")
            .and_then(|p| p.split_once(','))
            .map(|(file, _)| file)
            .unwrap_or_else(|| panic!("{command}"));
        assert!(file.starts_with("examples/bindings/"), "{command}");
        assert!(
            properties.contains(&format!(",line={},title=", policy_line(file))),
            "{command}"
        );
        // Property values carry no raw `:` or `,` (escaped), messages no raw newline.
        let title = properties.split_once(",title=").unwrap().1;
        assert!(!title.contains(':') && !title.contains(','), "{title}");
        assert!(!message.is_empty());
    }
    let drifted = expected.targets.iter().find(|t| t.2 == "Drifted").unwrap();
    assert!(
        commands.iter().any(|c| c.contains(&drifted.1)),
        "{commands:?}"
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("(exit 1)"), "the table follows: {stdout}");
}

#[test]
fn invalid_manifests_are_results_at_file_and_line_in_every_format_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("bindings")).unwrap();
    std::fs::write(
        dir.path().join("bindings/bad.yaml"),
        format!("{VALID_BINDING}---\n{INVALID_BINDING}"),
    )
    .unwrap();
    for command in ["check", "validate"] {
        // check: no endpoint and no credentials, so reaching Cloud Run would fail otherwise.
        let sarif = run_in(
            dir.path(),
            &[command, "-f", "bindings", "-o", "sarif"],
            None,
        );
        assert_eq!(
            sarif.status.code(),
            Some(1),
            "{command}: {}",
            text(&sarif.stderr)
        );
        assert!(
            text(&sarif.stderr).contains("bindings/bad.yaml:18 (document 2)"),
            "problems stay on stderr"
        );
        let log = valid_sarif(&sarif);
        let found: Vec<(String, Option<u64>)> = results(&log)
            .iter()
            .inspect(|r| assert_eq!(r["ruleId"], "invalid-manifest"))
            .map(located)
            .collect();
        assert_eq!(
            found,
            [
                ("bindings/bad.yaml".to_owned(), Some(15)),
                ("bindings/bad.yaml".to_owned(), Some(18))
            ],
            "{command}"
        );

        let github = run_in(
            dir.path(),
            &[command, "-f", "bindings", "-o", "github"],
            None,
        );
        assert_eq!(github.status.code(), Some(1));
        let commands = workflow_commands(&github);
        assert_eq!(commands.len(), 2, "{commands:?}");
        assert!(commands[1].starts_with("::error file=bindings/bad.yaml,line=18,title=Invalid BinAuthzBinding manifest (invalid-manifest)::bindings/bad.yaml:18 (document 2): binding default/disabled: spec.policy.useDefault"), "{}", commands[1]);

        let junit = run_in(
            dir.path(),
            &[command, "-f", "bindings", "-o", "junit"],
            None,
        );
        assert_eq!(junit.status.code(), Some(1));
        let errors = junit_cases(&junit)
            .into_iter()
            .filter(|c| c.2 == "error:invalid-manifest")
            .count();
        assert_eq!(errors, 2, "{command}");
    }
}

/// The shift-left fixtures: bindings, and the Cloud Run manifests of a team's repository.
fn shift_left_repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, content: &str| {
        let file = dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    };
    write(
        "bindings/prod.yaml",
        "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: prod-critical, namespace: platform}
spec:
  project: acme-prod
  locations: [us-central1]
  targets:
    services: {names: [checkout, 'payments-*']}
    jobs: {names: [report-export]}
  policy: {name: projects/acme-sec/platforms/cloudRun/policies/strict}
  priority: 10
---
apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: prod-baseline, namespace: platform}
spec:
  project: acme-prod
  locations: ['*']
  targets:
    services: {labelSelector: {matchLabels: {env: prod}}}
  policy: {useDefault: true}
",
    );
    // As `gcloud run services describe --format export` writes it, with the default
    // policy where the strict one is required (line 5).
    write(
        "run/checkout.yaml",
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  annotations:
    run.googleapis.com/binary-authorization: default
    run.googleapis.com/ingress: all
  labels:
    cloud.googleapis.com/location: us-central1
    env: prod
  name: checkout
  namespace: acme-prod
spec:
  template:
    spec:
      containers:
      - image: us-docker.pkg.dev/acme-prod/shop/checkout:1.14.2
",
    );
    // A job without the annotation: deploying it would clear Binary Authorization (the
    // line of `metadata:`, 3: there are no annotations).
    write(
        "run/export.yaml",
        "apiVersion: run.googleapis.com/v1
kind: Job
metadata:
  name: report-export
  namespace: acme-prod
  labels: {cloud.googleapis.com/location: us-central1}
spec:
  template:
    spec:
      template:
        spec:
          containers:
          - image: us-docker.pkg.dev/acme-prod/reports/export:3
",
    );
    // A compliant service covered by the baseline (label env=prod, any region).
    write(
        "run/cart.yaml",
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: cart
  namespace: acme-prod
  labels: {cloud.googleapis.com/location: europe-west1, env: prod}
  annotations: {run.googleapis.com/binary-authorization: default}
spec: {}
",
    );
    // A v2 resource in JSON with the right policy and a justification the binding allows.
    write(
        "run/payments.json",
        r#"{
  "name": "projects/acme-prod/locations/us-central1/services/payments-api",
  "binaryAuthorization": {
    "policy": "projects/acme-sec/platforms/cloudRun/policies/strict",
    "breakglassJustification": "INC-1234"
  },
  "template": {"containers": [{"image": "us-docker.pkg.dev/acme-prod/payments/api:3.2.0"}]}
}
"#,
    );
    // Exported from another project, by number: no binding names it (a warning).
    write(
        "run/other.yaml",
        "apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: checkout
  namespace: '123456789012'
  labels: {cloud.googleapis.com/location: us-central1}
spec: {}
",
    );
    // Some other kind beside them: skipped.
    write(
        "run/skaffold.yaml",
        "apiVersion: skaffold/v4beta6\nkind: Config\n",
    );
    dir
}

const SHIFT_LEFT_ARGS: [&str; 6] = [
    "validate",
    "-f",
    "bindings",
    "run",
    "run/payments.json",
    "--allow-no-bindings",
];

#[test]
fn validate_refuses_cloud_run_manifests_that_would_not_comply_at_their_line() {
    let dir = shift_left_repo();
    let out = run_in(dir.path(), &SHIFT_LEFT_ARGS, None);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{stderr}");
    assert_eq!(
        lines[0],
        "error: run/checkout.yaml:5 (document 1): Service us-central1/checkout (project acme-prod): sets Binary Authorization policy default, binding platform/prod-critical requires projects/acme-sec/platforms/cloudRun/policies/strict: set annotation run.googleapis.com/binary-authorization: projects/acme-sec/platforms/cloudRun/policies/strict (v2: binaryAuthorization.policy: projects/acme-sec/platforms/cloudRun/policies/strict)"
    );
    assert!(
        lines[1].starts_with("error: run/export.yaml:3 (document 1): Job us-central1/report-export (project acme-prod): carries no Binary Authorization setting, so deploying it would switch Binary Authorization off; binding platform/prod-critical requires"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("warning: run/other.yaml:3 (document 1): Service us-central1/checkout (project 123456789012): placed in project number 123456789012"),
        "{}",
        lines[2]
    );
    assert_eq!(
        lines[3],
        "error: 2 problem(s) in the Cloud Run manifests; fix them and run again"
    );

    // Fixed: exit 0, the summary counts what was checked.
    std::fs::write(
        dir.path().join("run/checkout.yaml"),
        std::fs::read_to_string(dir.path().join("run/checkout.yaml"))
            .unwrap()
            .replace(
                "binary-authorization: default",
                "binary-authorization: projects/acme-sec/platforms/cloudRun/policies/strict",
            ),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("run/export.yaml")).unwrap();
    let out = run_in(dir.path(), &SHIFT_LEFT_ARGS, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "valid: 2 bindings in 6 files; 4 Cloud Run manifests checked, 3 covered by a binding and comply (1 document of other kinds skipped)\n"
    );
    assert!(
        text(&out.stderr).starts_with("warning: run/other.yaml:3"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_places_unplaced_manifests_with_project_and_region_or_refuses_them() {
    let dir = shift_left_repo();
    let job = "apiVersion: run.googleapis.com/v1\nkind: Job\nmetadata:\n  name: report-export\n";
    let args = ["validate", "-f", "bindings", "-"];
    let out = run_in(dir.path(), &args, Some(job));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).lines().next(),
        Some("error: -:3 (document 1): Job report-export: does not say its project (metadata.namespace) or its region (label cloud.googleapis.com/location), so the bindings covering it are unknown; add them or pass --project and --region")
    );
    let out = run_in(
        dir.path(),
        &[
            &args[..],
            &["--project", "acme-prod", "--region", "us-central1"],
        ]
        .concat(),
        Some(job),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: -:3 (document 1): Job us-central1/report-export (project acme-prod): carries no Binary Authorization setting"),
        "{}",
        text(&out.stderr)
    );
    // Only Cloud Run manifests, no binding: nothing covers them; no error beyond the
    // missing bindings, which the hook's flag allows.
    let out = run_in(
        dir.path(),
        &["validate", "--allow-no-bindings", "-f", "-"],
        Some(job),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "valid: 0 bindings in 1 file; 1 Cloud Run manifest checked, 0 covered by a binding and comply\n"
    );
    // `check` ignores Cloud Run manifests: the same refusal of invalid input, nothing else.
    let out = run_in(dir.path(), &["check", "-f", "-"], Some(job));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no BinAuthzBinding found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn validate_ci_formats_carry_the_cloud_run_findings() {
    let dir = shift_left_repo();
    let with = |format: &str| {
        run_in(
            dir.path(),
            &[&SHIFT_LEFT_ARGS[..], &["-o", format]].concat(),
            None,
        )
    };

    let sarif = with("sarif");
    assert_eq!(sarif.status.code(), Some(1), "{}", text(&sarif.stderr));
    let log = valid_sarif(&sarif);
    let found: Vec<(String, String, Option<u64>, String)> = results(&log)
        .iter()
        .map(|r| {
            let (uri, line) = located(r);
            (
                r["ruleId"].as_str().unwrap().to_owned(),
                uri,
                line,
                r["level"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "cloud-run-manifest-noncompliant".to_owned(),
                "run/checkout.yaml".to_owned(),
                Some(5),
                "error".to_owned()
            ),
            (
                "cloud-run-manifest-clears-binary-authorization".to_owned(),
                "run/export.yaml".to_owned(),
                Some(3),
                "error".to_owned()
            ),
            (
                "cloud-run-manifest-project-number".to_owned(),
                "run/other.yaml".to_owned(),
                Some(3),
                "warning".to_owned()
            ),
        ]
    );

    let github = with("github");
    assert_eq!(github.status.code(), Some(1));
    let commands = workflow_commands(&github);
    assert_eq!(commands.len(), 3, "{commands:?}");
    assert!(commands[0].starts_with("::error file=run/checkout.yaml,line=5,title=Cloud Run manifest would not comply with its binding (cloud-run-manifest-noncompliant)::run/checkout.yaml:5 (document 1): Service us-central1/checkout"), "{}", commands[0]);
    assert!(
        commands[2].starts_with("::warning file=run/other.yaml,line=3,"),
        "{}",
        commands[2]
    );
    assert!(
        text(&github.stdout).lines().all(|l| l.starts_with("::")),
        "no summary on failure"
    );

    let junit = with("junit");
    assert_eq!(junit.status.code(), Some(1));
    let cases = junit_cases(&junit);
    let cloud_run: Vec<(&str, &str)> = cases
        .iter()
        .filter(|c| c.0 == "cloud run manifests")
        .map(|c| (c.1.as_str(), c.2.as_str()))
        .collect();
    assert_eq!(
        cloud_run,
        [
            ("Service europe-west1/cart (project acme-prod)", "passed"),
            (
                "Service us-central1/checkout (project acme-prod)",
                "failure:cloud-run-manifest-noncompliant"
            ),
            (
                "Job us-central1/report-export (project acme-prod)",
                "failure:cloud-run-manifest-clears-binary-authorization"
            ),
            (
                "Service us-central1/checkout (project 123456789012)",
                "passed"
            ),
            (
                "Service us-central1/payments-api (project acme-prod)",
                "passed"
            ),
        ]
    );
    assert_eq!(
        cases
            .iter()
            .filter(|c| c.0 == "binding manifests" && c.2 == "passed")
            .count(),
        2
    );
}

/// `${{ ... }}` expressions of a composite action step, evaluated for a test: inputs (the
/// given ones, else their defaults), `github.action_path` and earlier steps' outputs.
fn evaluate(
    template: &str,
    inputs: &BTreeMap<String, String>,
    outputs: &BTreeMap<String, String>,
) -> String {
    let expression = regex::Regex::new(r"\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}").unwrap();
    expression
        .replace_all(template, |c: &regex::Captures<'_>| {
            let path = &c[1];
            if let Some(input) = path.strip_prefix("inputs.") {
                inputs
                    .get(input)
                    .cloned()
                    .unwrap_or_else(|| panic!("unknown input {input}"))
            } else if path == "github.action_path" {
                repo().display().to_string()
            } else if let Some(output) = path.strip_prefix("steps.") {
                // As on GitHub, an output a step did not set is empty.
                outputs.get(output).cloned().unwrap_or_default()
            } else {
                panic!("unexpected expression {path}")
            }
        })
        .into_owned()
}

/// Runs action.yml's steps with bash as the runner would, with `given` inputs; returns the
/// last step's exit code, its stdout and the action's outputs.
fn run_action(
    action: &Value,
    given: &[(&str, &str)],
    workdir: &Path,
) -> (Option<i32>, String, BTreeMap<String, String>) {
    let mut inputs: BTreeMap<String, String> = action["inputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v["default"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for (k, v) in given {
        assert!(inputs.contains_key(*k), "action.yml has no input {k}");
        inputs.insert((*k).to_owned(), (*v).to_owned());
    }
    let temp = tempfile::tempdir().unwrap();
    let mut outputs = BTreeMap::new();
    let mut last = (None, String::new());
    for step in action["runs"]["steps"].as_array().unwrap() {
        assert_eq!(step["shell"], "bash");
        let id = step["id"].as_str().unwrap();
        let github_output = temp.path().join(format!("{id}.out"));
        std::fs::write(&github_output, "").unwrap();
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(evaluate(step["run"].as_str().unwrap(), &inputs, &outputs))
            .current_dir(workdir)
            .env("GITHUB_OUTPUT", &github_output)
            .env("RUNNER_TEMP", temp.path())
            .env("NO_COLOR", "1")
            .env_remove("CLOUD_RUN_EMULATOR_HOST");
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            command.env(k, evaluate(v.as_str().unwrap(), &inputs, &outputs));
        }
        let out = command.output().unwrap();
        for line in std::fs::read_to_string(&github_output).unwrap().lines() {
            let (k, v) = line.split_once('=').expect("name=value");
            outputs.insert(format!("{id}.outputs.{k}"), v.to_owned());
        }
        last = (out.status.code(), text(&out.stdout));
        if !out.status.success() {
            break;
        }
    }
    let action_outputs = action["outputs"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                evaluate(v["value"].as_str().unwrap(), &inputs, &outputs),
            )
        })
        .collect();
    (last.0, last.1, action_outputs)
}

fn action() -> Value {
    serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("action.yml")).expect("action.yml"),
    )
    .expect("action.yml is YAML")
}

#[test]
fn the_action_inputs_are_the_readmes_and_its_command_and_flags_exist() {
    let action = action();
    assert_eq!(action["runs"]["using"], "composite");
    let inputs: Vec<String> = action["inputs"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let section: String = readme
        .lines()
        .skip_while(|l| *l != "### GitHub Actions")
        .skip(1)
        .take_while(|l| !l.starts_with("#"))
        .collect::<Vec<_>>()
        .join("\n");
    let documented: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect();
    let mut sorted = inputs.clone();
    sorted.sort();
    let mut documented_sorted = documented.clone();
    documented_sorted.sort();
    assert_eq!(
        sorted, documented_sorted,
        "README \"GitHub Actions\" documents exactly action.yml's inputs"
    );
    for (name, input) in action["inputs"].as_object().unwrap() {
        assert!(
            !input["description"].as_str().unwrap_or_default().is_empty(),
            "{name}"
        );
    }

    // The commands and flags the run step calls exist in the binary's --help, and every
    // output format the README lists for the input is accepted by one of the commands.
    let help = |args: &[&str]| text(&run_in(&repo(), &[args, &["--help"]].concat(), None).stdout);
    let top = help(&[]);
    let run_step = action["runs"]["steps"][1]["run"].as_str().unwrap();
    assert!(run_step.contains("check | validate)"), "{run_step}");
    for command in ["check", "validate"] {
        assert!(
            top.lines().any(|l| l.trim_start().starts_with(command)),
            "{command} in --help:\n{top}"
        );
        let flags = help(&[command]);
        for flag in ["--output", "--filename"] {
            assert!(
                run_step.contains(flag) && flags.contains(flag),
                "{command} {flag}"
            );
        }
    }
    assert!(run_step.contains("--fix") && help(&["check"]).contains("--fix"));
    let formats = section
        .lines()
        .find(|l| l.starts_with("| `output`"))
        .unwrap();
    let check_help = help(&["check"]);
    let validate_help = help(&["validate"]);
    for format in ["github", "sarif", "junit", "text", "table", "json", "yaml"] {
        assert!(formats.contains(&format!("`{format}`")), "{formats}");
        assert!(
            check_help.contains(&format!("{format}:"))
                || validate_help.contains(&format!("{format}:")),
            "{format} is a value of some --output"
        );
    }
}

#[test]
fn the_action_runs_validate_and_check_with_the_given_binary() {
    let action = action();
    let dir = shift_left_repo();
    // github annotations in the log, the command's exit code as the step's and the output.
    let (code, stdout, outputs) = run_action(
        &action,
        &[
            ("binary", BIN),
            ("files", "bindings\nrun run/payments.json"),
            ("args", "--allow-no-bindings"),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1), "{stdout}");
    assert_eq!(outputs["exit-code"], "1");
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.starts_with("::error file=run/"))
            .count(),
        2,
        "{stdout}"
    );

    // SARIF to a file, for upload-sarif.
    let (code, _, _) = run_action(
        &action,
        &[
            ("binary", BIN),
            ("files", "bindings run run/payments.json"),
            ("output", "sarif"),
            ("output-file", "binauthz.sarif"),
        ],
        dir.path(),
    );
    assert_eq!(code, Some(1));
    let sarif = Output {
        status: std::process::ExitStatus::default(),
        stdout: std::fs::read(dir.path().join("binauthz.sarif")).unwrap(),
        stderr: Vec::new(),
    };
    assert_eq!(results(&valid_sarif(&sarif)).len(), 3);

    // check with fix against the embedded emulator, from the repository.
    let (code, stdout, outputs) = run_action(
        &action,
        &[
            ("binary", BIN),
            ("command", "check"),
            ("files", "examples/bindings/prod-critical.yaml"),
            ("fix", "true"),
            ("output", "junit"),
            ("args", "--emulator examples/cloudrun-seed.yaml"),
        ],
        &repo(),
    );
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(outputs["exit-code"], "0");
    assert!(junit_cases(&Output {
        status: std::process::ExitStatus::default(),
        stdout: stdout.into_bytes(),
        stderr: Vec::new()
    })
    .iter()
    .all(|c| c.2 == "passed" || c.2 == "skipped"));

    // A release download (here a file:// URL): {version} and {target} filled in, the
    // checksum verified.
    let target = match (std::env::consts::ARCH, std::env::consts::OS) {
        (arch, "linux") => format!("{arch}-unknown-linux-gnu"),
        (arch, "macos") => format!("{arch}-apple-darwin"),
        other => panic!("no release target for {other:?}"),
    };
    let releases = tempfile::tempdir().unwrap();
    let asset = releases
        .path()
        .join(format!("binauthz-operator-0.1.0-{target}"));
    std::fs::copy(BIN, &asset).unwrap();
    let sha256 = text(
        &Command::new("sha256sum")
            .arg(&asset)
            .output()
            .unwrap()
            .stdout,
    );
    let sha256 = sha256.split_whitespace().next().unwrap().to_owned();
    let url = format!(
        "file://{}/binauthz-operator-{{version}}-{{target}}",
        releases.path().display()
    );
    let download = |sum: &str| {
        run_action(
            &action,
            &[
                ("download-url", url.as_str()),
                ("version", "0.1.0"),
                ("sha256", sum),
                ("files", "bindings"),
            ],
            dir.path(),
        )
    };
    let (code, stdout, outputs) = download(&sha256);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(outputs["exit-code"], "0");
    assert!(
        stdout.starts_with("valid: 2 bindings in 1 file"),
        "{stdout}"
    );
    let (code, _, outputs) = download(&"0".repeat(64));
    assert_eq!(code, Some(1), "a wrong checksum stops the install");
    assert_eq!(outputs["exit-code"], "");

    // Refusals are one annotation and exit 1.
    for given in [
        [("command", "apply"), ("fix", "false")],
        [("command", "validate"), ("fix", "true")],
    ] {
        let mut with = vec![("binary", BIN), ("files", "bindings")];
        with.extend(given);
        let (code, stdout, outputs) = run_action(&action, &with, dir.path());
        assert_eq!(code, Some(1));
        assert_eq!(outputs["exit-code"], "1");
        assert!(
            stdout.starts_with("::error title=binauthz-operator::"),
            "{stdout}"
        );
    }
}
