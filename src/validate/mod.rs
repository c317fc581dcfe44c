//! `validate`: the offline half of `check` — read and validate binding manifests, nothing
//! else (no Cloud Run call, no credentials, no cluster). Made for pre-commit hooks and CI
//! steps that must not reach Google.
//!
//! Every problem comes from the shared reader ([`crate::manifests`]), the same one `check`
//! runs before it calls Cloud Run: the schema, the CRD's validation rules
//! ([`crate::api::binding_from_value`]) and bindings declared twice across the inputs. So
//! the two commands refuse the same manifests with the same one-line errors.
//!
//! Shift left ([`deploy`]): the Cloud Run manifests among the inputs (v1 Service/Job YAML as
//! gcloud exports it, v2 resources) are checked against the bindings of the same run, so a
//! manifest that would switch Binary Authorization off, or set another policy than its
//! binding's, is refused before it is deployed.
//!
//! Exit codes: 0 every binding is valid and every covered Cloud Run manifest complies
//! (warnings allowed); 1 any problem (each printed on stderr, and in the `--output` format
//! on stdout).

mod deploy;

pub use deploy::{check_deployments, DeployProblem, DeployResult, Placement};

use std::io::Write as _;
use std::path::PathBuf;

use crate::check::output::{self, Entry, FileLine, Outcome, Producer};
use crate::manifests::{self, Problem};

/// Flags of `binauthz-operator validate`.
#[derive(clap::Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Binding manifests: files, directories (searched recursively for *.yaml and *.yml)
    /// or `-` for stdin. Documents of other kinds are skipped. The environment variable
    /// holds one path.
    #[arg(short = 'f', long = "filename", env = "BINAUTHZ_VALIDATE_FILENAME", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Succeed when the inputs hold no BinAuthzBinding at all (by default that is an
    /// error, as in `check`). For hooks that are handed every changed YAML file.
    #[arg(long, env = "BINAUTHZ_VALIDATE_ALLOW_NO_BINDINGS")]
    pub allow_no_bindings: bool,

    /// Output: `text` (problems on stderr, a summary on stdout), or for CI `github`
    /// (workflow-command annotations, then the summary), `sarif` (a SARIF 2.1.0 log) or
    /// `junit` (JUnit XML) on stdout — the problems still go to stderr too.
    #[arg(short = 'o', long, value_enum, default_value_t = ValidateOutput::Text, env = "BINAUTHZ_VALIDATE_OUTPUT")]
    pub output: ValidateOutput,

    /// Project of the Cloud Run manifests that do not say theirs (v1 without
    /// metadata.namespace), as gcloud's --project.
    #[arg(long, env = "BINAUTHZ_VALIDATE_PROJECT", value_name = "PROJECT")]
    pub project: Option<String>,

    /// Region of the Cloud Run manifests that do not say theirs (v1 without the label
    /// cloud.googleapis.com/location), as gcloud's --region.
    #[arg(long, env = "BINAUTHZ_VALIDATE_REGION", value_name = "REGION")]
    pub region: Option<String>,
}

/// Output formats of `validate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValidateOutput {
    /// Problems on stderr, one summary line on stdout.
    Text,
    /// GitHub Actions workflow commands, then the summary line.
    Github,
    /// A SARIF 2.1.0 log.
    Sarif,
    /// JUnit XML: a test case per binding and per Cloud Run manifest.
    Junit,
}

/// What a successful validation read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Valid bindings.
    pub bindings: usize,
    /// Files read (stdin counts as one).
    pub files: usize,
    /// Documents of other kinds that were skipped.
    pub skipped: usize,
    /// Cloud Run manifests read.
    pub cloud_run: usize,
    /// Of those, the ones a binding covers (they comply).
    pub covered: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural =
            |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        write!(
            f,
            "valid: {} {} in {} {}",
            self.bindings,
            plural(self.bindings, "binding", "bindings"),
            self.files,
            plural(self.files, "file", "files"),
        )?;
        if self.cloud_run > 0 {
            write!(
                f,
                "; {} Cloud Run {} checked, {} covered by a binding and {}",
                self.cloud_run,
                plural(self.cloud_run, "manifest", "manifests"),
                self.covered,
                plural(self.covered, "complies", "comply"),
            )?;
        }
        if self.skipped > 0 {
            write!(
                f,
                " ({} {} of other kinds skipped)",
                self.skipped,
                plural(self.skipped, "document", "documents")
            )?;
        }
        Ok(())
    }
}

/// Why `validate` failed.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// Some inputs are invalid, or Cloud Run manifests would not comply (each problem has
    /// been printed).
    #[error("{}", problems_line(*count, *cloud_run))]
    InvalidInput {
        /// How many problems in the binding manifests.
        count: usize,
        /// How many in the Cloud Run manifests.
        cloud_run: usize,
    },
    /// The summary could not be written.
    #[error("cannot write the summary: {0}")]
    Output(String),
}

