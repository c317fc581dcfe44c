//! The repository's documentation links: every relative link and image in README.md, the
//! other Markdown files at the root and docs/**/*.md points at a file of this repository,
//! and every `#anchor` into a Markdown file names one of its headings (GitHub's slugs).

use std::collections::BTreeSet;
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

/// The anchors of a Markdown document: its ATX headings' slugs (a repeated slug gets
/// `-1`, `-2`, ... as on GitHub) and explicit `id="..."`/`name="..."` HTML anchors.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (_, line) in outside_fences(text) {
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
            while found.contains(&candidate) {
                n += 1;
                candidate = format!("{base}-{n}");
            }
            found.insert(candidate);
        }
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
