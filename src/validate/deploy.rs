//! Shift left: checks the Cloud Run manifests of a `validate` run against its bindings, with the planner, before anything is deployed.
//!
//! Each Cloud Run manifest ([`crate::cloudrun_manifest`]) is placed (its project and region
//! from the manifest, else from `--project` / `--region`) and planned alone against every
//! binding of the run, exactly as the controller would plan the live resource
//! ([`crate::plan::plan`], matching and ownership unchanged). Then:
//! - owned, and its setting is not the owner's policy → [`DeployProblem::Clears`] (no
//!   setting: a deploy from it switches Binary Authorization off) or
//!   [`DeployProblem::WrongPolicy`]; the right policy with a justification the owner clears
//!   (`breakglass: Clear`) → [`DeployProblem::ClearedBreakglass`]. Audit owners count as
//!   owners: the manifest would drift all the same.
//! - equal-priority owners disagree → [`DeployProblem::Conflicted`].
//! - not placeable while some binding is active → [`DeployProblem::Unplaced`] (fail
//!   closed: which bindings cover it is unknown).
//! - covered by no binding, with a project given by number that no binding names →
//!   [`DeployProblem::ProjectNumber`], a warning (bindings compare projects as written).
//!
//! Nothing here reads Cloud Run or needs credentials.

use std::collections::BTreeSet;
use std::fmt;

use crate::check::output::{Entry, FileLine, Outcome, Rule};
use crate::cloudrun_manifest::CloudRunManifestError;
use crate::manifests::{LoadedBinding, LoadedCloudRun, Source};
use crate::plan::{self, Activity, BindingInput, BindingKey, Decision};
use crate::policy::{DesiredPolicy, ObservedPolicy};

/// Where manifests that do not say are assumed to deploy (`--project`, `--region`), as
/// gcloud assumes its configured project and region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    /// Project for manifests without `metadata.namespace`.
    pub project: Option<String>,
    /// Region for manifests without the `cloud.googleapis.com/location` label.
    pub region: Option<String>,
}

/// What checking one Cloud Run manifest came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployResult {
    /// Where its Binary Authorization setting is (or would be).
    pub source: Source,
    /// `Service us-central1/checkout (project acme-prod)`, or less when unplaced.
    pub resource: String,
    /// Bindings owning it (empty: covered by none).
    pub owners: Vec<BindingKey>,
    /// What is wrong, if anything.
    pub problem: Option<DeployProblem>,
}

/// What is wrong with a Cloud Run manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeployProblem {
    /// It cannot be read.
    Invalid(CloudRunManifestError),
    /// Its project or region is unknown.
    Unplaced {
        /// No project.
        project: bool,
        /// No region.
        region: bool,
    },
    /// It carries no Binary Authorization: deploying it clears the setting.
    Clears {
        /// The policy the owners want.
        desired: DesiredPolicy,
    },
    /// It carries another policy.
    WrongPolicy {
        /// The policy the owners want.
        desired: DesiredPolicy,
        /// The one it carries.
        carried: ObservedPolicy,
    },
    /// It carries a breakglass justification its owners clear.
    ClearedBreakglass {
        /// The justification.
        justification: String,
    },
    /// Equal-priority bindings cover it and disagree.
    Conflicted {
        /// Them, sorted.
        bindings: Vec<BindingKey>,
    },
    /// Placed in a project given by number that no binding names.
    ProjectNumber {
        /// The number.
        project: String,
    },
}

impl DeployProblem {
    /// The rule it breaks.
    pub fn rule(&self) -> Rule {
        match self {
            Self::Invalid(_) => Rule::InvalidManifest,
            Self::Unplaced { .. } => Rule::DeployUnplaced,
            Self::Clears { .. } => Rule::DeployClears,
            Self::WrongPolicy { .. } | Self::ClearedBreakglass { .. } => Rule::DeployNoncompliant,
            Self::Conflicted { .. } => Rule::DeployConflicted,
            Self::ProjectNumber { .. } => Rule::DeployProjectNumber,
        }
    }
}

