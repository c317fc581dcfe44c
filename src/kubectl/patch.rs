//! The plugin's writes: `reconcile` (the reconcile-now annotation, and waiting for the controller's echo) and `suspend`/`resume` (`spec.suspend` alone), each a JSON merge patch that touches nothing else.

use std::io::Write;
use std::time::{Duration, Instant};

use kube::api::{Patch, PatchParams};
use serde_json::json;

use crate::api::{BinAuthzBinding, RECONCILE_REQUESTED_AT};

use super::cluster::{Action, Cluster};
use super::{KubectlError, ReconcileArgs, FIELD_MANAGER};

/// How often `reconcile --wait` reads the binding.
const POLL_EVERY: Duration = Duration::from_millis(500);

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

/// The merge patch asking for a pass: the annotation alone, set to `value`.
pub fn reconcile_patch(value: &str) -> serde_json::Value {
    json!({ "metadata": { "annotations": { RECONCILE_REQUESTED_AT: value } } })
}

/// The merge patch of `spec.suspend` alone.
pub fn suspend_patch(suspend: bool) -> serde_json::Value {
    json!({ "spec": { "suspend": suspend } })
}

fn say(line: &str) -> Result<(), KubectlError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| KubectlError::Output(e.to_string()))
}

/// Sets the reconcile-now annotation to the current time (a new value each time, so each
/// call asks again); with `--wait`, waits until `status.lastHandledReconcileAt` echoes it.
pub(super) async fn reconcile(cluster: &Cluster, args: &ReconcileArgs) -> Result<(), KubectlError> {
    let ReconcileArgs {
        binding: name,
        wait,
        timeout,
    } = args;
    let api = cluster.bindings_here();
    let namespace = cluster.binding_namespace();
    // Nanoseconds: two requests in one second are still two requests.
    let value = jiff::Timestamp::now().to_string();
    if let Err(err) = api
        .patch(name, &params(), &Patch::Merge(reconcile_patch(&value)))
        .await
    {
        return Err(cluster.error(err, Action::Patch, Some(name)).await);
    }
    if !wait {
        return say(&format!(
            "binding {namespace}/{name}: reconcile requested ({RECONCILE_REQUESTED_AT}={value})"
        ));
    }
    let started = Instant::now();
    loop {
        let binding = match api.get(name).await {
            Ok(b) => b,
            Err(err) => return Err(cluster.error(err, Action::Get, Some(name)).await),
        };
        if handled(&binding, &value) {
            return say(&format!(
                "binding {namespace}/{name}: reconciled in {:.1}s; {}",
                started.elapsed().as_secs_f64(),
                ready_line(&binding)
            ));
        }
        if started.elapsed() >= *timeout {
            return Err(KubectlError::WaitTimeout {
                namespace: namespace.to_owned(),
                name: name.clone(),
                waited: format!("{timeout:?}"),
            });
        }
        tokio::time::sleep(POLL_EVERY.min(timeout.saturating_sub(started.elapsed()))).await;
    }
}

/// Whether the binding's status echoes the reconcile request `value`.
pub fn handled(binding: &BinAuthzBinding, value: &str) -> bool {
    binding
        .status
        .as_ref()
        .and_then(|s| s.last_handled_reconcile_at.as_deref())
        == Some(value)
}

/// `Ready=True (Compliant): 12/12 targets comply`, or for a suspended binding (no Ready)
/// `Reconciling=False (Suspended): ...`.
fn ready_line(binding: &BinAuthzBinding) -> String {
    let conditions = binding
        .status
        .as_ref()
        .map_or(&[][..], |s| &s.conditions[..]);
    match crate::plan::standing(conditions) {
        Some(c) => format!("{}={} ({}): {}", c.type_, c.status, c.reason, c.message),
        None => "no Ready condition yet".to_owned(),
    }
}

/// Sets `spec.suspend` (reading the binding first: a binding already in that state is
/// left alone and said so).
pub(super) async fn set_suspend(
    cluster: &Cluster,
    name: &str,
    suspend: bool,
) -> Result<(), KubectlError> {
    let api = cluster.bindings_here();
    let namespace = cluster.binding_namespace();
    let current = match api.get(name).await {
        Ok(b) => b,
        Err(err) => return Err(cluster.error(err, Action::Get, Some(name)).await),
    };
    let (done, already) = if suspend {
        ("suspended", "already suspended")
    } else {
        ("resumed", "not suspended")
    };
    if current.spec.suspend == suspend {
        return say(&format!(
            "binding {namespace}/{name}: {already}; nothing changed"
        ));
    }
    if let Err(err) = api
        .patch(name, &params(), &Patch::Merge(suspend_patch(suspend)))
        .await
    {
        return Err(cluster.error(err, Action::Patch, Some(name)).await);
    }
    let what = if suspend {
        "no Cloud Run calls until `kubectl binauthz resume`"
    } else {
        "its next pass starts now"
    };
    say(&format!(
        "binding {namespace}/{name} {done} (spec.suspend={suspend}): {what}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patches_carry_one_field_each() {
        assert_eq!(
            reconcile_patch("2026-12-02T12:00:00Z"),
            json!({"metadata": {"annotations": {"binauthz.dev/reconcile-requested-at": "2026-12-02T12:00:00Z"}}})
        );
        assert_eq!(suspend_patch(true), json!({"spec": {"suspend": true}}));
        assert_eq!(suspend_patch(false), json!({"spec": {"suspend": false}}));
    }

    #[test]
    fn handled_compares_the_echo_with_the_request() {
        let mut b = crate::testing::binding("web", json!({}));
        assert!(!handled(&b, "t1"));
        b.status = Some(crate::api::BinAuthzBindingStatus {
            last_handled_reconcile_at: Some("t0".into()),
            ..Default::default()
        });
        assert!(!handled(&b, "t1"));
        assert!(handled(&b, "t0"));
        assert_eq!(ready_line(&b), "no Ready condition yet");
    }

    #[test]
    fn a_suspended_binding_without_ready_is_explained_by_reconciling() {
        let mut b = crate::testing::binding("web", json!({"suspend": true}));
        let reconciling: crate::api::Condition = serde_json::from_value(json!({
            "type": "Reconciling",
            "status": "False",
            "reason": "Suspended",
            "message": "spec.suspend is true",
            "lastTransitionTime": "2026-12-02T10:00:00Z",
        }))
        .unwrap();
        b.status = Some(crate::api::BinAuthzBindingStatus {
            conditions: vec![reconciling],
            ..Default::default()
        });
        assert_eq!(
            ready_line(&b),
            "Reconciling=False (Suspended): spec.suspend is true"
        );
    }
}
