//! The repository's documentation links: every relative link and image in README.md, the
//! other Markdown files at the root and docs/**/*.md points at a file of this repository,
//! and every `#anchor` into a Markdown file names one of its headings (GitHub's slugs).
//! Prose never refers to a section that does not exist (`see *Heading*`). Repository paths
//! cited in source comments and in the docs' code spans exist. The permission tables of the
//! docs equal deploy/rbac.yaml, and the README's CLI reference equals the binary's flags.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every other `*.md` at the root, and every `*.md` under docs/, sorted.
fn documents(root: &Path) -> Vec<PathBuf> {
    fn markdown_in(dir: &Path, recurse: bool, found: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                if recurse {
                    markdown_in(&path, true, found);
                }
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
    }
    let mut found = Vec::new();
    markdown_in(root, false, &mut found);
    let docs = root.join("docs");
    if docs.is_dir() {
        markdown_in(&docs, true, &mut found);
    }
    found.sort();
    found
}

/// A link found in a document.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// The lines outside fenced code blocks, numbered from 1.
fn outside_fences(text: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<(char, usize)> = None;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        match (fence, marker) {
            (Some((open, len)), Some(m))
                if m == open && run >= len && trimmed[run..].trim().is_empty() =>
            {
                fence = None;
            }
            (Some(_), _) => {}
            (None, Some(m)) if run >= 3 => fence = Some((m, run)),
            (None, _) => lines.push((i + 1, line)),
        }
    }
    lines
}

