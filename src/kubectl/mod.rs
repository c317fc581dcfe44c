//! `kubectl binauthz`: the operator's kubectl plugin — fleet status, why a Cloud Run resource is (not) enforced, reconcile now, suspend and resume — talking to the cluster with the user's kubeconfig.
//!
//! The same binary serves both spellings: run under the name `kubectl-binauthz` (a
//! symlink or copy on `PATH`, which is how kubectl finds plugins; see [`invoked_as_plugin`])
//! it *is* the plugin; `binauthz-operator kubectl ...` runs the same commands.
//!
//! # Parts
//! - `cluster`: the kubeconfig (`--kubeconfig`/`KUBECONFIG`, `--context`, `-n`/`-A`), the
//!   client, and every Kubernetes error turned into one line that says what to do.
//! - `status`: a summary of every binding's status.
//! - `why`: ownership of one Cloud Run resource, decided by the planner
//!   ([`crate::plan::plan`]) over the bindings listed from the cluster, exactly as a pass.
//! - `patch`: `reconcile` (the reconcile-now annotation, optionally waiting for the echo)
//!   and `suspend`/`resume` (a merge patch of `spec.suspend` alone).
//! - `output`: `-o table|json|yaml` and aligned tables.
//!
//! # Guarantees
//! - `status` and `why` only read (get/list of bindings); `why --live` additionally reads
//!   the one resource from Cloud Run, never writes it.
//! - `reconcile` changes one annotation; `suspend`/`resume` change `spec.suspend` and
//!   nothing else (JSON merge patches under the field manager `kubectl-binauthz`).

mod cluster;
mod output;
mod patch;
mod status;
mod why;

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

pub use cluster::{Action, ClusterArgs, KubectlError, Scope};
pub use output::OutputFormat;
pub use status::{FleetStatus, StatusRow, StatusTotal};
pub use why::{parse_resource_name, Explanation, ResourceNameError};

use crate::cloudrun::CloudRunArgs;

/// The executable name kubectl runs for `kubectl binauthz` (kubectl looks up
/// `kubectl-<name>` on `PATH`).
pub const PLUGIN_NAME: &str = "kubectl-binauthz";

/// The field manager of the plugin's patches (shown in `metadata.managedFields`).
pub const FIELD_MANAGER: &str = "kubectl-binauthz";

/// Whether the process was started under the plugin's name (`argv[0]`'s file name is
/// `kubectl-binauthz`, with or without `.exe`), whatever directory it is in.
pub fn invoked_as_plugin(argv0: Option<&OsStr>) -> bool {
    argv0
        .map(Path::new)
        .and_then(Path::file_stem)
        .is_some_and(|stem| stem == PLUGIN_NAME)
}

/// `kubectl binauthz`: the command line of the plugin when run as `kubectl-binauthz`.
#[derive(clap::Parser, Debug)]
#[command(
    name = "kubectl binauthz",
    bin_name = "kubectl binauthz",
    version,
    about = "BinAuthzBindings from kubectl: fleet status, why a Cloud Run resource is (not) enforced, reconcile now, suspend and resume."
)]
pub struct PluginCli {
    /// The commands and their flags.
    #[command(flatten)]
    pub args: KubectlArgs,
}

/// The commands of the plugin and the cluster flags they share.
#[derive(clap::Args, Debug, Clone)]
pub struct KubectlArgs {
    /// Kubeconfig, context and namespace.
    #[command(flatten)]
    pub cluster: ClusterArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: KubectlCommand,
}

/// The plugin's commands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum KubectlCommand {
    /// Summarise every binding (all namespaces, or -n): mode, Ready and its reason, targets
    /// by state, last pass; then a total line.
    Status(StatusArgs),
    /// Explain which bindings match a Cloud Run resource, which one owns it and why
    /// (priority, conflict, exclude), and what the operator will do with it.
    Why(WhyArgs),
    /// Ask for a pass of a binding now (sets the binauthz.dev/reconcile-requested-at
    /// annotation); with --wait, wait until the controller has handled it.
    Reconcile(ReconcileArgs),
    /// Suspend a binding: spec.suspend=true (no Cloud Run calls until resumed).
    Suspend(BindingArg),
    /// Resume a suspended binding: spec.suspend=false.
    Resume(BindingArg),
}

/// Flags of `kubectl binauthz status`.
#[derive(clap::Args, Debug, Clone)]
pub struct StatusArgs {
    /// Output format: `table` for people, `json` or `yaml` for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, env = "BINAUTHZ_KUBECTL_OUTPUT")]
    pub output: OutputFormat,
}

/// Flags of `kubectl binauthz why`.
#[derive(clap::Args, Debug, Clone)]
pub struct WhyArgs {
    /// The Cloud Run resource:
    /// projects/PROJECT/locations/LOCATION/{services|jobs|workerPools}/NAME.
    #[arg(value_name = "RESOURCE")]
    pub resource: String,

