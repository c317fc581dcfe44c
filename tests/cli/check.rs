//! `binauthz-operator check`, run as a subprocess against the emulator (also a subprocess,
//! or embedded with `--emulator`), the way a CI job or a person runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::process::{self, text, Emulator, BINARY as BIN};
use crate::support::repo;
use crate::{INVALID_BINDING, VALID_BINDING};

const SEED: &str = "examples/cloudrun-seed.yaml";

fn seed() -> PathBuf {
    repo().join(SEED)
}

/// The example bindings that can all be made compliant: examples/bindings/ without
/// legacy.yaml, which the organization policy forbids on purpose (`make demo` shows it).
fn bindings() -> PathBuf {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let examples = repo().join("examples/bindings");
        for entry in std::fs::read_dir(&examples).expect("examples/bindings") {
            let file = entry.expect("entry").path();
            if file.file_name().and_then(|n| n.to_str()) != Some("legacy.yaml") {
                let name = file.file_name().expect("file name");
                std::fs::copy(&file, dir.path().join(name)).expect("copying a binding");
            }
        }
        dir
    })
    .path()
    .to_path_buf()
}

/// The API calls the emulator has served (admin calls excluded).
fn api_calls(emulator: &Emulator) -> u64 {
    let counters = emulator.admin_blocking("counters");
    counters["calls"]
        .as_array()
        .expect("calls")
        .iter()
        .map(|c| c["count"].as_u64().unwrap_or(0))
        .sum()
}

fn check(args: &[&str]) -> Output {
    check_with_stdin(args, None)
}

fn check_with_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    run_with_stdin("check", args, stdin)
}

/// `binauthz-operator COMMAND ARGS...` (see [`process::run`]).
fn run_with_stdin(command: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let all: Vec<&str> = std::iter::once(command)
        .chain(args.iter().copied())
        .collect();
    process::run(None, &all, stdin)
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn json_report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", text(&out.stdout)))
}

#[test]
fn drift_is_reported_with_exit_2_and_every_drifted_resource_listed() {
    let out = check(&["-f", path(&bindings()), "--emulator", path(&seed())]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    for name in [
        "inventory",
        "search-frontend",
        "db-migrate",
        "email-sender",
        "fraud-scorer",
        "order-events",
        "api-gateway",
        "seed-data",
        "queue-worker",
        "warehouse-api",
        "etl-nightly",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(name) && l.contains("Drifted")),
            "{name} should be listed as Drifted:\n{stdout}"
        );
    }
    assert!(stdout.contains("drift remains (exit 2)"), "{stdout}");
}

#[test]
fn fix_then_recheck_is_clean_and_only_binary_authorization_changed() {
    let emulator = Emulator::start(SEED);
    let endpoint = ["--cloud-run-endpoint", emulator.url()];
    let before = emulator.admin_blocking("state");

    let out = check(&[&["-f", path(&bindings()), "--fix"][..], &endpoint[..]].concat());
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("== Drift found"), "{stdout}");
    assert!(stdout.contains("== Fixed"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert_eq!(count(last, "remediated"), 13, "{stdout}");

    // A second run, a new process: nothing left to do.
    let again = check(&[&["-f", path(&bindings()), "-o", "json"][..], &endpoint[..]].concat());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    let report = json_report(&again);
    assert_eq!(report["verdict"], "Compliant");
    assert_eq!(report["summary"]["drifted"], 0);

    // Every change the emulator recorded touched binaryAuthorization only.
    let changes = emulator.admin_blocking("audit");
    let changes = changes["changes"].as_array().expect("changes list");
    assert_eq!(changes.len(), 13, "{changes:?}");
    for change in changes {
        let fields: Vec<&str> = change["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(
            fields.iter().all(|f| f.starts_with("binaryAuthorization")),
            "a fix changed more than binaryAuthorization: {change}"
        );
    }
    let after = emulator.admin_blocking("state");
    assert_ne!(before, after);
}

/// The number before `what` in a summary line (`... 19 compliant, 10 remediated, ...`).
fn count(line: &str, what: &str) -> u64 {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.trim_end_matches(',') == what)
        .unwrap_or_else(|| panic!("no count of {what:?} in {line:?}"));
    at.checked_sub(1)
        .and_then(|i| words[i].parse().ok())
        .unwrap_or_else(|| panic!("no number before {what:?} in {line:?}"))
}

