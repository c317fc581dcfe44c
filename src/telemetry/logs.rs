//! Logs: the global tracing subscriber, as text or JSON lines on stderr.

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use super::TelemetryError;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One JSON object per line, for log pipelines.
    Json,
    /// Human-readable lines.
    #[default]
    Text,
}

/// Installs the global tracing subscriber: `RUST_LOG` filter (default `info`), text or
/// JSON lines on stderr.
///
/// # Errors
/// An invalid `RUST_LOG`, or a subscriber already installed.
pub fn init_tracing(format: LogFormat) -> Result<(), TelemetryError> {
    let filter = match std::env::var(EnvFilter::DEFAULT_ENV) {
        Ok(value) if !value.trim().is_empty() => {
            EnvFilter::try_new(value).map_err(|e| TelemetryError::Filter(e.to_string()))?
        }
        _ => EnvFilter::new("info"),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => registry
            .with(fmt.json().flatten_event(true).with_current_span(true))
            .try_init(),
        LogFormat::Text => registry.with(fmt).try_init(),
    }
    .map_err(|e| TelemetryError::AlreadyInitialised(e.to_string()))
}
