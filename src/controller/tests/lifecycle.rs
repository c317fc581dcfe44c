//! What starts, stops and shares passes: suspension, reconcile requests, standby, shared
//! lists, and the watch's retries.

use super::*;

#[tokio::test]
async fn a_suspended_binding_makes_no_cloud_run_call() {
    let prod = binding("prod", json!({"suspend": true}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    assert_eq!(h.pass(&prod).await.unwrap(), Action::await_change());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls.len(), 1, "{calls:#?}");
    let message = "spec.suspend is true: the operator makes no Cloud Run calls for this binding";
    assert_eq!(
        status_of(&calls[0]),
        json!({
            "observedGeneration": 1,
            // No Ready: kstatus (Flux) reads the binding as settled, not InProgress for ever.
            "conditions": [
                condition("Reconciling", "False", "Suspended", message),
                condition("Stalled", "False", "Suspended", "nothing needs a human to make progress"),
            ],
            "targetsTruncated": false,
        })
    );
    assert_eq!((counters.reads, counters.writes), (0, 0));
}

#[tokio::test]
async fn a_reconcile_request_reads_cloud_run_afresh() {
    let prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    h.pass(&prod).await.unwrap();
    let calls = h.calls();
    let status = calls
        .iter()
        .rev()
        .find(|c| matches!(c, Call::Status { .. }))
        .unwrap();
    let prod = with_status(&prod, status);
    // Someone clears Binary Authorization within the tick the first pass listed in.
    let name = "projects/acme-prod/locations/us-central1/services/checkout";
    reqwest::Client::new()
        .post(format!("{}/_emulator/drift", h.emulator.url()))
        .json(&json!({"name": name, "binaryAuthorization": null}))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let before = h.emulator.counters(None);
    // A pass on the same tick plans on that tick's list: it cannot see the drift.
    h.pass(&prod).await.unwrap();
    let same_tick = h.emulator.counters(None);
    assert_eq!(
        (same_tick.reads, same_tick.writes),
        (before.reads, before.writes)
    );
    // Asked to reconcile now, it lists again and fixes it.
    let mut asked = prod.clone();
    asked.metadata.annotations = Some(BTreeMap::from([(
        crate::api::RECONCILE_REQUESTED_AT.to_owned(),
        "after-the-drift".to_owned(),
    )]));
    h.pass(&asked).await.unwrap();
    let (_, counters, _) = h.finish().await;
    assert_eq!(
        (counters.writes, counters.changes),
        (before.writes + 1, before.changes + 1),
        "{counters:?}"
    );
}

#[tokio::test]
async fn a_reconcile_request_starts_a_pass_and_is_echoed_in_the_status() {
    let mut prod = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let annotate = |b: &mut BinAuthzBinding, value: &str| {
        b.metadata.annotations = Some(BTreeMap::from([(
            crate::api::RECONCILE_REQUESTED_AT.to_owned(),
            value.to_owned(),
        )]));
    };
    let plain = prod.clone();
    annotate(&mut prod, "2026-12-02T09:00:00Z");
    // The watch starts a pass on a new annotation value, not on a status change.
    assert_ne!(pass_trigger(&plain), pass_trigger(&prod));
    let mut with_status_only = prod.clone();
    with_status_only.status = Some(Default::default());
    assert_eq!(pass_trigger(&prod), pass_trigger(&with_status_only));

    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::always(),
    )
    .await;
    h.pass(&prod).await.unwrap();
    let calls = h.calls();
    assert_eq!(calls.len(), 1, "{calls:#?}");
    assert_eq!(
        status_of(&calls[0])["lastHandledReconcileAt"],
        json!("2026-12-02T09:00:00Z")
    );
    // Handled: the same value again writes nothing; a new one is echoed.
    let mut written = with_status(&prod, &calls[0]);
    h.pass(&written).await.unwrap();
    assert_eq!(h.calls().len(), 1);
    annotate(&mut written, "again");
    h.pass(&written).await.unwrap();
    let (calls, _, _) = h.finish().await;
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(
        status_of(&calls[1])["lastHandledReconcileAt"],
        json!("again")
    );
}

#[tokio::test]
async fn a_standby_replica_reads_and_writes_nothing() {
    let prod = binding("prod", json!({}));
    let h = harness(
        Faults::default(),
        std::slice::from_ref(&prod),
        LeaderGate::fixed(false),
    )
    .await;
    assert_eq!(h.pass(&prod).await.unwrap(), Action::await_change());
    let (calls, counters, _) = h.finish().await;
    assert_eq!(calls, Vec::<Call>::new());
    assert_eq!((counters.reads, counters.writes), (0, 0));
}

#[tokio::test]
async fn bindings_over_one_project_share_one_list() {
    let a = binding(
        "prod",
        json!({"targets": {"services": {"names": ["checkout"]}}}),
    );
    let b = binding(
        "other",
        json!({"targets": {"services": {"names": ["search"]}}, "mode": "Audit"}),
    );
    let h = harness(
        Faults::default(),
        &[a.clone(), b.clone()],
        LeaderGate::always(),
    )
    .await;
    let (ra, rb) = tokio::join!(h.pass(&a), h.pass(&b));
    ra.unwrap();
    rb.unwrap();
    let (_, counters, _) = h.finish().await;
    let lists: u64 = counters
        .calls
        .iter()
        .filter(|c| c.method == "services.list")
        .map(|c| c.count)
        .sum();
    assert_eq!(lists, 1, "{counters:?}");
}

#[test]
fn the_watch_retries_at_least_every_five_seconds_so_readiness_recovers_within_the_grace() {
    use kube::runtime::utils::Backoff as _;
    let mut backoff = watch_backoff();
    let delays: Vec<Duration> = (&mut backoff).take(12).collect();
    assert!(
        delays[0] >= Duration::from_millis(250) && delays[0] < Duration::from_millis(500),
        "{delays:?}"
    );
    assert!(delays.iter().all(|d| *d <= WATCH_BACKOFF_MAX), "{delays:?}");
    assert!(
        delays[8..].iter().all(|d| *d >= WATCH_BACKOFF_MAX / 2),
        "it grows to the cap: {delays:?}"
    );
    backoff.reset();
    assert!(backoff.next().unwrap() <= Duration::from_millis(500));
    // While the API server is away, an error is reported at least every
    // WATCH_BACKOFF_MAX (plus the failed attempt itself); the grace spans three of them.
    assert!(crate::telemetry::WATCH_ERROR_GRACE >= 3 * WATCH_BACKOFF_MAX);
}