#[test]
fn make_demo_summary_counts_the_fixes_as_remediated_and_says_it_once() {
    // `make demo`, word for word.
    let out = check(&[
        "-f",
        path(&repo().join("examples")),
        "--fix",
        "--emulator",
        path(&seed()),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        // platform/legacy asks for what its project's organization policy forbids.
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let section = |heading: &str| -> Vec<&str> {
        stdout
            .lines()
            .skip_while(|l| *l != heading)
            .skip(1)
            .take_while(|l| !l.starts_with("== "))
            .filter(|l| !l.trim().is_empty())
            .collect()
    };
    let applied = section("== Fixed")
        .iter()
        .filter(|l| l.ends_with(": applied"))
        .count();
    assert_eq!(applied, 13, "{stdout}");

    // Before the fixes nothing is remediated yet; afterwards every applied fix is, and
    // no other phrase counts the fixes a second time.
    let before = section("== Drift found");
    let before = before.last().copied().unwrap_or_default();
    assert_eq!(count(before, "remediated"), 0, "{stdout}");
    assert_eq!(count(before, "drifted"), 13, "{stdout}");
    assert_eq!(count(before, "failed"), 1, "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(last.contains("errors (exit 1)"), "{stdout}");
    assert_eq!(count(last, "remediated"), 13, "{last}");
    assert_eq!(count(last, "failed"), 1, "{last}");
    // What the demo shows of the real service: Google's managed policy (never read), a
    // policy the operator may not read (fixed anyway), the organization policy.
    for line in [
        "platform/legacy  project acme-legacy  Enforce  policy default  Ready=False (OrgPolicyConflict)",
        "policy GoogleManaged: Google's managed policy",
        "policy Unverifiable: cannot read policy projects/acme-shared/platforms/cloudRun/policies/baseline",
        "org policy constraints/run.allowedBinaryAuthorizationPolicies: not set in project acme-prod (the preventive control is off)",
        "org policy constraints/run.allowedBinaryAuthorizationPolicies: enforced in project acme-data, allows projects/bcid-cloud-run-policy/platforms/cloudRun/policies/bcidManagedPolicy",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert_eq!(count(last, "drifted"), 0, "{last}");
    assert!(
        !last.contains("fixed"),
        "one word for the fixes, `remediated`: {last}"
    );
}

/// `locations: ["*"]` covers the catalogue of Cloud Run regions, as Google answers it:
/// a full re-check costs one list per region and selected kind (empty regions answer 200
/// `{}` and never fail the check) plus one regions list per project.
#[test]
fn a_star_binding_lists_each_region_of_the_catalogue_once() {
    let emulator = Emulator::start(SEED);
    let out = check(&[
        "-f",
        path(&repo().join("examples/bindings/prod-baseline.yaml")),
        "--cloud-run-endpoint",
        emulator.url(),
        "--fix",
        "-o",
        "json",
    ]);
    let report = json_report(&out);
    assert_eq!(report["verdict"], "Compliant", "{report}");
    assert!(
        report["bindings"][0].get("unreadLocations").is_none(),
        "{report}"
    );
    let counters = emulator.admin_blocking("counters");
    let calls = |method: &str| -> u64 {
        counters["calls"]
            .as_array()
            .expect("calls")
            .iter()
            .filter(|c| c["method"] == method)
            .map(|c| c["count"].as_u64().unwrap_or(0))
            .sum()
    };
    let regions = calls("locations.list");
    assert_eq!(regions, 1, "{counters}");
    // Two passes (before and after --fix), 3 kinds, every region of the catalogue.
    let lists = calls("services.list") + calls("jobs.list") + calls("workerPools.list");
    let catalogue = lists / (2 * 3);
    assert!(catalogue >= 40, "{lists} lists: {counters}");
    assert_eq!(lists, catalogue * 2 * 3, "{counters}");
    for method in ["services.list", "jobs.list", "workerPools.list"] {
        assert_eq!(calls(method), 2 * catalogue, "{method}: {counters}");
    }
}

#[test]
fn the_json_report_counts_the_fixes_as_remediated_like_the_table() {
    let out = check(&[
        "-f",
        path(&repo().join("examples")),
        "--fix",
        "--emulator",
        path(&seed()),
        "-o",
        "json",
    ]);
    let report = json_report(&out);
    let applied = report["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["result"] == "Applied")
        .count();
    assert!(applied > 0, "{report}");
    let remediated_targets = report["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .flat_map(|b| b["targets"].as_array().cloned().unwrap_or_default())
        .filter(|t| t["state"] == "Remediated")
        .count();
    // Each fixed resource is matched by exactly one binding in the examples.
    assert_eq!(report["summary"]["remediated"], applied, "{report}");
    assert_eq!(remediated_targets, applied, "{report}");
    assert_eq!(report["before"]["summary"]["remediated"], 0, "{report}");
}

#[test]
fn a_reader_that_stops_reading_ends_the_report_quietly_with_the_verdicts_exit_code() {
    // `check ... | head`: the pipe's reader is gone before the report is written.
    for format in ["table", "json", "junit", "sarif"] {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        drop(reader);
        let out = Command::new(BIN)
            .args([
                "check",
                "-f",
                path(&bindings()),
                "--emulator",
                path(&seed()),
            ])
            .args(["-o", format])
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .expect("check runs");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{format}: {stderr}");
        assert!(!stderr.contains("cannot write"), "{format}: {stderr}");
    }
}

#[test]
fn a_suspended_binding_is_reported_with_its_reason_and_message() {
    // Its status has no Ready condition (Flux reads it as settled): the report still says
    // why nothing was checked.
    let suspended = repo().join("tests/fixtures/bindings/valid/suspended.yaml");
    let out = check(&[
        "-f",
        path(&suspended),
        "--emulator",
        path(&seed()),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = json_report(&out);
    let binding = &report["bindings"][0];
    assert_eq!(binding["reason"], "Suspended");
    assert_eq!(
        binding["message"],
        "spec.suspend is true: the operator makes no Cloud Run calls for this binding"
    );
}

#[test]
fn json_report_has_the_documented_shape() {
    let out = check(&[
        "-f",
        path(&bindings()),
        "--emulator",
        path(&seed()),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let report = json_report(&out);
    assert_eq!(report["apiVersion"], "binauthz.dev/check-report/v1");
    assert_eq!(report["fix"], false);
    assert_eq!(report["verdict"], "DriftRemains");
    assert_eq!(report["exitCode"], 2);
    let listed = report["bindings"].as_array().expect("bindings");
    let names: Vec<&str> = listed.iter().filter_map(|b| b["name"].as_str()).collect();
    assert_eq!(
        names,
        ["data-bcid", "prod-baseline", "prod-critical", "staging"]
    );
    let critical = &listed[2];
    assert_eq!(critical["namespace"], "platform");
    assert_eq!(critical["project"], "acme-prod");
    assert_eq!(critical["mode"], "Enforce");
    assert_eq!(
        critical["policy"],
        "projects/acme-sec/platforms/cloudRun/policies/strict"
    );
    assert_eq!(critical["ready"], "False");
    assert_eq!(critical["reason"], "Drifted");
    assert_eq!(critical["summary"]["matched"], 6);
    assert_eq!(critical["summary"]["drifted"], 2);
    let fraud = critical["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == "fraud-scorer")
        .expect("fraud-scorer listed");
    assert_eq!(fraud["kind"], "WorkerPool");
    assert_eq!(fraud["location"], "europe-west1");
    assert_eq!(fraud["state"], "Drifted");
    assert_eq!(fraud["observed"], "none");
    let baseline = &listed[1];
    let blocked = baseline["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == "recommendations")
        .expect("recommendations listed");
    assert_eq!(blocked["deployBlocked"], true);
    assert!(blocked["message"]
        .as_str()
        .is_some_and(|m| m.contains("is not authorized by policy")));
    assert_eq!(report["summary"]["deployBlocked"], 1);
    assert_eq!(report["summary"]["breakglass"], 1);

    let yaml = check(&[
        "-f",
        path(&bindings()),
        "--emulator",
        path(&seed()),
        "-o",
        "yaml",
    ]);
    assert_eq!(yaml.status.code(), Some(2));
    let from_yaml: Value = serde_yaml_ng::from_slice(&yaml.stdout).expect("YAML report");
    assert_eq!(
        from_yaml["bindings"], report["bindings"],
        "YAML and JSON say the same"
    );
}

#[test]
fn compliant_estate_exits_0() {
    let binding = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: payments, namespace: platform}
spec:
  project: acme-prod
  locations: [us-central1]
  targets:
    services: {names: [checkout, payments-api]}
  policy: {name: projects/acme-sec/platforms/cloudRun/policies/strict}
";
    let out = check_with_stdin(&["-f", "-", "--emulator", path(&seed())], Some(binding));
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("Ready=True (Compliant): 2/2 targets comply"),
        "{stdout}"
    );
    assert!(stdout.contains("all targets comply (exit 0)"), "{stdout}");
}

#[test]
fn audit_bindings_are_reported_not_fixed() {
    let binding = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: staging-audit}
spec:
  project: acme-staging
  locations: [us-central1]
  targets: {services: {names: ['*']}}
  policy: {useDefault: true}
  mode: Audit
";
    let emulator = Emulator::start(SEED);
    let out = check_with_stdin(
        &["-f", "-", "--fix", "--cloud-run-endpoint", emulator.url()],
        Some(binding),
    );
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("Audit mode"), "{stdout}");
    let counters = emulator.admin_blocking("counters");
    assert_eq!(counters["writes"], 0, "Audit must never write: {counters}");
}

#[test]
fn invalid_manifests_exit_1_naming_file_and_field_without_calling_cloud_run() {
    let emulator = Emulator::start(SEED);
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, format!("{VALID_BINDING}---\n{INVALID_BINDING}")).expect("write");
    let out = check(&["-f", path(&bad), "--cloud-run-endpoint", emulator.url()]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty());
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.iter().any(|l| l.contains("bad.yaml:15 (document 2)")
            && l.contains("spec.locations")
            && l.contains("'*' (every region) must be the only entry")),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.contains("bad.yaml:18 (document 2)")
            && l.contains("binding default/disabled")
            && l.contains("spec.policy.useDefault")),
        "{stderr}"
    );
    assert!(stderr.contains("no Cloud Run call was made"), "{stderr}");
    assert_eq!(
        api_calls(&emulator),
        0,
        "check called Cloud Run despite invalid input"
    );
}

/// The invalid binding samples of tests/fixtures/bindings/invalid, in name order.
fn invalid_corpus() -> Vec<PathBuf> {
    let dir = repo().join("tests/fixtures/bindings/invalid");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("corpus")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(files.len() >= 30);
    files
}

#[test]
fn every_invalid_corpus_sample_is_refused_by_check() {
    for file in invalid_corpus() {
        let expect: Vec<String> = std::fs::read_to_string(&file)
            .expect("read")
            .lines()
            .filter_map(|l| l.strip_prefix("# expect: ").map(str::to_owned))
            .collect();
        // No endpoint and no credentials: reaching Cloud Run would fail differently.
        let out = check(&["-f", path(&file)]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", file.display());
        let name = file.file_name().and_then(|n| n.to_str()).expect("name");
        assert!(stderr.contains(name), "{name}: {stderr}");
        for fragment in &expect {
            assert!(
                stderr.contains(fragment.as_str()),
                "{name}: {stderr} lacks {fragment}"
            );
        }
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

#[test]
fn a_project_refused_everywhere_exits_1_with_the_reason() {
    let emulator = Emulator::start_with(SEED, &["--forbid", "acme-staging"]);
    let out = check(&[
        "-f",
        path(&bindings()),
        "--cloud-run-endpoint",
        emulator.url(),
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json_report(&out);
    let staging = report["bindings"]
        .as_array()
        .expect("bindings")
        .iter()
        .find(|b| b["name"] == "staging")
        .expect("staging");
    // Google answers 403 for a missing project and for one the operator cannot see.
    assert_eq!(staging["reason"], "ProjectNotFoundOrForbidden");
    assert_eq!(staging["ready"], "False");
    let message = staging["message"].as_str().expect("message");
    assert!(message.contains("check spec.project"), "{message}");
    assert_eq!(report["verdict"], "Error");
}

#[test]
fn no_bindings_and_unreadable_paths_are_errors() {
    let out = check(&["-f", "/nonexistent/bindings"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("/nonexistent/bindings") && stderr.contains("cannot read"),
        "{stderr}"
    );

    let empty = tempfile::tempdir().expect("tempdir");
    let out = check(&["-f", path(empty.path())]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no BinAuthzBinding found"));
}

#[test]
fn missing_credentials_are_one_clear_line() {
    let out = Command::new(BIN)
        .args(["check", "-f"])
        .arg(bindings())
        .env_remove("CLOUD_RUN_EMULATOR_HOST")
        .env("GOOGLE_APPLICATION_CREDENTIALS", "/nonexistent/key.json")
        .env("HOME", "/nonexistent")
        .output()
        .expect("run");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

/// `binauthz-operator validate ARGS...` with `stdin`, no Cloud Run endpoint and no
/// credentials (reaching Google would fail differently).
fn validate(args: &[&str], stdin: &str) -> Output {
    run_with_stdin("validate", args, Some(stdin))
}

#[test]
fn validate_accepts_valid_bindings_with_one_summary_line_and_no_credentials() {
    let out = validate(&["-f", path(&bindings())], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let files = std::fs::read_dir(bindings()).expect("bindings").count();
    assert_eq!(
        text(&out.stdout),
        format!("valid: {files} bindings in {files} files\n")
    );

    // stdin, and other kinds skipped.
    let stream =
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{VALID_BINDING}");
    let out = validate(&["-f", "-"], &stream);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "valid: 1 binding in 1 file (1 document of other kinds skipped)\n"
    );
}

#[test]
fn validate_reports_every_problem_and_duplicates_across_files_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, format!("{VALID_BINDING}---\n{INVALID_BINDING}")).expect("write");
    std::fs::write(&b, VALID_BINDING).expect("write");
    let out = validate(&["-f", path(&a), path(&b), "-"], INVALID_BINDING);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    let lines: Vec<&str> = stderr.lines().collect();
    let expected = [
        format!("error: {}:15 (document 2): binding default/disabled: spec.locations", path(&a)),
        format!("error: {}:18 (document 2): binding default/disabled: spec.policy.useDefault", path(&a)),
        "error: -:6 (document 1): binding default/disabled: spec.locations".to_owned(),
        "error: -:9 (document 1): binding default/disabled: spec.policy.useDefault".to_owned(),
        format!(
            "error: {}:1 (document 1): binding platform/ok: declared twice (first at {}:1 (document 1))",
            path(&b),
            path(&a)
        ),
        format!(
            "error: -:1 (document 1): binding default/disabled: declared twice (first at {}:10 (document 2))",
            path(&a)
        ),
        "error: 6 problem(s) in the binding manifests; fix them and run again".to_owned(),
    ];
    assert_eq!(lines.len(), expected.len(), "{stderr}");
    for (line, start) in lines.iter().zip(&expected) {
        assert!(
            line.starts_with(start.as_str()),
            "{line}\nexpected {start}..."
        );
    }

    // No binding at all: an error, unless allowed (as the pre-commit hook does).
    let empty = tempfile::tempdir().expect("tempdir");
    let out = validate(&["-f", path(empty.path())], "");
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no BinAuthzBinding found"));
    let out = validate(&["--allow-no-bindings", "-f", path(empty.path())], "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "valid: 0 bindings in 0 files\n");
}

#[test]
fn validate_refuses_every_invalid_corpus_sample_with_checks_exact_lines() {
    // Every problem line but the closing one, which names the command's own next step.
    let problems = |out: &Output| -> Vec<String> {
        let stderr = text(&out.stderr);
        let mut lines: Vec<String> = stderr.lines().map(str::to_owned).collect();
        let last = lines.pop().unwrap_or_default();
        assert!(
            last.contains("problem(s) in the binding manifests"),
            "{stderr}"
        );
        lines
    };
    for file in invalid_corpus() {
        let name = path(&file);
        let validated = validate(&["-f", name], "");
        assert_eq!(validated.status.code(), Some(1), "{name}");
        let lines = problems(&validated);
        assert!(
            !lines.is_empty() && lines.iter().all(|l| l.starts_with("error: ")),
            "{lines:?}"
        );
        assert_eq!(lines, problems(&check(&["-f", name])), "{name}");
    }
}

/// The repo's `.pre-commit-hooks.yaml`, run by pre-commit itself (`try-repo`, installed
/// through scripts/tools.sh) in a throwaway git repository, with this binary on PATH.
#[test]
fn the_pre_commit_hook_validates_the_staged_binding_files() {
    let tools = Command::new("bash")
        .arg(repo().join("scripts/tools.sh"))
        .arg("--with-pre-commit")
        .output()
        .expect("run scripts/tools.sh");
    assert!(
        tools.status.success(),
        "scripts/tools.sh: {}",
        text(&tools.stderr)
    );
    let pre_commit = PathBuf::from(text(&tools.stdout).trim()).join("pre-commit");

    let work = tempfile::tempdir().expect("tempdir");
    let git = work.path().join("gitops");
    std::fs::create_dir(&git).expect("mkdir");
    std::fs::write(git.join("good.yaml"), VALID_BINDING).expect("write");
    std::fs::write(git.join("bad.yaml"), INVALID_BINDING).expect("write");
    std::fs::write(git.join("copy.yml"), VALID_BINDING).expect("write");
    std::fs::write(
        git.join("configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .expect("write");
    std::fs::write(git.join("notes.txt"), "kind: [not yaml").expect("write");
    let bin_dir = Path::new(BIN).parent().expect("binary directory");
    let path_var = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let run = |program: &Path, args: &[&str]| -> Output {
        Command::new(program)
            .args(args)
            .current_dir(&git)
            .env("PATH", &path_var)
            .env("PRE_COMMIT_HOME", work.path().join("pre-commit-home"))
            .env("NO_COLOR", "1")
            .env_remove("BINAUTHZ_VALIDATE_FILENAME")
            .env_remove("BINAUTHZ_VALIDATE_ALLOW_NO_BINDINGS")
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", program.display()))
    };
    let git_bin = Path::new("git");
    for args in [&["init", "-q", "."][..], &["add", "."]] {
        let out = run(git_bin, args);
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
    }
    let hook_repo = repo();
    let hook = |files: &[&str]| -> (Option<i32>, String) {
        let mut args = vec![
            "try-repo",
            path(&hook_repo),
            "binauthz-validate",
            "--verbose",
            "--files",
        ];
        args.extend_from_slice(files);
        let out = run(&pre_commit, &args);
        (
            out.status.code(),
            format!("{}{}", text(&out.stdout), text(&out.stderr)),
        )
    };

    let (code, output) = hook(&["good.yaml", "configmap.yaml"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(
        output.contains("valid: 1 binding in 2 files (1 document of other kinds skipped)"),
        "{output}"
    );

    // A YAML file without bindings passes; a non-YAML file is not handed to the hook.
    let (code, output) = hook(&["configmap.yaml"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("valid: 0 bindings in 1 file"), "{output}");
    let (code, output) = hook(&["notes.txt"]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("no files to check"), "{output}");

    let (code, output) = hook(&["good.yaml", "bad.yaml", "copy.yml"]);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(
            "error: bad.yaml:9 (document 1): binding default/disabled: spec.policy.useDefault"
        ),
        "{output}"
    );
    assert!(output.contains("error: copy.yml:1 (document 1): binding platform/ok: declared twice (first at good.yaml:1 (document 1))"), "{output}");
}

/// A binding requiring the strict policy on two services the seed leaves without it.
const EXCEPTED_BINDING: &str = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: strict, namespace: platform}
spec:
  project: acme-prod
  locations: [us-central1]
  targets: {services: {names: [search-frontend, inventory]}}
  policy: {name: projects/acme-sec/platforms/cloudRun/policies/strict}
";

/// An exception of namespace `namespace` for search-frontend expiring at `expires_at`.
fn exception_manifest(namespace: &str, expires_at: &str) -> String {
    format!(
        "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzException
metadata: {{name: hotfix, namespace: {namespace}}}
spec:
  project: acme-prod
  location: us-central1
  kind: Service
  names: [search-frontend]
  reason: 'INC-4711: vendor image awaiting attestation'
  expiresAt: '{expires_at}'
"
    )
}

/// `now + days` as RFC 3339.
fn in_days(days: i64) -> String {
    let now = jiff::Timestamp::now().as_second();
    jiff::Timestamp::from_second(now + days * 86_400)
        .expect("a valid time")
        .to_string()
}

/// `check -f` over the binding and `exception` (one multi-document stdin), `--fix`, JSON.
fn check_with_exception(exception: &str, emulator: &Emulator) -> Output {
    let input = format!("{EXCEPTED_BINDING}---\n{exception}");
    check_with_stdin(
        &[
            "-f",
            "-",
            "--fix",
            "-o",
            "json",
            "--cloud-run-endpoint",
            emulator.url(),
        ],
        Some(&input),
    )
}

fn target_state(report: &Value, name: &str) -> String {
    report["bindings"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn check_honours_an_exception_in_the_files_and_fixes_only_the_rest() {
    let emulator = Emulator::start(SEED);
    let out = check_with_exception(&exception_manifest("platform", &in_days(3)), &emulator);
    let report = json_report(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{report:#}\n{}",
        text(&out.stderr)
    );
    assert_eq!(target_state(&report, "search-frontend"), "Excepted");
    assert_eq!(target_state(&report, "inventory"), "Remediated");
    assert_eq!(
        report["bindings"][0]["summary"]["excepted"], 1,
        "{report:#}"
    );
    let written: Vec<String> = emulator.admin_blocking("audit")["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["resource"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        written,
        ["projects/acme-prod/locations/us-central1/services/inventory"],
        "only the service without an exception is written"
    );
}

#[test]
fn check_reports_and_ignores_exceptions_it_must_not_honour() {
    for (why, exception, warning) in [
        (
            "another namespace",
            exception_manifest("team-b", &in_days(3)),
            None,
        ),
        (
            "longer than --exception-max-duration (720h)",
            exception_manifest("platform", &in_days(45)),
            Some("is Refused: refused, never honoured: expiresAt is"),
        ),
        (
            "expired",
            exception_manifest("platform", &in_days(-1)),
            Some("is Expired: expired at"),
        ),
    ] {
        let emulator = Emulator::start(SEED);
        let out = check_with_exception(&exception, &emulator);
        let report = json_report(&out);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{why}: {report:#}\n{stderr}");
        assert_eq!(
            target_state(&report, "search-frontend"),
            "Remediated",
            "{why}: {report:#}"
        );
        if let Some(warning) = warning {
            assert!(
                stderr.contains("warning: -") && stderr.contains(warning),
                "{why}: {stderr}"
            );
        }
    }
}

#[test]
fn an_invalid_exception_manifest_stops_check_before_any_cloud_run_call() {
    let emulator = Emulator::start(SEED);
    let bad = exception_manifest("platform", &in_days(3)).replace("[search-frontend]", "['*']");
    let out = check_with_exception(&bad, &emulator);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("exception platform/hotfix: spec.names: names must not be '*'"),
        "{stderr}"
    );
    assert_eq!(api_calls(&emulator), 0);
}

#[test]
fn grants_given_with_f_refuse_the_bindings_outside_them_and_nothing_is_written_for_those() {
    let emulator = Emulator::start(SEED);
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(
        dir.path().join("grants.yaml"),
        "apiVersion: binauthz.dev/v1alpha1\nkind: BinAuthzTenancy\nmetadata: {name: data}\n\
         spec: {namespaces: [data], projects: [acme-data], maxPriority: 1000}\n",
    )
    .expect("writing the grant");
    let out = check(&[
        "-f",
        path(&bindings()),
        "-f",
        path(dir.path()),
        "--fix",
        "-o",
        "json",
        "--cloud-run-endpoint",
        emulator.url(),
    ]);
    // A refused binding needs a person: exit 1, as for any binding that cannot be checked.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let report = json_report(&out);
    let bindings = report["bindings"].as_array().expect("bindings");
    for b in bindings {
        let (namespace, reason) = (b["namespace"].as_str(), b["reason"].as_str());
        match namespace {
            Some("data") => assert_eq!(reason, Some("Compliant"), "{b}"),
            _ => {
                assert_eq!(reason, Some("NotPermitted"), "{b}");
                let message = b["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains("no BinAuthzTenancy grant selects namespace platform"),
                    "{message}"
                );
            }
        }
    }
    assert!(
        bindings.iter().any(|b| b["reason"] == "NotPermitted"),
        "{report}"
    );
    // Only the permitted binding's project was written.
    let changes = emulator.admin_blocking("audit");
    let changes = changes["changes"].as_array().expect("changes list");
    assert!(!changes.is_empty(), "the data binding's drift was fixed");
    for change in changes {
        let resource = change["resource"].as_str().unwrap_or_default();
        assert!(
            resource.starts_with("projects/acme-data/"),
            "a refused binding wrote: {change}"
        );
    }
}

/// `POST /_emulator/{path}` from a synchronous test.
fn emulator_post(emulator: &Emulator, path: &str, body: Value) {
    let url = format!("{}/_emulator/{path}", emulator.url());
    reqwest::blocking::Client::new()
        .post(&url)
        .json(&body)
        .send()
        .and_then(|r| r.error_for_status())
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
}

fn target<'r>(report: &'r Value, name: &str) -> &'r Value {
    report["bindings"][0]["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {report:#}"))
}

#[test]
fn the_report_says_whether_policies_are_in_effect_and_what_no_binding_covers() {
    const CART: &str = "projects/acme-prod/locations/us-central1/services/cart";
    const BILLING: &str = "projects/acme-prod/locations/us-central1/jobs/nightly-billing";
    const LEGACY: &str = "projects/acme-prod/platforms/cloudRun/policies/legacy";
    let emulator = Emulator::start(SEED);
    // The job ran; then someone switched both resources to another policy and back: the
    // policy they carry was (at the latest) set after what they run.
    emulator_post(&emulator, "execute", serde_json::json!({"name": BILLING}));
    for name in [CART, BILLING] {
        for value in [
            serde_json::json!({"policy": LEGACY}),
            serde_json::json!({"useDefault": true}),
        ] {
            emulator_post(
                &emulator,
                "drift",
                serde_json::json!({"name": name, "binaryAuthorization": value, "by": "someone@example.com"}),
            );
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("effect.yaml");
    std::fs::write(
        &file,
        "apiVersion: binauthz.dev/v1alpha1\nkind: BinAuthzBinding\nmetadata: {name: effect, namespace: platform}\nspec:\n  project: acme-prod\n  locations: [us-central1]\n  targets:\n    services: {names: [cart]}\n    jobs: {names: [nightly-billing]}\n  policy: {useDefault: true}\n  mode: Audit\n",
    )
    .expect("writing the binding");
    let endpoint = ["--cloud-run-endpoint", emulator.url()];
    let run =
        |format: &str| check(&[&["-f", path(&file), "-o", format][..], &endpoint[..]].concat());

    let out = run("json");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let report = json_report(&out);
    let cart = &target(&report, "cart")["effect"];
    assert_eq!(cart["state"], "NotEffective", "{report:#}");
    assert_eq!(cart["basis"], "UpdateTime", "{report:#}");
    assert!(cart["message"].as_str().unwrap().contains("next deploy"));
    let billing = &target(&report, "nightly-billing")["effect"];
    assert_eq!(billing["state"], "NotEffective", "{report:#}");
    assert!(billing["message"].as_str().unwrap().contains("next run"));
    assert_eq!(report["summary"]["notEffective"], 2);
    // Coverage of acme-prod over what was listed (services and jobs of us-central1).
    let coverage = &report["coverage"][0];
    assert_eq!(coverage["project"], "acme-prod");
    assert_eq!(coverage["kinds"], serde_json::json!(["Service", "Job"]));
    assert_eq!(coverage["locations"], serde_json::json!(["us-central1"]));
    let services = &coverage["byKind"][0];
    assert_eq!(services["kind"], "Service");
    assert_eq!(services["listed"], 6, "{coverage:#}");
    assert_eq!(services["uncovered"], 5, "{coverage:#}");
    assert_eq!(
        services["first"][0], "us-central1/checkout",
        "sorted, with the region: {coverage:#}"
    );
    let jobs = &coverage["byKind"][1];
    assert_eq!(jobs["first"], serde_json::json!(["us-central1/db-migrate"]));
    assert_eq!(coverage["uncovered"], 6);
    assert_eq!(coverage["orgPolicy"]["state"], "NotSet", "{coverage:#}");
    // What the check read: one list per kind, the organization policy, and one revision
    // (the one cart serves; the job needs none). Coverage read nothing of its own.
    let mut methods: Vec<String> = emulator.admin_blocking("requests")["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter(|r| {
            r["client"] != "admin" && !r["path"].as_str().unwrap_or("").starts_with("/_emulator")
        })
        .map(|r| r["method"].as_str().unwrap_or_default().to_owned())
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        [
            "jobs.list",
            "policies.getEffectivePolicy",
            "revisions.get",
            "services.list"
        ]
    );

    let table = run("table");
    let stdout = text(&table.stdout);
    assert!(
        stdout.contains("not yet in effect: revision cart-"),
        "{stdout}"
    );
    assert!(
        stdout.contains("coverage project acme-prod: 6 of 8 listed resource(s) no binding matches"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Job 1 of 2: us-central1/db-migrate"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 compliant (2 not yet in effect)"),
        "{stdout}"
    );

    // A deploy and a run put the policy in effect.
    emulator_post(&emulator, "deploy", serde_json::json!({"name": CART}));
    emulator_post(&emulator, "execute", serde_json::json!({"name": BILLING}));
    let after = json_report(&run("json"));
    assert_eq!(
        target(&after, "cart")["effect"]["state"],
        "Effective",
        "{after:#}"
    );
    assert_eq!(
        target(&after, "nightly-billing")["effect"]["state"],
        "Effective",
        "{after:#}"
    );
    assert_eq!(after["summary"]["notEffective"], 0);
}