/// `line` with every inline code span (`` `...` ``, ``` ``...`` ```) removed.
fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find('`') {
        out.push_str(&rest[..start]);
        let ticks = rest[start..].chars().take_while(|c| *c == '`').count();
        let after = &rest[start + ticks..];
        let closing = "`".repeat(ticks);
        match after.find(&closing) {
            Some(end) => rest = &after[end + ticks..],
            None => {
                // An unmatched run of backticks is literal text.
                out.push_str(&rest[start..start + ticks]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// Inline links and images (`[text](target "title")`), reference definitions
/// (`[label]: target`) and HTML `href`/`src` attributes.
fn links(text: &str) -> Vec<Link> {
    let mut found = Vec::new();
    for (line, raw) in outside_fences(text) {
        let prose = without_code_spans(raw);
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            // The destination ends at the `)` that balances the `(`.
            let mut depth = 0usize;
            let end = after
                .char_indices()
                .find(|&(_, c)| match c {
                    '(' => {
                        depth += 1;
                        false
                    }
                    ')' if depth == 0 => true,
                    ')' => {
                        depth -= 1;
                        false
                    }
                    _ => false,
                })
                .map_or(after.len(), |(i, _)| i);
            let inside = after[..end].trim();
            let target = match inside.strip_prefix('<') {
                Some(angled) => angled.split('>').next().unwrap_or_default(),
                None => inside.split_whitespace().next().unwrap_or_default(),
            };
            found.push(Link {
                line,
                target: target.to_owned(),
            });
            rest = &after[end..];
        }
        let trimmed = prose.trim_start();
        if prose.len() - trimmed.len() <= 3 && trimmed.starts_with('[') {
            if let Some((label, target)) = trimmed[1..].split_once("]:") {
                if !label.is_empty() && !label.contains(']') {
                    let target = target.split_whitespace().next().unwrap_or_default();
                    let target = target.trim_start_matches('<').trim_end_matches('>');
                    found.push(Link {
                        line,
                        target: target.to_owned(),
                    });
                }
            }
        }
        for attribute in ["href=\"", "src=\""] {
            let mut rest = prose.as_str();
            while let Some(at) = rest.find(attribute) {
                let after = &rest[at + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                found.push(Link {
                    line,
                    target: after[..end].to_owned(),
                });
                rest = &after[end..];
            }
        }
    }
    found
}

/// Whether `target` leaves the repository's files: a URL (`https:`, `mailto:`, ...) or a
/// protocol-relative `//host/...`.
fn is_external(target: &str) -> bool {
    if target.starts_with("//") {
        return true;
    }
    let scheme: String = target
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .collect();
    !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && target[scheme.len()..].starts_with(':')
}

/// GitHub's anchor for a heading's text: the rendered text (link destinations and
/// emphasis dropped), lowercased, every character other than a letter, digit, space, `-`
/// or `_` removed, each space turned into `-`.
fn slug(heading: &str) -> String {
    let mut rendered = String::new();
    let mut rest = heading;
    // `[text](url)` renders as `text`.
    while let Some(at) = rest.find("](") {
        rendered.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        rest = after.find(')').map_or("", |end| &after[end + 1..]);
    }
    rendered.push_str(rest);
    rendered
        .trim()
        .chars()
        .flat_map(char::to_lowercase)
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The ATX headings of a Markdown document, in order: (line index from 0, level, anchor).
/// A repeated slug gets `-1`, `-2`, ... as on GitHub.
fn headings(text: &str) -> Vec<(usize, usize, String)> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for (number, line) in outside_fences(text) {
        let trimmed = line.trim_start();
        let level = trimmed.chars().take_while(|c| *c == '#').count();
        let heading = &trimmed[level..];
        if line.len() - trimmed.len() <= 3
            && (1..=6).contains(&level)
            && (heading.is_empty() || heading.starts_with([' ', '\t']))
        {
            // An optional closing sequence of `#`s is not part of the text.
            let text = heading.trim();
            let text = match text.trim_end_matches('#') {
                stripped if stripped.is_empty() || stripped.ends_with([' ', '\t']) => {
                    stripped.trim_end()
                }
                _ => text,
            };
            let base = slug(text);
            let mut candidate = base.clone();
            let mut n = 0;
            while seen.contains(&candidate) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            seen.insert(candidate.clone());
            found.push((number - 1, level, candidate));
        }
    }
    found
}

/// The anchors of a Markdown document: its ATX headings' slugs (see [`headings`]) and
/// explicit `id="..."`/`name="..."` HTML anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found: BTreeSet<String> = headings(text).into_iter().map(|(_, _, a)| a).collect();
    for (_, line) in outside_fences(text) {
        for attribute in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attribute) {
                let after = &rest[at + attribute.len()..];
                let end = after.find('"').unwrap_or(after.len());
                found.insert(after[..end].to_owned());
                rest = &after[end..];
            }
        }
    }
    found
}

/// The text of the section with `anchor`: from its heading to the next heading of the same
/// or a higher level. `None` when no heading has that anchor.
fn section<'a>(text: &'a str, anchor: &str) -> Option<String> {
    let all = headings(text);
    let at = all.iter().position(|(_, _, a)| a == anchor)?;
    let (start, level, _) = all[at];
    let end = all[at + 1..]
        .iter()
        .find(|(_, l, _)| *l <= level)
        .map_or(usize::MAX, |(line, _, _)| *line);
    Some(
        text.lines()
            .enumerate()
            .filter(|(i, _)| (start..end).contains(i))
            .map(|(_, l)| l)
            .collect::<Vec<&'a str>>()
            .join("\n"),
    )
}

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
fn broken_links(root: &Path) -> (Vec<String>, usize) {
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
fn dangling_section_references(root: &Path) -> Vec<String> {
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

/// Top-level folders of the repository a cited path starts with.
const CITABLE_FOLDERS: [&str; 9] = [
    "src/",
    "docs/",
    "tests/",
    "deploy/",
    "scripts/",
    "examples/",
    "crds/",
    "benches/",
    "crates/",
];

/// The repository paths `text` cites: words that start with a top-level folder, and bare
/// Markdown file names (`README.md`); an `#anchor` or `:line` suffix is dropped, and
/// patterns (`*`, `{...}`, `<...>`, `NAME`) are not citations.
fn cited_paths(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || "`()[],;\"'".contains(c))
        .map(|word| word.split(['#', ':']).next().unwrap_or_default())
        .map(|word| word.trim_end_matches(['.', '!', '?']))
        .filter(|word| {
            CITABLE_FOLDERS.iter().any(|f| word.starts_with(f))
                || (word.ends_with(".md") && !word.contains('/'))
        })
        .filter(|word| !word.contains(['*', '{', '<', '$']) && !word.contains("NAME"))
        .map(str::to_owned)
        .collect()
}

/// Whether a cited path exists: from the repository root, or for a bare Markdown name at
/// the root or under docs/.
fn cited_path_exists(root: &Path, cited: &str) -> bool {
    root.join(cited).exists() || (!cited.contains('/') && root.join("docs").join(cited).exists())
}

/// `*.rs` files under `dir`, recursively.
fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// Where a comment starts on a line of Rust: the first `//` that is not part of a URL.
fn comment_start(line: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = line[from..].find("//") {
        let at = from + at;
        if !line[..at].ends_with(':') {
            return Some(at + 2);
        }
        from = at + 2;
    }
    None
}

/// Every path cited in a comment of the Rust sources (src/, crates/) or in a code span of
/// the documents that does not exist: `FILE:LINE: PATH`. Also returns how many citations
/// were checked.
fn missing_cited_paths(root: &Path) -> (Vec<String>, usize) {
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut check = |file: &Path, line: usize, text: &str| {
        for cited in cited_paths(text) {
            checked += 1;
            if !cited_path_exists(root, &cited) {
                let shown = file.strip_prefix(root).unwrap_or(file).display();
                missing.push(format!("{shown}:{line}: {cited}"));
            }
        }
    };
    let mut sources = Vec::new();
    for folder in ["src", "crates"] {
        rust_files(&root.join(folder), &mut sources);
    }
    sources.sort();
    for file in &sources {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        for (i, line) in text.lines().enumerate() {
            if let Some(at) = comment_start(line) {
                check(file, i + 1, &line[at..]);
            }
        }
    }
    for document in documents(root) {
        let text = std::fs::read_to_string(&document)
            .unwrap_or_else(|e| panic!("reading {}: {e}", document.display()));
        for (line, raw) in outside_fences(&text) {
            let mut rest = raw;
            while let Some(start) = rest.find('`') {
                let after = &rest[start + 1..];
                let Some(end) = after.find('`') else {
                    break;
                };
                check(&document, line, &after[..end]);
                rest = &after[end + 1..];
            }
        }
    }
    (missing, checked)
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

#[test]
fn every_repository_path_cited_in_comments_and_docs_exists() {
    let (missing, checked) = missing_cited_paths(&repo());
    assert!(
        missing.is_empty(),
        "{} cited path(s) that are not in the repository:\n{}",
        missing.len(),
        missing.join("\n")
    );
    assert!(checked >= 50, "only {checked} cited paths found");
}

#[test]
fn a_dangling_section_reference_and_a_missing_cited_path_are_reported() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    std::fs::create_dir_all(root.join("src")).expect("src");
    std::fs::create_dir_all(root.join("docs")).expect("docs");
    std::fs::write(root.join("docs/planner.md"), "# Planner\n").expect("planner");
    std::fs::write(
        root.join("README.md"),
        "# Read me\n\n## Conflicts\n\nsee *Conflicts*; See *The Cloud Run client*.\n\
         `src/lib.rs` and `docs/planner.md#planner` exist, `docs/gone.md` does not.\n",
    )
    .expect("README.md");
    std::fs::write(
        root.join("src/lib.rs"),
        "//! Reads like DESIGN.md §3 and docs/planner.md (see src/*.rs, tests/NAME.rs).\n\
         const URL: &str = \"http://docs/x\"; // cites src/gone.rs:12\n",
    )
    .expect("src/lib.rs");
    assert_eq!(
        dangling_section_references(root),
        ["README.md:5: *The Cloud Run client*"]
    );
    let (missing, checked) = missing_cited_paths(root);
    assert_eq!(
        missing,
        [
            "src/lib.rs:1: DESIGN.md",
            "src/lib.rs:2: src/gone.rs",
            "README.md:6: docs/gone.md",
        ]
    );
    assert_eq!(checked, 6);
}

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

/// The cells of a Markdown table row (`\|` is a `|` inside a cell).
fn cells(row: &str) -> Vec<String> {
    row.replace("\\|", "\u{1}")
        .split('|')
        .map(|c| c.trim().replace('\u{1}', "|"))
        .collect()
}

/// The backticked words of a table cell.
fn code_words(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
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

/// A flag's long name and its environment variable.
type Flags = BTreeMap<String, Option<String>>;

/// `binauthz-operator ARGS... --help`.
fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_binauthz-operator"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run binauthz-operator --help");
    assert!(out.status.success(), "{args:?} --help failed");
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The subcommands a `--help` lists (without `help`).
fn subcommands(help: &str) -> BTreeSet<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

/// The flags a subcommand's `--help` lists (without `--help` and `--version`), each with
/// the environment variable clap shows (`[env: NAME=]`, possibly wrapped).
fn clap_flags(help: &str) -> Flags {
    let mut blocks: Vec<String> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (2..=6).contains(&indent) && trimmed.starts_with('-') {
            blocks.push(trimmed.to_owned());
        } else if let Some(last) = blocks.last_mut() {
            last.push(' ');
            last.push_str(line.trim());
        }
    }
    blocks
        .iter()
        .filter_map(|block| {
            let long = block.split_once("--")?.1;
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let env = block.split_once("[env: ").map(|(_, rest)| {
                rest.chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect::<String>()
            });
            Some((name, env))
        })
        .filter(|(name, _)| name != "help" && name != "version")
        .collect()
}

