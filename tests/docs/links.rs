//! Links and section references: every relative link resolves, every anchor names a heading, every `see *Section*` names a heading.

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use crate::markdown::{
    anchors, is_external, links, outside_fences, slug, without_code_spans, Link,
};
use crate::{documents, repo};

/// `path` with `.` and `..` folded away (without touching the file system); `None` when it
/// climbs above its first component.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// Every broken link of the documents under `root`, one line each:
/// `FILE:LINE: TARGET: what is wrong`. Also returns how many links were checked.
pub(crate) fn broken_links(root: &Path) -> (Vec<String>, usize) {
    let mut broken = Vec::new();
    let mut checked = 0;
    for document in documents(root) {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("reading {}: {e}", document.display()));
        let shown = document
            .strip_prefix(root)
            .unwrap_or(&document)
            .display()
            .to_string();
        let dir = document.parent().unwrap_or(root);
        for Link { line, target } in links(&text) {
            if target.is_empty() || is_external(&target) {
                continue;
            }
            checked += 1;
            let mut problem =
                |what: String| broken.push(format!("{shown}:{line}: {target}: {what}"));
            let (path_part, anchor) = match target.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (target.as_str(), None),
            };
            let path_part = path_part.split('?').next().unwrap_or_default();
            let file = if path_part.is_empty() {
                document.clone()
            } else if let Some(from_root) = path_part.strip_prefix('/') {
                root.join(from_root)
            } else {
                dir.join(path_part)
            };
            let Some(file) = normalize(&file).filter(|f| f.starts_with(root)) else {
                problem("points outside the repository".to_owned());
                continue;
            };
            if !file.exists() {
                let relative = file
                    .strip_prefix(root)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                problem(format!(
                    "no such file ({relative}; a link is relative to the document that holds it)"
                ));
                continue;
            }
            let Some(anchor) = anchor.filter(|a| !a.is_empty()) else {
                continue;
            };
            if file.extension().is_some_and(|e| e == "md") {
                let text = std::fs::read_to_string(&file)
                    .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
                if !anchors(&text).contains(anchor) {
                    problem(format!("no heading with the anchor #{anchor}"));
                }
            }
        }
    }
    (broken, checked)
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = repo();
    let (broken, checked) = broken_links(&root);
    assert!(
        broken.is_empty(),
        "{} broken link(s) in the documentation:\n{}",
        broken.len(),
        broken.join("\n")
    );
    // README.md alone links a dozen documents; far fewer means the scanner went blind.
    assert!(checked >= 20, "only {checked} relative links found");
}

#[test]
fn a_missing_file_a_missing_heading_and_a_link_outside_the_repository_are_reported() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir
        .path()
        .canonicalize()
        .expect("canonical temporary directory");
    std::fs::create_dir_all(root.join("docs/bench")).expect("docs/bench");
    std::fs::write(root.join("BENCHMARKS.md"), "# Benchmarks\n").expect("BENCHMARKS.md");
    std::fs::write(root.join("docs/bench/figure.svg"), "<svg/>").expect("figure");
    std::fs::write(
        root.join("README.md"),
        "# Read me\n\n## Two replicas (leader election)\n\n\
         [ok](#two-replicas-leader-election) [ok](docs/guide.md#the-check-command)\n\
         [gone](#leader-election) `[code](nowhere.md)` [web](https://example.com/x.md)\n\
         ```\n[fenced](nowhere.md)\n```\n",
    )
    .expect("README.md");
    std::fs::write(
        root.join("docs/guide.md"),
        "## The `check` command\n\n[wrong base](BENCHMARKS.md) [right](../BENCHMARKS.md#benchmarks)\n\
         ![figure](docs/bench/figure.svg) ![figure](bench/figure.svg)\n\
         [outside](../../shared/DESIGN.md)\n",
    )
    .expect("docs/guide.md");

    let (broken, checked) = broken_links(&root);
    assert_eq!(
        broken,
        [
            "README.md:6: #leader-election: no heading with the anchor #leader-election",
            "docs/guide.md:3: BENCHMARKS.md: no such file (docs/BENCHMARKS.md; a link is relative to the document that holds it)",
            "docs/guide.md:4: docs/bench/figure.svg: no such file (docs/docs/bench/figure.svg; a link is relative to the document that holds it)",
            "docs/guide.md:5: ../../shared/DESIGN.md: points outside the repository",
        ]
    );
    assert_eq!(checked, 8);
}

#[test]
fn anchors_follow_githubs_slug_rules() {
    let text = "# Binauthz operator\n## Two replicas (leader election)\n## The `check` command\n\
                ### kube-apiserver restarted under the operator\n## Flags\n## Flags\n\
                ## snake_case and 3.5 ways — done!\n## See [the planner](docs/planner.md)\n\
                ```\n## not a heading\n```\n#not-a-heading\n";
    let expected: BTreeSet<String> = [
        "binauthz-operator",
        "two-replicas-leader-election",
        "the-check-command",
        "kube-apiserver-restarted-under-the-operator",
        "flags",
        "flags-1",
        "snake_case-and-35-ways--done",
        "see-the-planner",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(anchors(text), expected);
}

/// Every `see *Section*` in the prose of the documents under `root` whose section is not a
/// heading of the same document, one line each: `FILE:LINE: *Section*`.
pub(crate) fn dangling_section_references(root: &Path) -> Vec<String> {
    let mut dangling = Vec::new();
    for document in documents(root) {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("reading {}: {e}", document.display()));
        let shown = document
            .strip_prefix(root)
            .unwrap_or(&document)
            .display()
            .to_string();
        let known = anchors(&text);
        for (line, raw) in outside_fences(&text) {
            let prose = without_code_spans(raw);
            let lower = prose.to_lowercase();
            let mut from = 0;
            while let Some(at) = lower[from..].find("see *") {
                let start = from + at + "see *".len();
                let Some(len) = prose[start..].find('*') else {
                    break;
                };
                let title = &prose[start..start + len];
                if !title.is_empty() && !known.contains(&slug(title)) {
                    dangling.push(format!("{shown}:{line}: *{title}*"));
                }
                from = start + len + 1;
            }
        }
    }
    dangling
}

#[test]
fn prose_refers_only_to_sections_that_exist() {
    let dangling = dangling_section_references(&repo());
    assert!(
        dangling.is_empty(),
        "sections referred to that no heading of the document has (link the section instead):\n{}",
        dangling.join("\n")
    );
}
