//! `check --emulator` (feature `emulator`): an emulator in this process instead of Cloud
//! Run.

use std::path::Path;

use cloudrun_emulator::{EmulatorConfig, EmulatorHandle, Seed};

use super::CheckError;
use crate::cloudrun::CloudRunConfig;

/// With a seed: an emulator seeded from it, which serves as long as its handle lives, and
/// `config` pointed at it (keeping its rate limits and timeout). Without one: `config` as
/// it is.
pub(super) async fn with_emulator(
    config: CloudRunConfig,
    seed: Option<&Path>,
) -> Result<(CloudRunConfig, Option<EmulatorHandle>), CheckError> {
    let Some(seed) = seed else {
        return Ok((config, None));
    };
    let handle = start(seed).await?;
    let mut embedded = CloudRunConfig::emulator(&handle.url());
    embedded.rate_limits = config.rate_limits;
    embedded.request_timeout = config.request_timeout;
    Ok((embedded, Some(handle)))
}

async fn start(seed: &Path) -> Result<EmulatorHandle, CheckError> {
    let error = |detail: String| CheckError::Emulator {
        seed: seed.display().to_string(),
        detail,
    };
    let seed_state = Seed::from_file(seed).map_err(|e| error(e.to_string()))?;
    let config = EmulatorConfig {
        seed: seed_state,
        ..Default::default()
    };
    cloudrun_emulator::start(config)
        .await
        .map_err(|e| error(e.to_string()))
}
