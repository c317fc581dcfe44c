//! Cited paths: every repository path a source comment or a docs code span names exists.

use std::path::{Path, PathBuf};

use crate::links::dangling_section_references;
use crate::markdown::outside_fences;
use crate::{documents, repo};

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
