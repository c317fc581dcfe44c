//! Writes a binding's status: server-side apply on the status subresource, one field manager, only when it changed.
//!
//! # Contract
//! - One field manager, [`FIELD_MANAGER`], owns the whole status; the apply is forced so
//!   a status left by an older manager (e.g. `kubectl edit`) is taken over, not merged.
//! - A status is written when anything but `lastSyncTime` differs from the stored one, or
//!   when the stored `lastSyncTime` is older than [`HEARTBEAT`] (so a glance at the status
//!   shows the operator is alive). A fleet where nothing moves therefore costs at most one
//!   status write per binding per hour, not one per pass. `lastSyncTime` is the end of
//!   the last pass that wrote the status.
//! - Only the status subresource is written, so status writes never change the
//!   binding's `metadata.generation` and never trigger a pass.

use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::Api;
use serde_json::json;

use crate::api::{BinAuthzBinding, BinAuthzBindingStatus, API_VERSION, KIND};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "binauthz-operator";

/// Longest a status goes without a write while nothing changes.
pub const HEARTBEAT: Duration = Duration::from_secs(3600);

/// Whether `new` must be written over `current`, at time `now`.
pub fn needs_write(
    current: Option<&BinAuthzBindingStatus>,
    new: &BinAuthzBindingStatus,
    now: Timestamp,
) -> bool {
    let Some(current) = current else {
        return true;
    };
    let mut a = current.clone();
    let mut b = new.clone();
    let last_sync = a.last_sync_time.take();
    b.last_sync_time = None;
    if a != b {
        return true;
    }
    if new.last_sync_time.is_none() {
        // Suspended and invalid bindings keep the last pass's time: nothing to refresh.
        return false;
    }
    last_sync
        .and_then(|t| t.parse::<Timestamp>().ok())
        .and_then(|t| Duration::try_from(now.duration_since(t)).ok())
        .is_none_or(|age| age >= HEARTBEAT)
}

/// The server-side apply body: the status and nothing else.
pub fn apply_body(status: &BinAuthzBindingStatus) -> serde_json::Value {
    json!({
        "apiVersion": API_VERSION,
        "kind": KIND,
        "status": status,
    })
}

/// Applies `status` to binding `name` through the status subresource.
///
/// # Errors
/// The API server's refusal (or a transport error).
pub async fn write(
    api: &Api<BinAuthzBinding>,
    name: &str,
    status: &BinAuthzBindingStatus,
) -> Result<(), kube::Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch_status(name, &params, &Patch::Apply(apply_body(status)))
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Summary;

    fn status(sync: &str, matched: u32) -> BinAuthzBindingStatus {
        BinAuthzBindingStatus {
            observed_generation: Some(1),
            last_sync_time: Some(sync.into()),
            summary: Some(Summary {
                matched,
                ..Summary::default()
            }),
            ..BinAuthzBindingStatus::default()
        }
    }

    #[test]
    fn only_changes_or_an_hour_old_sync_time_cause_a_write() {
        let now: Timestamp = "2026-11-28T10:30:00Z".parse().unwrap();
        let current = status("2026-11-28T10:00:00Z", 3);
        assert!(needs_write(None, &status("2026-11-28T10:30:00Z", 3), now));
        assert!(!needs_write(
            Some(&current),
            &status("2026-11-28T10:30:00Z", 3),
            now
        ));
        assert!(needs_write(
            Some(&current),
            &status("2026-11-28T10:30:00Z", 4),
            now
        ));
        let later: Timestamp = "2026-11-28T11:00:00Z".parse().unwrap();
        assert!(needs_write(
            Some(&current),
            &status("2026-11-28T11:00:00Z", 3),
            later
        ));
        let mut kept = current.clone();
        kept.last_sync_time = None;
        let mut suspended = current.clone();
        suspended.last_sync_time = None;
        assert!(!needs_write(Some(&kept), &suspended, later));
    }

    #[test]
    fn the_apply_body_carries_only_the_status() {
        let body = apply_body(&status("2026-11-28T10:00:00Z", 2));
        assert_eq!(body["apiVersion"], "binauthz.dev/v1alpha1");
        assert_eq!(body["kind"], "BinAuthzBinding");
        assert_eq!(body["status"]["summary"]["matched"], 2);
        assert_eq!(body.as_object().unwrap().len(), 3);
    }
}