fn keys(keys: &[BindingKey]) -> String {
    keys.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for DeployResult {
    /// `file:line (document n): Service us-central1/x (project p): what is wrong; what to do`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: ", self.source, self.resource)?;
        let owners = keys(&self.owners);
        match &self.problem {
            None if self.owners.is_empty() => f.write_str("covered by no binding"),
            None => write!(f, "complies with binding {owners}"),
            Some(DeployProblem::Invalid(e)) => write!(f, "{e}"),
            Some(DeployProblem::Unplaced { project, region }) => {
                let mut missing = Vec::new();
                if *project {
                    missing.push("its project (metadata.namespace)");
                }
                if *region {
                    missing.push("its region (label cloud.googleapis.com/location)");
                }
                write!(
                    f,
                    "does not say {}, so the bindings covering it are unknown; add {} or pass {}",
                    missing.join(" or "),
                    if missing.len() == 1 { "it" } else { "them" },
                    match (project, region) {
                        (true, true) => "--project and --region",
                        (true, false) => "--project",
                        _ => "--region",
                    }
                )
            }
            Some(DeployProblem::Clears { desired }) => write!(
                f,
                "carries no Binary Authorization setting, so deploying it would switch Binary Authorization off; binding {owners} requires {desired}: {}",
                fix(desired)
            ),
            Some(DeployProblem::WrongPolicy { desired, carried }) => write!(
                f,
                "sets Binary Authorization policy {carried}, binding {owners} requires {desired}: {}",
                fix(desired)
            ),
            Some(DeployProblem::ClearedBreakglass { justification }) => write!(
                f,
                "carries breakglass justification {justification:?}, which binding {owners} clears (breakglass: Clear); remove run.googleapis.com/binary-authorization-breakglass (v2: binaryAuthorization.breakglassJustification)"
            ),
            Some(DeployProblem::Conflicted { bindings }) => write!(
                f,
                "covered by equal-priority bindings that want different policies ({}); no manifest can satisfy them: give one a higher spec.priority or make them agree",
                keys(bindings)
            ),
            Some(DeployProblem::ProjectNumber { project }) => write!(
                f,
                "placed in project number {project}, which no binding names (bindings compare projects as written); write the project id in metadata.namespace to check it against its bindings"
            ),
        }
    }
}

fn fix(desired: &DesiredPolicy) -> String {
    format!(
        "set annotation run.googleapis.com/binary-authorization: {desired} (v2: binaryAuthorization.{})",
        match desired {
            DesiredPolicy::ProjectDefault => "useDefault: true".to_owned(),
            DesiredPolicy::Named(name) => format!("policy: {name}"),
        }
    )
}

impl DeployResult {
    /// Whether it fails the run.
    pub fn is_error(&self) -> bool {
        self.problem
            .as_ref()
            .is_some_and(|p| p.rule().level() == crate::check::output::Level::Error)
    }

    /// Its entry for the CI formats.
    pub fn entry(&self) -> Entry {
        let outcome = match &self.problem {
            Some(problem) => Outcome::Finding {
                rule: problem.rule(),
                message: self.to_string(),
            },
            None if self.owners.is_empty() => Outcome::Skipped("covered by no binding".into()),
            None => Outcome::Passed,
        };
        Entry {
            suite: "cloud run manifests".into(),
            name: self.resource.clone(),
            location: FileLine::of(&self.source),
            outcome,
        }
    }
}

