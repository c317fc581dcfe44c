//! Permission tables: each one in the docs equals deploy/rbac.yaml.

use std::collections::BTreeSet;
use std::path::Path;

use crate::markdown::{cells, code_words};
use crate::{documents, repo};

/// One grant of a role: where, on what, which verbs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    /// `cluster`, or the namespace of a Role.
    scope: String,
    /// `resource.group` (`resource` for the core group), `/subresource` appended.
    resource: String,
    /// `resourceNames`; empty: every name.
    names: BTreeSet<String>,
    verbs: BTreeSet<String>,
}

/// The grants of deploy/rbac.yaml (a Role without a namespace is in the kustomization's).
fn rbac_grants(root: &Path) -> Vec<Grant> {
    use serde::Deserialize;
    let read = |path: &str| {
        std::fs::read_to_string(root.join(path)).unwrap_or_else(|e| panic!("reading {path}: {e}"))
    };
    let kustomization: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&read("deploy/kustomization.yaml")).expect("kustomization.yaml");
    let default_namespace = kustomization["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_owned();
    let strings = |v: &serde_yaml_ng::Value| -> Vec<String> {
        v.as_sequence()
            .map(|s| {
                s.iter()
                    .filter_map(|x| x.as_str())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut grants = Vec::new();
    let text = read("deploy/rbac.yaml");
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let doc = serde_yaml_ng::Value::deserialize(document).expect("rbac.yaml parses");
        let scope = match doc["kind"].as_str() {
            Some("ClusterRole") => "cluster".to_owned(),
            Some("Role") => doc["metadata"]["namespace"]
                .as_str()
                .map_or(default_namespace.clone(), str::to_owned),
            _ => continue,
        };
        for rule in doc["rules"].as_sequence().expect("rules") {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    let (plural, sub) = match resource.split_once('/') {
                        Some((p, s)) => (p.to_owned(), format!("/{s}")),
                        None => (resource.clone(), String::new()),
                    };
                    let qualified = if group.is_empty() {
                        plural
                    } else {
                        format!("{plural}.{group}")
                    };
                    grants.push(Grant {
                        scope: scope.clone(),
                        resource: format!("{qualified}{sub}"),
                        names: strings(&rule["resourceNames"]).into_iter().collect(),
                        verbs: strings(&rule["verbs"]).into_iter().collect(),
                    });
                }
            }
        }
    }
    grants.sort();
    grants
}

/// Every permission table (header `| scope | resource | verbs | why |`) of a document, as
/// (line of the header, grants). Scope cell: `cluster` or a backticked namespace; resource
/// cell: a backticked `resource.group[/subresource]`, then `only` and backticked names.
fn permission_tables(text: &str) -> Vec<(usize, Vec<Grant>)> {
    let mut tables = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.replace(' ', "") != "|scope|resource|verbs|why|" {
            continue;
        }
        let mut grants = Vec::new();
        for row in lines[i + 2..].iter().take_while(|l| l.starts_with('|')) {
            let cells = cells(row);
            let scope = if cells[1].starts_with("cluster") {
                "cluster".to_owned()
            } else {
                code_words(&cells[1])
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .to_owned()
            };
            let (resource, names) = match cells[2].as_str().split_once("only") {
                Some((resource, names)) => (resource, code_words(names)),
                None => (cells[2].as_str(), Vec::new()),
            };
            grants.push(Grant {
                scope,
                resource: code_words(resource)
                    .first()
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                names: names.into_iter().map(str::to_owned).collect(),
                verbs: cells[3].split(',').map(|v| v.trim().to_owned()).collect(),
            });
        }
        grants.sort();
        tables.push((i + 1, grants));
    }
    tables
}

#[test]
fn the_permission_tables_of_the_docs_are_deploy_rbac_yaml() {
    let root = repo();
    let rbac = rbac_grants(&root);
    assert!(rbac.len() >= 4, "deploy/rbac.yaml: only {rbac:?}");
    let mut found = 0;
    for document in documents(&root) {
        let text = std::fs::read_to_string(&document).expect("document");
        for (line, grants) in permission_tables(&text) {
            found += 1;
            assert_eq!(
                grants,
                rbac,
                "{}:{line}: the permission table differs from deploy/rbac.yaml",
                document.display()
            );
        }
    }
    // README.md, docs/controller.md and docs/deploy.md each have one.
    assert!(found >= 3, "only {found} permission tables found");
}

#[test]
fn a_permission_table_is_read_as_grants() {
    let text = "| scope | resource | verbs | why |\n|---|---|---|---|\n\
                | cluster | `events.events.k8s.io` | create, patch | events |\n\
                | `ns` (the lease namespace) | `leases.coordination.k8s.io`, only `op` (the lease name) | get, watch | election |\n";
    let grant = |scope: &str, resource: &str, names: &[&str], verbs: &[&str]| Grant {
        scope: scope.to_owned(),
        resource: resource.to_owned(),
        names: names.iter().map(|s| (*s).to_owned()).collect(),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
    };
    assert_eq!(
        permission_tables(text),
        [(
            1,
            vec![
                grant("cluster", "events.events.k8s.io", &[], &["create", "patch"]),
                grant(
                    "ns",
                    "leases.coordination.k8s.io",
                    &["op"],
                    &["get", "watch"]
                ),
            ]
        )]
    );
}
