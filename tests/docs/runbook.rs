//! Every alert of deploy/monitoring/alerts.rules.yaml links its own section of
//! docs/runbook.md, every runbook section is an alert's, and the README's alert table lists
//! exactly the alerts of the rules file.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::markdown::{anchors, cells, headings, section};
use crate::repo;

const BASE: &str = "https://binauthz.dev/docs/runbook";

fn alerts() -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("deploy/monitoring/alerts.rules.yaml"))
        .expect("deploy/monitoring/alerts.rules.yaml");
    let rules: Value = serde_yaml_ng::from_str(&text).expect("the rules file is YAML");
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .filter(|r| r.get("alert").is_some())
        .collect()
}

#[test]
fn every_alert_links_its_runbook_section_and_every_section_is_an_alerts() {
    let runbook = std::fs::read_to_string(repo().join("docs/runbook.md")).expect("docs/runbook.md");
    let sections = anchors(&runbook);
    let alerts = alerts();
    assert!(alerts.len() >= 10, "the rules file's alerts: {alerts:?}");
    let mut names = BTreeSet::new();
    for alert in &alerts {
        let name = alert["alert"].as_str().expect("alert name");
        names.insert(name.to_owned());
        let url = alert["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = url
            .strip_prefix(BASE)
            .and_then(|rest| rest.strip_prefix('#'))
            .unwrap_or_else(|| panic!("{name}: runbook_url {url:?} is not {BASE}#<section>"));
        assert_eq!(
            anchor,
            name.to_lowercase(),
            "{name}: runbook_url names another section"
        );
        assert!(
            sections.contains(anchor),
            "{name}: docs/runbook.md has no section #{anchor}"
        );
        let body = section(&runbook, anchor).unwrap_or_default();
        for part in ["**Meaning.**", "**Impact.**", "**Diagnose.**", "**Fix.**"] {
            assert!(
                body.contains(part),
                "{name}: its runbook section lacks {part}"
            );
        }
        for key in ["summary", "description"] {
            assert!(
                alert["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "{name}: no {key} annotation"
            );
        }
        assert!(
            alert["labels"]["severity"].is_string(),
            "{name}: no severity label"
        );
    }
    let documented: BTreeSet<String> = headings(&runbook)
        .into_iter()
        .filter(|(_, level, _)| *level == 2)
        .map(|(_, _, slug)| slug)
        .collect();
    let slugs: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(
        documented, slugs,
        "docs/runbook.md's sections and the alerts differ"
    );

    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let table: BTreeSet<String> = readme
        .lines()
        .filter(|l| l.starts_with("| `BinAuthz"))
        .filter_map(|l| cells(l).get(1).map(|c| c.trim_matches('`').to_owned()))
        .collect();
    assert_eq!(
        table, names,
        "README's alert table and the rules file differ"
    );
}