/// The rows of the flag tables (first cell a backticked flag) in `text`: long name and the
/// environment variable of the second cell (none when it has no backticked word).
fn documented_flags(text: &str) -> Vec<(String, Option<String>)> {
    text.lines()
        .filter(|l| l.starts_with("| `-"))
        .filter_map(|row| {
            let cells = cells(row);
            let long = cells.get(1)?.split_once("--")?.1;
            let name: String = long
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            let env = cells
                .get(2)
                .and_then(|c| code_words(c).first().map(|w| (*w).to_owned()));
            Some((name, env))
        })
        .collect()
}

/// The README's CLI reference: the `| command | flags |` table, each command with the
/// sections (links) that document its flags.
fn cli_reference(readme: &str) -> BTreeMap<String, Vec<String>> {
    let lines: Vec<&str> = readme.lines().collect();
    let Some(header) = lines
        .iter()
        .position(|l| l.replace(' ', "") == "|command|flags|")
    else {
        return BTreeMap::new();
    };
    lines[header + 2..]
        .iter()
        .take_while(|l| l.starts_with('|'))
        .map(|row| {
            let cells = cells(row);
            let command = code_words(&cells[1])
                .first()
                .copied()
                .unwrap_or_default()
                .to_owned();
            let targets = links(&cells[2]).into_iter().map(|l| l.target).collect();
            (command, targets)
        })
        .collect()
}

