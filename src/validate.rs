//! `validate`: the offline half of `check` — read and validate binding manifests, nothing
//! else (no Cloud Run call, no credentials, no cluster). Made for pre-commit hooks and CI
//! steps that must not reach Google.
//!
//! Every problem comes from the shared reader ([`crate::manifests`]), the same one `check`
//! runs before it calls Cloud Run: the schema, the CRD's validation rules
//! ([`crate::api::binding_from_value`]) and bindings declared twice across the inputs. So
//! the two commands refuse the same manifests with the same one-line errors.
//!
//! Exit codes: 0 every binding is valid; 1 any problem (each printed on stderr).

use std::io::Write as _;
use std::path::PathBuf;

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
    /// Some inputs are invalid (each problem has been printed).
    #[error("{count} problem(s) in the binding manifests; fix them and run again")]
    InvalidInput {
        /// How many problems.
        count: usize,
    },
    /// The summary could not be written.
    #[error("cannot write the summary: {0}")]
    Output(String),
}

/// Validates every input: prints each problem on stderr and fails, or prints the summary
/// line on stdout (where `check` prints its report).
pub fn validate(args: &ValidateArgs) -> Result<Summary, ValidateError> {
    let mut loaded = manifests::load(&args.files);
    if args.allow_no_bindings {
        loaded
            .errors
            .retain(|e| !matches!(e.problem, Problem::NoBindings));
    }
    if !loaded.errors.is_empty() {
        let _ = loaded.write_errors(&mut std::io::stderr().lock());
        return Err(ValidateError::InvalidInput {
            count: loaded.errors.len(),
        });
    }
    let summary = Summary {
        bindings: loaded.bindings.len(),
        files: loaded.files,
        skipped: loaded.skipped,
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{summary}")
        .and_then(|()| out.flush())
        .map_err(|e| ValidateError::Output(e.to_string()))?;
    Ok(summary)
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
        };
        assert_eq!(summary.to_string(), "valid: 3 bindings in 1 file");
        let summary = Summary {
            bindings: 1,
            files: 2,
            skipped: 1,
        };
        assert_eq!(
            summary.to_string(),
            "valid: 1 binding in 2 files (1 document of other kinds skipped)"
        );
    }
}
