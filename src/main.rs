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
    /// Print the BinAuthzBinding CustomResourceDefinition as YAML (pipe it to `kubectl apply -f -`).
    Crd,
    /// Serve a local Cloud Run Admin API emulator (seeded from YAML, with fault injection).
    Emulator(Box<binauthz_operator::emulator::EmulatorArgs>),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crd => print_crd(),
        Command::Emulator(args) => binauthz_operator::emulator::run(*args)
            .await
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

fn print_crd() -> anyhow::Result<ExitCode> {
    let yaml = binauthz_operator::api::crd_yaml()?;
    let mut out = std::io::stdout().lock();
    out.write_all(yaml.as_bytes())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
