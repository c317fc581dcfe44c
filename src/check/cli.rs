//! The flags of `binauthz-operator check`.

use std::path::PathBuf;

use crate::cloudrun::CloudRunArgs;

/// Flags of `binauthz-operator check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Binding manifests: files, directories (searched recursively for *.yaml and *.yml)
    /// or `-` for stdin. Documents of other kinds are skipped. The environment variable
    /// holds one path.
    #[arg(short = 'f', long = "filename", env = "BINAUTHZ_CHECK_FILENAME", value_name = "PATH", required = true, num_args = 1..)]
    pub files: Vec<PathBuf>,

    /// Fix drift: set the policy on every drifted resource owned by an Enforce binding,
    /// then check again. Audit bindings are only reported.
    #[arg(long, env = "BINAUTHZ_CHECK_FIX")]
    pub fix: bool,

    /// Report format: `table` for people, `json` or `yaml` for machines (schema in README),
    /// `sarif` (code scanning), `junit` (test reports) or `github` (workflow-command
    /// annotations, then the table) for CI. Exit codes are the same for every format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, env = "BINAUTHZ_CHECK_OUTPUT")]
    pub output: OutputFormat,

    /// In the table, list compliant targets too (by default only those that need
    /// attention or changed).
    #[arg(long, env = "BINAUTHZ_CHECK_WIDE")]
    pub wide: bool,

    /// The longest BinAuthzException honoured, from its creation (from now for a file
    /// without creationTimestamp); longer ones are refused. Go duration.
    #[arg(long, env = "BINAUTHZ_EXCEPTION_MAX_DURATION", value_name = "DURATION", default_value = "720h", value_parser = crate::duration::parse)]
    pub exception_max_duration: std::time::Duration,

    /// Start an embedded Cloud Run emulator seeded from this file and check against it
    /// (no Google credentials, no network). See `binauthz-operator emulator --help`.
    #[cfg(feature = "emulator")]
    #[arg(
        long,
        env = "BINAUTHZ_CHECK_EMULATOR",
        value_name = "SEED.yaml",
        conflicts_with = "cloud_run_endpoint"
    )]
    pub emulator: Option<PathBuf>,

    /// Cloud Run client flags.
    #[command(flatten)]
    pub cloud_run: CloudRunArgs,
}

/// Report formats.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people (colour on a terminal unless NO_COLOR is set).
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
    /// A SARIF 2.1.0 log: a result per drifted, conflicted, failed or breakglass target,
    /// per binding that could not be checked, per invalid manifest (at its file and line).
    Sarif,
    /// JUnit XML: a test suite per binding, a test case per target.
    Junit,
    /// GitHub Actions workflow commands (`::error file=...,line=...::...`), then the table.
    Github,
}
