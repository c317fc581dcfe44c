//! The README's CLI reference: every command and flag of the binary, with its environment variable, and nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::markdown::{cells, code_words, links, section};
use crate::repo;

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
    // Commands with commands of their own (`kubectl status`, ...) are rows of their own,
    // named `command subcommand`.
    let mut binary: BTreeMap<String, Flags> = BTreeMap::new();
    for command in subcommands(&help(&[])) {
        let text = help(&[&command]);
        for sub in subcommands(&text) {
            let flags = clap_flags(&help(&[&command, &sub]));
            binary.insert(format!("{command} {sub}"), flags);
        }
        binary.insert(command, clap_flags(&text));
    }
    assert!(binary.len() >= 3, "{binary:?}");
    assert!(
        binary.values().map(BTreeMap::len).sum::<usize>() >= 30,
        "{binary:?}"
    );
    let mut documented: BTreeMap<String, Vec<(String, Option<String>)>> = cli_reference(&readme)
        .into_iter()
        .map(|(command, targets)| {
            let flags = flags_documented_in(&root, &readme, &targets);
            (command, flags)
        })
        .collect();
    if !cfg!(feature = "emulator") {
        // The README documents the default build; a build without the `emulator` feature
        // (the container image) has neither the subcommand nor `check --emulator`.
        documented.remove("emulator");
        if let Some(rows) = documented.get_mut("check") {
            rows.retain(|(flag, _)| flag != "emulator");
        }
    }
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
