//! Enum numbers for `$alt=json;enum-encoding=int`: a client asking for them gets the
//! condition enums (state, severity, reasons) of every condition in the answer as numbers.
//!
//! Source: Google's `google/cloud/run/v2/condition.proto` (`Condition.State`,
//! `Condition.Severity`, `Condition.CommonReason`, `Condition.RevisionReason`,
//! `Condition.ExecutionReason`). A name not in these tables is left as it is.

use serde_json::Value;

const STATE: &[(&str, i64)] = &[
    ("STATE_UNSPECIFIED", 0),
    ("CONDITION_PENDING", 1),
    ("CONDITION_RECONCILING", 2),
    ("CONDITION_FAILED", 3),
    ("CONDITION_SUCCEEDED", 4),
];

const SEVERITY: &[(&str, i64)] = &[
    ("SEVERITY_UNSPECIFIED", 0),
    ("ERROR", 1),
    ("WARNING", 2),
    ("INFO", 3),
];

/// `Condition.CommonReason`.
pub const COMMON_REASON: &[(&str, i64)] = &[
    ("COMMON_REASON_UNDEFINED", 0),
    ("UNKNOWN", 1),
    ("REVISION_FAILED", 3),
    ("PROGRESS_DEADLINE_EXCEEDED", 4),
    ("CONTAINER_MISSING", 6),
    ("CONTAINER_PERMISSION_DENIED", 7),
    ("CONTAINER_IMAGE_UNAUTHORIZED", 8),
    ("CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED", 9),
    ("ENCRYPTION_KEY_PERMISSION_DENIED", 10),
    ("ENCRYPTION_KEY_CHECK_FAILED", 11),
    ("SECRETS_ACCESS_CHECK_FAILED", 12),
    ("WAITING_FOR_OPERATION", 13),
    ("IMMEDIATE_RETRY", 14),
    ("POSTPONED_RETRY", 15),
    ("INTERNAL", 16),
];

const REVISION_REASON: &[(&str, i64)] = &[
    ("REVISION_REASON_UNDEFINED", 0),
    ("PENDING", 1),
    ("RESERVE", 2),
    ("RETIRED", 3),
    ("RETIRING", 4),
    ("RECREATING", 5),
    ("HEALTH_CHECK_CONTAINER_ERROR", 6),
    ("CUSTOMIZED_PATH_RESPONSE_PENDING", 7),
    ("MIN_INSTANCES_NOT_PROVISIONED", 8),
    ("ACTIVE_REVISION_LIMIT_REACHED", 9),
    ("NO_DEPLOYMENT", 10),
    ("HEALTH_CHECK_SKIPPED", 11),
    ("MIN_INSTANCES_WARMING", 12),
];

const EXECUTION_REASON: &[(&str, i64)] = &[
    ("EXECUTION_REASON_UNDEFINED", 0),
    ("JOB_STATUS_SERVICE_POLLING_ERROR", 1),
    ("NON_ZERO_EXIT_CODE", 2),
    ("CANCELLED", 3),
    ("CANCELLING", 4),
    ("DELETED", 5),
];

/// Rewrites, anywhere in `value`, the enums of each `conditions[]` entry and
/// `terminalCondition` as numbers.
pub fn to_numbers(value: &mut Value) {
    match value {
        Value::Object(object) => {
            for (key, child) in object.iter_mut() {
                match (key.as_str(), &mut *child) {
                    ("terminalCondition", Value::Object(condition)) => number_condition(condition),
                    ("conditions", Value::Array(conditions)) => {
                        for condition in conditions.iter_mut() {
                            if let Value::Object(condition) = condition {
                                number_condition(condition);
                            }
                        }
                    }
                    _ => to_numbers(child),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(to_numbers),
        _ => {}
    }
}

fn number_condition(condition: &mut serde_json::Map<String, Value>) {
    let tables: [(&str, &[(&str, i64)]); 5] = [
        ("state", STATE),
        ("severity", SEVERITY),
        ("reason", COMMON_REASON),
        ("revisionReason", REVISION_REASON),
        ("executionReason", EXECUTION_REASON),
    ];
    for (field, table) in tables {
        if let Some(Value::String(name)) = condition.get(field) {
            if let Some((_, number)) = table.iter().find(|(n, _)| n == name) {
                condition.insert(field.to_string(), Value::from(*number));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn condition_enums_become_numbers_anywhere() {
        let mut value = json!({"services": [{
            "terminalCondition": {"type": "Ready", "state": "CONDITION_FAILED",
                                  "reason": "CONTAINER_IMAGE_UNAUTHORIZED", "severity": "ERROR"},
            "conditions": [{"type": "RoutesReady", "state": "CONDITION_SUCCEEDED"},
                           {"reason": "CONTAINER_IMAGE_AUTHORIZATION_CHECK_FAILED"}],
            "launchStage": "GA"
        }]});
        to_numbers(&mut value);
        let service = &value["services"][0];
        assert_eq!(service["terminalCondition"]["state"], json!(3));
        assert_eq!(service["terminalCondition"]["reason"], json!(8));
        assert_eq!(service["terminalCondition"]["severity"], json!(1));
        assert_eq!(service["conditions"][0]["state"], json!(4));
        assert_eq!(service["conditions"][1]["reason"], json!(9));
        assert_eq!(service["launchStage"], json!("GA"));
        let number = |name: &str| {
            COMMON_REASON
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
        };
        assert_eq!(number("CONTAINER_MISSING"), Some(6));
        assert_eq!(number("CONTAINER_PERMISSION_DENIED"), Some(7));
    }
}