    /// A Cloud Run label of the resource, for bindings that select by labels (repeat it;
    /// without --live the plugin does not read Cloud Run and knows no labels otherwise).
    #[arg(
        long = "label",
        value_name = "KEY=VALUE",
        env = "BINAUTHZ_KUBECTL_LABELS",
        value_delimiter = ',',
        conflicts_with = "live"
    )]
    pub labels: Vec<String>,

    /// Read the resource from Cloud Run (labels, current policy, breakglass) and plan on
    /// it: needs Google credentials (or --cloud-run-endpoint). Without it, no Cloud Run call.
    #[arg(long, env = "BINAUTHZ_KUBECTL_LIVE")]
    pub live: bool,

    /// Output format: `table` for people, `json` or `yaml` for scripts.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, env = "BINAUTHZ_KUBECTL_OUTPUT")]
    pub output: OutputFormat,

    /// Cloud Run client flags (used with --live).
    #[command(flatten)]
    pub cloud_run: CloudRunArgs,
}

/// Flags of `kubectl binauthz reconcile`.
#[derive(clap::Args, Debug, Clone)]
pub struct ReconcileArgs {
    /// The binding (in -n NAMESPACE, else the context's namespace).
    #[arg(value_name = "BINDING")]
    pub binding: String,

    /// Wait until the controller has handled the request (its status echoes it), then
    /// print the binding's Ready condition.
    #[arg(long, env = "BINAUTHZ_KUBECTL_WAIT")]
    pub wait: bool,

    /// With --wait: how long to wait (e.g. `90s`, `5m`).
    #[arg(long, value_name = "DURATION", default_value = "2m", env = "BINAUTHZ_KUBECTL_TIMEOUT", value_parser = crate::duration::parse)]
    pub timeout: Duration,
}

/// The binding `suspend` and `resume` act on.
#[derive(clap::Args, Debug, Clone)]
pub struct BindingArg {
    /// The binding (in -n NAMESPACE, else the context's namespace).
    #[arg(value_name = "BINDING")]
    pub binding: String,
}

/// Runs one plugin command, printing its result on stdout.
///
/// # Errors
/// One [`KubectlError`] per failure, its Display one line for a person.
pub async fn kubectl(args: KubectlArgs) -> Result<(), KubectlError> {
    let KubectlArgs { cluster, command } = args;
    match command {
        KubectlCommand::Status(StatusArgs { output }) => {
            let cluster = cluster.connect().await?;
            let fleet = status::fleet_status(&cluster).await?;
            output::print(output, &fleet, status::write_table)
        }
        KubectlCommand::Why(args) => {
            // The argument is checked before anything else is tried.
            let id = parse_resource_name(&args.resource)?;
            let cluster = cluster.connect().await?;
            let explanation = why::why(&cluster, id, &args).await?;
            output::print(args.output, &explanation, why::write_text)
        }
        KubectlCommand::Reconcile(args) => {
            let cluster = cluster.connect().await?;
            patch::reconcile(&cluster, &args).await
        }
        KubectlCommand::Suspend(BindingArg { binding }) => {
            let cluster = cluster.connect().await?;
            patch::set_suspend(&cluster, &binding, true).await
        }
        KubectlCommand::Resume(BindingArg { binding }) => {
            let cluster = cluster.connect().await?;
            patch::set_suspend(&cluster, &binding, false).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_plugin_is_recognised_by_its_file_name_only() {
        for argv0 in [
            "kubectl-binauthz",
            "/usr/local/bin/kubectl-binauthz",
            "/home/me/.krew/bin/kubectl-binauthz",
            "C:\\bin\\kubectl-binauthz.exe",
        ] {
            let argv0 = argv0.replace('\\', "/");
            assert!(invoked_as_plugin(Some(OsStr::new(&argv0))), "{argv0}");
        }
        for argv0 in [
            "binauthz-operator",
            "/usr/bin/binauthz-operator",
            "kubectl-binauthz-old",
            "/kubectl-binauthz/binauthz-operator",
        ] {
            assert!(!invoked_as_plugin(Some(OsStr::new(argv0))), "{argv0}");
        }
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn cluster_flags_go_before_or_after_the_command() {
        let before = PluginCli::try_parse_from([
            "kubectl-binauthz",
            "-n",
            "team-a",
            "--context",
            "prod",
            "suspend",
            "web",
        ])
        .map_err(|e| e.to_string());
        let after = PluginCli::try_parse_from([
            "kubectl-binauthz",
            "suspend",
            "web",
            "--namespace=team-a",
            "--context=prod",
        ])
        .map_err(|e| e.to_string());
        for parsed in [before, after] {
            let cli = parsed.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cli.args.cluster.namespace.as_deref(), Some("team-a"));
            assert_eq!(cli.args.cluster.context.as_deref(), Some("prod"));
            assert!(matches!(&cli.args.command, KubectlCommand::Suspend(b) if b.binding == "web"));
        }
        let all = PluginCli::try_parse_from(["kubectl-binauthz", "status", "-A", "-o", "json"])
            .map_err(|e| e.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(all.args.cluster.all_namespaces);
        assert!(
            PluginCli::try_parse_from(["kubectl-binauthz", "status", "-A", "-n", "x"]).is_err(),
            "-A and -n exclude each other"
        );
    }
}
