//! The `binauthz-operator` command line: parses arguments and hands off to the library.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keeps Google Cloud Run services, jobs and worker pools under Binary Authorization.
#[derive(Parser, Debug)]
#[command(name = "binauthz-operator", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (BinAuthzBinding, BinAuthzException,
    /// BinAuthzTenancy, BinAuthzTenancyIndex) as YAML (pipe it to `kubectl apply -f -`).
    Crd(CrdArgs),
    /// Run the operator: reconcile BinAuthzBindings against live Cloud Run.
    Controller(Box<binauthz_operator::controller::ControllerArgs>),
    /// Check Cloud Run against binding manifests without a cluster; --fix remediates.
    /// Exit 0: all comply; 2: drift remains; 1: error.
    Check(Box<binauthz_operator::check::CheckArgs>),
    /// Validate binding manifests offline (schema, rules, duplicates): no Cloud Run call,
    /// no credentials, no cluster. Exit 0: all valid; 1: a problem (each printed).
    Validate(binauthz_operator::validate::ValidateArgs),
    /// The kubectl plugin's commands (`kubectl binauthz ...` when this binary is installed
    /// as `kubectl-binauthz`): status, why, reconcile, suspend, resume.
    Kubectl(Box<binauthz_operator::kubectl::KubectlArgs>),
    /// Serve a local Cloud Run Admin API emulator (seeded from YAML, with fault injection).
    #[cfg(feature = "emulator")]
    Emulator(Box<cloudrun_emulator::EmulatorArgs>),
}

/// Flags of `binauthz-operator crd`.
#[derive(clap::Args, Debug)]
struct CrdArgs {
    /// Print only the CRD of this name, e.g. `binauthzexceptions.binauthz.dev`.
    name: Option<String>,
    /// Write one file per CRD into this directory (`{plural}.{group}.yaml`, as crds/
    /// holds them) instead of printing them.
    #[arg(long, env = "BINAUTHZ_CRD_DIR", value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Installed as `kubectl-binauthz` (a symlink or copy on PATH), the binary is the
    // kubectl plugin: `kubectl binauthz status` runs it with `status`.
    if binauthz_operator::kubectl::invoked_as_plugin(std::env::args_os().next().as_deref()) {
        let plugin = binauthz_operator::kubectl::PluginCli::parse();
        return exit(run_kubectl(plugin.args).await);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd(args) => print_crd(args),
        Command::Controller(args) => run_controller(*args).await,
        Command::Check(args) => {
            init_stderr_logs();
            binauthz_operator::check::check(*args)
                .await
                .map(|verdict| ExitCode::from(verdict.exit_code()))
                .map_err(Into::into)
        }
        Command::Validate(args) => binauthz_operator::validate::validate(&args)
            .map(|_| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Kubectl(args) => run_kubectl(*args).await,
        #[cfg(feature = "emulator")]
        Command::Emulator(args) => cloudrun_emulator::run(*args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    exit(result)
}

/// The exit code of a command; an error is printed as one line first.
fn exit(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

async fn run_kubectl(args: binauthz_operator::kubectl::KubectlArgs) -> anyhow::Result<ExitCode> {
    binauthz_operator::kubectl::kubectl(args).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_crd(args: CrdArgs) -> anyhow::Result<ExitCode> {
    let CrdArgs { name, dir } = args;
    if let Some(dir) = dir {
        for (file, yaml) in binauthz_operator::api::crd_files()? {
            let path = dir.join(file);
            std::fs::write(&path, yaml)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(yaml) = binauthz_operator::api::crds_yaml(name.as_deref())? else {
        let known: Vec<String> = binauthz_operator::api::crds()
            .into_iter()
            .filter_map(|c| c.metadata.name)
            .collect();
        anyhow::bail!(
            "no CRD named {:?}: the operator's CRDs are {}",
            name.unwrap_or_default(),
            known.join(", ")
        );
    };
    let mut out = std::io::stdout().lock();
    out.write_all(yaml.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

async fn run_controller(
    args: binauthz_operator::controller::ControllerArgs,
) -> anyhow::Result<ExitCode> {
    binauthz_operator::telemetry::init_tracing(args.log_format)?;
    binauthz_operator::controller::run(args).await?;
    Ok(ExitCode::SUCCESS)
}

/// Errors on stderr (RUST_LOG overrides, e.g. `RUST_LOG=info` shows retries), keeping
/// stdout for the report: the report itself says what failed.
fn init_stderr_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