/// The flags the sections `targets` document (`#anchor` in README.md, or `file.md#anchor`).
fn flags_documented_in(
    root: &Path,
    readme: &str,
    targets: &[String],
) -> Vec<(String, Option<String>)> {
    let mut found = Vec::new();
    for target in targets {
        let (file, anchor) = target.split_once('#').unwrap_or((target, ""));
        let text = if file.is_empty() {
            readme.to_owned()
        } else {
            std::fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"))
        };
        let part = section(&text, anchor).unwrap_or_else(|| panic!("{target}: no such section"));
        found.extend(documented_flags(&part));
    }
    found
}

/// What differs between the binary's commands and flags and the README's CLI reference.
fn cli_differences(
    binary: &BTreeMap<String, Flags>,
    documented: &BTreeMap<String, Vec<(String, Option<String>)>>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for command in binary.keys().filter(|c| !documented.contains_key(*c)) {
        problems.push(format!("`{command}` is not in the README's CLI reference"));
    }
    for (command, rows) in documented {
        let Some(flags) = binary.get(command) else {
            problems.push(format!(
                "the README documents `{command}`, which the binary does not have"
            ));
            continue;
        };
        for (flag, env) in rows {
            match flags.get(flag) {
                None => problems.push(format!(
                    "{command}: the README documents --{flag}, which clap does not define"
                )),
                Some(real) if real != env => problems.push(format!(
                    "{command}: --{flag}: the README says env {env:?}, clap {real:?}"
                )),
                Some(_) => {}
            }
        }
        for (flag, env) in flags {
            if !rows.iter().any(|(f, _)| f == flag) {
                problems.push(format!("{command}: --{flag} is not documented"));
            }
            if env.is_none() {
                problems.push(format!("{command}: --{flag} has no environment variable"));
            }
        }
    }
    problems
}

