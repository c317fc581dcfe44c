//! Documentation kept true, one test binary: every relative link and image in README.md,
//! the other Markdown files at the root and docs/**/*.md points at a file of this
//! repository, and every `#anchor` into a Markdown file names one of its headings (GitHub's
//! slugs); prose never refers to a section that does not exist (`see *Heading*`);
//! repository paths cited in source comments and in the docs' code spans exist; the
//! permission tables of the docs equal deploy/rbac.yaml; and the README's CLI reference
//! equals the binary's flags.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed unwrap, expect or panic is how a test reports failure"
)]

mod citations;
mod cli;
mod links;
mod markdown;
mod permissions;
mod runbook;

use std::path::{Path, PathBuf};

pub(crate) fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md, every other `*.md` at the root, and every `*.md` under docs/, sorted.
pub(crate) fn documents(root: &Path) -> Vec<PathBuf> {
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