fn problems_line(bindings: usize, cloud_run: usize) -> String {
    match (bindings, cloud_run) {
        (b, 0) => format!("{b} problem(s) in the binding manifests; fix them and run again"),
        (0, c) => format!("{c} problem(s) in the Cloud Run manifests; fix them and run again"),
        (b, c) => format!(
            "{b} problem(s) in the binding manifests and {c} in the Cloud Run manifests; fix them and run again"
        ),
    }
}

/// Validates every input: prints each problem on stderr (and, in a CI format, the results on
/// stdout) and fails, or prints the summary line on stdout (where `check` prints its report).
pub fn validate(args: &ValidateArgs) -> Result<Summary, ValidateError> {
    let ValidateArgs {
        files,
        allow_no_bindings,
        output,
        project,
        region,
    } = args;
    let mut loaded = manifests::load(files);
    if *allow_no_bindings {
        loaded
            .errors
            .retain(|e| !matches!(e.problem, Problem::NoBindings));
    }
    let placement = Placement {
        project: project.clone(),
        region: region.clone(),
    };
    let deployments = check_deployments(&loaded.bindings, &loaded.cloud_run, &placement);
    let failing = deployments.iter().filter(|d| d.is_error()).count();

    let mut stderr = std::io::stderr().lock();
    let _ = loaded.write_errors(&mut stderr);
    for d in deployments.iter().filter(|d| d.problem.is_some()) {
        let _ = writeln!(
            stderr,
            "{}: {d}",
            if d.is_error() { "error" } else { "warning" }
        );
    }
    drop(stderr);

    let mut entries: Vec<Entry> = loaded.errors.iter().map(Entry::manifest_error).collect();
    entries.extend(loaded.bindings.iter().map(|b| Entry {
        suite: "binding manifests".into(),
        name: format!("binding {}", b.key),
        location: FileLine::of(&b.source),
        outcome: Outcome::Passed,
    }));
    entries.extend(deployments.iter().map(DeployResult::entry));
    let summary = Summary {
        bindings: loaded.bindings.len(),
        files: loaded.files,
        skipped: loaded.skipped,
        cloud_run: loaded.cloud_run.len(),
        covered: deployments
            .iter()
            .filter(|d| d.problem.is_none() && !d.owners.is_empty())
            .count(),
    };
    let ok = loaded.errors.is_empty() && failing == 0;
    let producer = Producer {
        command: "validate",
    };
    let mut out = std::io::stdout().lock();
    let written = match output {
        ValidateOutput::Text => Ok(()),
        ValidateOutput::Github => output::write_github(&mut out, &entries),
        ValidateOutput::Sarif => output::write_sarif(&mut out, &entries, producer, true),
        ValidateOutput::Junit => output::write_junit(&mut out, &entries, producer),
    }
    .and_then(|()| {
        if ok && matches!(output, ValidateOutput::Text | ValidateOutput::Github) {
            writeln!(out, "{summary}")?;
        }
        out.flush()
    });
    output::closed_pipe_is_fine(written).map_err(|e| ValidateError::Output(e.to_string()))?;
    if ok {
        Ok(summary)
    } else {
        Err(ValidateError::InvalidInput {
            count: loaded.errors.len(),
            cloud_run: failing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_counts_bindings_files_and_skipped_documents() {
        let summary = Summary {
            bindings: 3,
            files: 1,
            skipped: 0,
            cloud_run: 0,
            covered: 0,
        };
        assert_eq!(summary.to_string(), "valid: 3 bindings in 1 file");
        let summary = Summary {
            bindings: 1,
            files: 2,
            skipped: 1,
            cloud_run: 0,
            covered: 0,
        };
        assert_eq!(
            summary.to_string(),
            "valid: 1 binding in 2 files (1 document of other kinds skipped)"
        );
        let summary = Summary {
            cloud_run: 3,
            covered: 1,
            ..summary
        };
        assert_eq!(
            summary.to_string(),
            "valid: 1 binding in 2 files; 3 Cloud Run manifests checked, 1 covered by a binding and complies (1 document of other kinds skipped)"
        );
        assert_eq!(
            ValidateError::InvalidInput { count: 2, cloud_run: 1 }.to_string(),
            "2 problem(s) in the binding manifests and 1 in the Cloud Run manifests; fix them and run again"
        );
        assert_eq!(
            ValidateError::InvalidInput {
                count: 0,
                cloud_run: 1
            }
            .to_string(),
            "1 problem(s) in the Cloud Run manifests; fix them and run again"
        );
    }
}
