//! `kubectl binauthz status`: every binding's status in one table — mode, Ready and its reason, targets by state, last pass — and a total line.

use std::io::Write;

use kube::ResourceExt;
use serde::Serialize;

use crate::api::{BinAuthzBinding, Mode, Summary};
use crate::plan::{self, ConditionType};

use super::cluster::Cluster;
use super::output::{age, write_columns};
use super::KubectlError;

/// What `status` prints (`-o json|yaml` prints exactly this).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStatus {
    /// Every binding in scope, by namespace and name.
    pub bindings: Vec<StatusRow>,
    /// The sums over them.
    pub total: StatusTotal,
}

/// What the plugin shows of a binding as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RunMode {
    /// Fixes drift.
    Enforce,
    /// Only reports drift.
    Audit,
    /// `spec.suspend: true`: no Cloud Run calls.
    Suspended,
}

/// One binding's line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusRow {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// `spec.project`.
    pub project: String,
    /// Enforce, Audit, or Suspended (`spec.suspend` wins over `spec.mode`).
    pub mode: RunMode,
    /// The Ready condition's status: `True`, `False` or `Unknown`; absent before the first
    /// pass and while the binding is suspended (a suspended binding carries no Ready
    /// condition, so that Flux reads it as settled).
    pub ready: Option<String>,
    /// The Ready condition's reason (for a suspended binding, the Reconciling condition's:
    /// `Suspended`); `Pending` while the status does not describe the current generation
    /// yet (no pass since the spec changed).
    pub reason: String,
    /// That condition's message.
    pub message: String,
    /// Whether the status describes the current generation.
    pub up_to_date: bool,
    /// Counts of matched resources by state (zeros before the first pass).
    pub summary: Summary,
    /// When a pass last confirmed the status (`status.lastSyncTime`, RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

/// The sums over every binding.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusTotal {
    /// How many bindings.
    pub bindings: usize,
    /// How many of them are Ready=True and up to date.
    pub ready: usize,
    /// Counts of matched resources by state, summed over bindings (a resource matched
    /// by two bindings counts in each: as owned in one, Superseded in the other).
    pub summary: Summary,
}

/// Reads every binding in scope and summarises them.
pub(super) async fn fleet_status(cluster: &Cluster) -> Result<FleetStatus, KubectlError> {
    let mut bindings = cluster.list_bindings().await?;
    bindings.sort_by_key(|b| (b.namespace().unwrap_or_default(), b.name_any()));
    Ok(summarise(&bindings))
}

/// The fleet status of `bindings`, in their order.
pub fn summarise(bindings: &[BinAuthzBinding]) -> FleetStatus {
    let rows: Vec<StatusRow> = bindings.iter().map(row).collect();
    let total = StatusTotal {
        bindings: rows.len(),
        ready: rows
            .iter()
            .filter(|r| r.up_to_date && r.ready.as_deref() == Some("True"))
            .count(),
        summary: rows.iter().map(|r| &r.summary).sum(),
    };
    FleetStatus {
        bindings: rows,
        total,
    }
}

fn row(binding: &BinAuthzBinding) -> StatusRow {
    let status = binding.status.as_ref();
    let conditions = status.map_or(&[][..], |s| &s.conditions[..]);
    let ready = plan::condition(conditions, ConditionType::Ready);
    let explained = plan::standing(conditions);
    let up_to_date = status
        .and_then(|s| s.observed_generation)
        .is_some_and(|g| Some(g) == binding.metadata.generation);
    let reason = match explained {
        Some(c) if up_to_date => c.reason.clone(),
        _ => "Pending".to_owned(),
    };
    StatusRow {
        namespace: binding.namespace().unwrap_or_default(),
        name: binding.name_any(),
        project: binding.spec.project.clone(),
        mode: match (binding.spec.suspend, binding.spec.mode) {
            (true, _) => RunMode::Suspended,
            (false, Mode::Enforce) => RunMode::Enforce,
            (false, Mode::Audit) => RunMode::Audit,
        },
        ready: ready.map(|c| c.status.clone()),
        reason,
        message: explained.map(|c| c.message.clone()).unwrap_or_default(),
        up_to_date,
        summary: status.and_then(|s| s.summary).unwrap_or_default(),
        last_sync_time: status.and_then(|s| s.last_sync_time.clone()),
    }
}