/// Checks every Cloud Run manifest against the bindings (the first declaration of each
/// namespace/name: later copies are refused by the reader already).
pub fn check_deployments(
    bindings: &[LoadedBinding],
    manifests: &[LoadedCloudRun],
    placement: &Placement,
) -> Vec<DeployResult> {
    let mut seen = BTreeSet::new();
    let inputs: Vec<BindingInput<'_>> = bindings
        .iter()
        .map(|b| BindingInput {
            key: BindingKey::new(
                b.binding
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                b.binding.metadata.name.clone().unwrap_or_default(),
            ),
            spec: &b.binding.spec,
            // `validate` reads no grants: deploys are checked against every binding given.
            permission: plan::Permission::Open,
        })
        .filter(|input| seen.insert(input.key.clone()))
        .collect();
    let active: Vec<(&BindingKey, plan::ActiveBinding)> = inputs
        .iter()
        .filter_map(|input| match input.activity() {
            Activity::Active(active) => Some((&input.key, active)),
            _ => None,
        })
        .collect();
    manifests
        .iter()
        .map(|loaded| {
            let manifest = match &loaded.manifest {
                Ok(m) => m,
                Err(e) => {
                    return DeployResult {
                        source: loaded.source.clone(),
                        resource: "Cloud Run manifest".into(),
                        owners: Vec::new(),
                        problem: Some(DeployProblem::Invalid(e.clone())),
                    }
                }
            };
            let project = manifest
                .project
                .clone()
                .or_else(|| placement.project.clone());
            let location = manifest
                .location
                .clone()
                .or_else(|| placement.region.clone());
            let mut result = DeployResult {
                source: loaded.source.clone(),
                resource: match (&project, &location) {
                    (Some(p), Some(l)) => {
                        format!("{} {l}/{} (project {p})", manifest.kind, manifest.name)
                    }
                    (Some(p), None) => format!("{} {} (project {p})", manifest.kind, manifest.name),
                    (None, Some(l)) => format!("{} {l}/{}", manifest.kind, manifest.name),
                    (None, None) => format!("{} {}", manifest.kind, manifest.name),
                },
                owners: Vec::new(),
                problem: None,
            };
            if active.is_empty() {
                return result;
            }
            let (Some(project), Some(location)) = (project, location) else {
                result.problem = Some(DeployProblem::Unplaced {
                    project: manifest.project.is_none() && placement.project.is_none(),
                    region: manifest.location.is_none() && placement.region.is_none(),
                });
                return result;
            };
            let observed = manifest.observe(&project, &location);
            // Keys are unique (deduplicated above), so planning succeeds.
            let Ok(plan) = plan::plan(&inputs, std::iter::once(&observed)) else {
                return result;
            };
            let (mut writers, mut conflicted, mut complying) = (Vec::new(), Vec::new(), Vec::new());
            for binding in plan.bindings() {
                for target in binding.targets() {
                    let key = binding.key().clone();
                    match &target.decision {
                        Decision::Remediate(_) | Decision::Drifted | Decision::Excepted { .. } => {
                            writers.push(key)
                        }
                        Decision::Conflicted { .. } => conflicted.push(key),
                        Decision::Compliant | Decision::Breakglass => complying.push(key),
                        Decision::Superseded { .. } => {}
                    }
                }
            }
            if !conflicted.is_empty() {
                result.problem = Some(DeployProblem::Conflicted {
                    bindings: conflicted,
                });
                return result;
            }
            if let Some(desired) = writers.first().and_then(|owner| {
                active
                    .iter()
                    .find(|(key, _)| *key == owner)
                    .map(|(_, a)| a.desired.clone())
            }) {
                result.owners = writers;
                result.problem = Some(if desired.is_satisfied_by(&manifest.policy) {
                    DeployProblem::ClearedBreakglass {
                        justification: manifest.breakglass.clone().unwrap_or_default(),
                    }
                } else if manifest.policy == ObservedPolicy::None {
                    DeployProblem::Clears { desired }
                } else {
                    DeployProblem::WrongPolicy {
                        desired,
                        carried: manifest.policy.clone(),
                    }
                });
                return result;
            }
            result.owners = complying;
            let by_number = !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit());
            if result.owners.is_empty()
                && by_number
                && !active.iter().any(|(key, _)| {
                    inputs
                        .iter()
                        .any(|i| &i.key == *key && i.spec.project == project)
                })
            {
                result.problem = Some(DeployProblem::ProjectNumber { project });
            }
            result
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifests;

    const BINDINGS: &str = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: prod, namespace: platform}
spec:
  project: acme-prod
  locations: [us-central1]
  targets:
    services: {names: ['*'], exclude: [sandbox]}
    jobs: {names: ['*']}
  policy: {name: projects/acme-sec/platforms/cloudRun/policies/strict}
  breakglass: Clear
---
apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: a, namespace: team}
spec:
  project: acme-dev
  locations: ['*']
  targets: {services: {names: ['x-*']}}
  policy: {useDefault: true}
---
apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata: {name: b, namespace: team}
spec:
  project: acme-dev
  locations: ['*']
  targets: {services: {labelSelector: {matchLabels: {env: dev}}}}
  policy: {name: projects/acme-sec/platforms/cloudRun/policies/lax}