#[test]
fn the_readme_cli_reference_is_the_binarys_flags() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let binary: BTreeMap<String, Flags> = subcommands(&help(&[]))
        .into_iter()
        .map(|command| {
            let flags = clap_flags(&help(&[&command]));
            (command, flags)
        })
        .collect();
    assert!(binary.len() >= 3, "{binary:?}");
    assert!(
        binary.values().map(BTreeMap::len).sum::<usize>() >= 30,
        "{binary:?}"
    );
    let documented: BTreeMap<String, Vec<(String, Option<String>)>> = cli_reference(&readme)
        .into_iter()
        .map(|(command, targets)| {
            let flags = flags_documented_in(&root, &readme, &targets);
            (command, flags)
        })
        .collect();
    let problems = cli_differences(&binary, &documented);
    assert!(
        problems.is_empty(),
        "README.md's CLI reference differs from the binary:\n{}",
        problems.join("\n")
    );
}

#[test]
fn cli_differences_name_each_missing_extra_and_mismatched_flag() {
    let flags = |pairs: &[(&str, Option<&str>)]| -> Flags {
        pairs
            .iter()
            .map(|(f, e)| ((*f).to_owned(), e.map(str::to_owned)))
            .collect()
    };
    let help_text = "Usage: x check [OPTIONS]\n\nOptions:\n  -f, --filename <PATH>...\n          Binding manifests [env:\n          BINAUTHZ_CHECK_FILENAME=]\n      --wide\n          In the table\n  -h, --help\n          Print help\n";
    assert_eq!(
        clap_flags(help_text),
        flags(&[
            ("filename", Some("BINAUTHZ_CHECK_FILENAME")),
            ("wide", None)
        ])
    );
    let binary: BTreeMap<String, Flags> = [
        ("check".to_owned(), clap_flags(help_text)),
        ("crd".to_owned(), Flags::new()),
    ]
    .into_iter()
    .collect();
    let documented = documented_flags(
        "| flag | env | default | meaning |\n|---|---|---|---|\n\
         | `-f, --filename PATH...` | `BINAUTHZ_FILES` | required | manifests |\n\
         | `--fix` | `BINAUTHZ_CHECK_FIX` | off | fix |\n",
    );
    let documented = [("check".to_owned(), documented)].into_iter().collect();
    assert_eq!(
        cli_differences(&binary, &documented),
        [
            "`crd` is not in the README's CLI reference",
            "check: --filename: the README says env Some(\"BINAUTHZ_FILES\"), clap Some(\"BINAUTHZ_CHECK_FILENAME\")",
            "check: the README documents --fix, which clap does not define",
            "check: --wide is not documented",
            "check: --wide has no environment variable",
        ]
    );
}