const HEADER: [&str; 17] = [
    "NAMESPACE",
    "NAME",
    "PROJECT",
    "MODE",
    "READY",
    "REASON",
    "MATCHED",
    "COMPLIANT",
    "REMEDIATED",
    "DRIFTED",
    "BREAKGLASS",
    "SUPERSEDED",
    "CONFLICTED",
    "FAILED",
    "BLOCKED",
    "NOT EFFECTIVE",
    "LAST PASS",
];

fn counts(s: &Summary) -> [String; 10] {
    [
        s.matched,
        s.compliant,
        s.remediated,
        s.drifted,
        s.breakglass,
        s.superseded,
        s.conflicted,
        s.failed,
        s.deploy_blocked,
        s.not_effective,
    ]
    .map(|n| n.to_string())
}

/// The table: a header, a line per binding, and a TOTAL line.
pub(super) fn write_table(fleet: &FleetStatus, out: &mut dyn Write) -> std::io::Result<()> {
    write_table_at(fleet, out, jiff::Timestamp::now())
}

fn write_table_at(
    fleet: &FleetStatus,
    out: &mut dyn Write,
    now: jiff::Timestamp,
) -> std::io::Result<()> {
    if fleet.bindings.is_empty() {
        return writeln!(out, "No BinAuthzBindings found.");
    }
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
    for b in &fleet.bindings {
        let mut row = vec![
            b.namespace.clone(),
            b.name.clone(),
            b.project.clone(),
            format!("{:?}", b.mode),
            b.ready.clone().unwrap_or_else(|| "-".to_owned()),
            b.reason.clone(),
        ];
        row.extend(counts(&b.summary));
        row.push(age(b.last_sync_time.as_deref(), now));
        rows.push(row);
    }
    let t = &fleet.total;
    let mut total = vec![
        "TOTAL".to_owned(),
        format!("{} bindings", t.bindings),
        String::new(),
        String::new(),
        format!("{}/{}", t.ready, t.bindings),
        String::new(),
    ];
    total.extend(counts(&t.summary));
    total.push(String::new());
    rows.push(total);
    write_columns(out, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The shared test binding (namespace `team`) at generation 2, with these spec
    /// overrides and, when given, this status.
    fn binding(
        name: &str,
        spec: serde_json::Value,
        status: Option<serde_json::Value>,
    ) -> BinAuthzBinding {
        let mut b = crate::testing::binding(name, spec);
        b.metadata.generation = Some(2);
        b.status = status.map(|s| serde_json::from_value(s).unwrap());
        b
    }

    fn ready(
        reason: &str,
        status: &str,
        generation: i64,
        summary: serde_json::Value,
    ) -> serde_json::Value {
        json!({
            "observedGeneration": generation,
            "lastSyncTime": "2026-12-02T11:55:00Z",
            "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "m", "lastTransitionTime": "2026-12-02T11:00:00Z"}],
            "summary": summary,
        })
    }

    fn summary(matched: u32, compliant: u32, drifted: u32) -> serde_json::Value {
        json!({"matched": matched, "compliant": compliant, "remediated": 0, "drifted": drifted,
               "breakglass": 0, "superseded": 0, "conflicted": 0, "failed": 0, "deployBlocked": 0})
    }

    #[test]
    fn rows_total_and_table() {
        let bindings = [
            binding(
                "a-web",
                json!({}),
                Some(ready("Compliant", "True", 2, summary(3, 3, 0))),
            ),
            binding(
                "b-audit",
                json!({"mode": "Audit"}),
                Some(ready("Drifted", "False", 2, summary(2, 1, 1))),
            ),
            binding(
                "c-paused",
                json!({"suspend": true}),
                Some(ready("Compliant", "True", 1, summary(1, 1, 0))),
            ),
            binding("d-new", json!({}), None),
        ];
        let fleet = summarise(&bindings);
        let modes: Vec<RunMode> = fleet.bindings.iter().map(|b| b.mode).collect();
        assert_eq!(
            modes,
            [
                RunMode::Enforce,
                RunMode::Audit,
                RunMode::Suspended,
                RunMode::Enforce
            ]
        );
        // The suspended binding's status is from before the suspend: Pending, not Ready.
        let reasons: Vec<&str> = fleet.bindings.iter().map(|b| b.reason.as_str()).collect();
        assert_eq!(reasons, ["Compliant", "Drifted", "Pending", "Pending"]);
        assert_eq!(fleet.bindings[3].ready, None);
        assert_eq!(fleet.total.bindings, 4);
        assert_eq!(fleet.total.ready, 1);
        assert_eq!(fleet.total.summary.matched, 6);
        assert_eq!(fleet.total.summary.compliant, 5);
        assert_eq!(fleet.total.summary.drifted, 1);

        let mut out = Vec::new();
        let now: jiff::Timestamp = "2026-12-02T12:00:00Z".parse().unwrap();
        write_table_at(&fleet, &mut out, now).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 6, "{text}");
        assert!(lines[0].starts_with("NAMESPACE   NAME"), "{text}");
        let cells = |l: &str| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            cells(lines[2]),
            [
                "team",
                "b-audit",
                "acme-prod",
                "Audit",
                "False",
                "Drifted",
                "2",
                "1",
                "0",
                "1",
                "0",
                "0",
                "0",
                "0",
                "0",
                "0",
                "5m"
            ]
        );
        assert_eq!(
            cells(lines[5]),
            ["TOTAL", "4", "bindings", "1/4", "6", "5", "0", "1", "0", "0", "0", "0", "0", "0"]
        );
        let json = serde_json::to_value(&fleet).unwrap();
        assert_eq!(json["bindings"][1]["mode"], "Audit");
        assert_eq!(json["bindings"][1]["summary"]["deployBlocked"], 0);
        assert_eq!(json["total"]["ready"], 1);
    }

    #[test]
    fn a_suspended_binding_has_no_ready_and_reconciling_says_why() {
        let status = json!({
            "observedGeneration": 2,
            "conditions": [
                {"type": "Reconciling", "status": "False", "reason": "Suspended", "message": "suspended: no Cloud Run calls", "lastTransitionTime": "2026-12-02T11:00:00Z"},
                {"type": "Stalled", "status": "False", "reason": "Suspended", "message": "", "lastTransitionTime": "2026-12-02T11:00:00Z"}
            ]
        });
        let fleet = summarise(&[binding("paused", json!({"suspend": true}), Some(status))]);
        let row = &fleet.bindings[0];
        assert_eq!(row.mode, RunMode::Suspended);
        assert_eq!(row.ready, None);
        assert_eq!(row.reason, "Suspended");
        assert_eq!(row.message, "suspended: no Cloud Run calls");
        assert!(row.up_to_date);
        assert_eq!(fleet.total.ready, 0);
        let mut out = Vec::new();
        write_table_at(&fleet, &mut out, jiff::Timestamp::now()).unwrap();
        let text = String::from_utf8(out).unwrap();
        let cells: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            cells[..6],
            ["team", "paused", "acme-prod", "Suspended", "-", "Suspended"]
        );
    }

    #[test]
    fn an_empty_fleet_says_so() {
        let mut out = Vec::new();
        write_table_at(&summarise(&[]), &mut out, jiff::Timestamp::now()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "No BinAuthzBindings found.\n"
        );
    }
}