";

    fn service(name: &str, namespace: &str, annotations: &str) -> String {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    cloud.googleapis.com/location: us-central1\n    env: dev\n  annotations:\n{annotations}    run.googleapis.com/ingress: all\nspec: {{}}\n"
        )
    }

    fn run(docs: &[String], placement: &Placement) -> Vec<DeployResult> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("all.yaml");
        let mut text = BINDINGS.to_owned();
        for doc in docs {
            text.push_str("---\n");
            text.push_str(doc);
        }
        std::fs::write(&file, text).unwrap();
        let loaded = manifests::load(&[file]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        check_deployments(&loaded.bindings, &loaded.cloud_run, placement)
    }

    const STRICT: &str =
        "    run.googleapis.com/binary-authorization: projects/acme-sec/platforms/cloudRun/policies/strict\n";

    #[test]
    fn each_covered_manifest_is_judged_by_its_owner_with_file_and_line() {
        let results = run(
            &[
                service("checkout", "acme-prod", STRICT),
                service("payments", "acme-prod", ""),
                service(
                    "ledger",
                    "acme-prod",
                    "    run.googleapis.com/binary-authorization: default\n",
                ),
                service(
                    "pos",
                    "acme-prod",
                    &format!(
                        "{STRICT}    run.googleapis.com/binary-authorization-breakglass: outage\n"
                    ),
                ),
                service("sandbox", "acme-prod", ""),
            ],
            &Placement::default(),
        );
        assert_eq!(results.len(), 5);
        assert_eq!(results[0].problem, None);
        assert_eq!(results[0].owners, [BindingKey::new("platform", "prod")]);
        // The bindings hold 29 lines; the annotation is line 10 of the service after "---".
        // Without it, the line of `annotations:` (line 9 of the next service, at line 44).
        assert_eq!(results[0].source.line, Some(40));
        assert_eq!(
            results[1].to_string(),
            format!(
                "{}:52 (document 5): Service us-central1/payments (project acme-prod): carries no Binary Authorization setting, so deploying it would switch Binary Authorization off; binding platform/prod requires projects/acme-sec/platforms/cloudRun/policies/strict: set annotation run.googleapis.com/binary-authorization: projects/acme-sec/platforms/cloudRun/policies/strict (v2: binaryAuthorization.policy: projects/acme-sec/platforms/cloudRun/policies/strict)",
                results[1].source.file
            )
        );
        assert_eq!(
            results[1].problem.as_ref().unwrap().rule(),
            Rule::DeployClears
        );
        assert!(matches!(
            results[2].problem,
            Some(DeployProblem::WrongPolicy {
                carried: ObservedPolicy::ProjectDefault,
                ..
            })
        ));
        assert_eq!(
            results[3].problem,
            Some(DeployProblem::ClearedBreakglass {
                justification: "outage".into()
            })
        );
        // Excluded: covered by nobody.
        assert_eq!(results[4].problem, None);
        assert!(results[4].owners.is_empty());
        assert!(results.iter().filter(|r| r.is_error()).count() == 3);
    }

    #[test]
    fn conflicts_unplaced_manifests_and_project_numbers_are_reported() {
        let job_without_place =
            "apiVersion: run.googleapis.com/v1\nkind: Job\nmetadata:\n  name: nightly\n".to_owned();
        let results = run(
            &[
                service("x-api", "acme-dev", ""),
                job_without_place.clone(),
                service("other", "'123456789012'", ""),
            ],
            &Placement::default(),
        );
        assert_eq!(
            results[0].problem,
            Some(DeployProblem::Conflicted {
                bindings: vec![BindingKey::new("team", "a"), BindingKey::new("team", "b")]
            })
        );
        assert_eq!(
            results[1].problem,
            Some(DeployProblem::Unplaced {
                project: true,
                region: true
            })
        );
        assert!(
            results[1]
                .to_string()
                .ends_with("pass --project and --region"),
            "{}",
            results[1]
        );
        assert_eq!(
            results[2].problem,
            Some(DeployProblem::ProjectNumber {
                project: "123456789012".into()
            })
        );
        assert!(!results[2].is_error());

        // --project / --region place what the manifest leaves out.
        let placed = run(
            &[job_without_place],
            &Placement {
                project: Some("acme-prod".into()),
                region: Some("us-central1".into()),
            },
        );
        assert_eq!(
            placed[0].resource,
            "Job us-central1/nightly (project acme-prod)"
        );
        assert_eq!(
            placed[0].problem,
            Some(DeployProblem::Clears {
                desired: DesiredPolicy::Named(
                    crate::policy::PolicyName::parse(
                        "projects/acme-sec/platforms/cloudRun/policies/strict"
                    )
                    .unwrap()
                )
            })
        );
    }

    #[test]
    fn v2_resources_are_checked_and_unreadable_manifests_are_problems() {
        let v2 = "name: projects/acme-prod/locations/us-central1/services/api\nbinaryAuthorization:\n  useDefault: true\n".to_owned();
        let broken =
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {namespace: acme-prod}\n"
                .to_owned();
        let results = run(&[v2, broken], &Placement::default());
        assert!(matches!(
            results[0].problem,
            Some(DeployProblem::WrongPolicy { .. })
        ));
        assert_eq!(
            results[0].source.line,
            Some(32),
            "the binaryAuthorization line"
        );
        assert!(matches!(
            results[1].problem,
            Some(DeployProblem::Invalid(_))
        ));
        assert_eq!(
            results[1].entry().outcome,
            Outcome::Finding {
                rule: Rule::InvalidManifest,
                message: results[1].to_string(),
            }
        );
    }
}
