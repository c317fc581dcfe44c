//! Reads `BinAuthzBinding` manifests from files, directories and stdin, and validates them.
//!
//! Files may hold several YAML documents (`---`) and `kind: List` wrappers; documents of
//! other kinds are skipped (a GitOps directory holds Deployments and ConfigMaps too). Each
//! binding is checked with the same rules as the CRD ([`crate::api::binding_from_value`]),
//! and every problem is reported with its file, document number, line where known, field
//! and rule — all of them, not just the first.
//!
//! `BinAuthzException` manifests are read and validated the same way (`check` honours
//! them); an invalid one is a problem of the input like an invalid binding.
//!
//! Cloud Run manifests among the documents ([`crate::cloudrun_manifest`]) are kept aside,
//! with the line of their Binary Authorization setting, for `validate` to check against the
//! bindings; they are never a problem of the binding manifests (`check` ignores them).

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::api::{self, BinAuthzBinding, BinAuthzException, FieldError};
use crate::cloudrun_manifest::{self, CloudRunManifest, CloudRunManifestError, ManifestFormat};

/// Where a binding came from, for messages: `bindings/prod.yaml` document 2, line 14.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The file (`-` for stdin).
    pub file: String,
    /// 1-based document number within the file.
    pub document: usize,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        write!(f, " (document {})", self.document)
    }
}

/// One problem found in the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestError {
    /// Where.
    pub source: Source,
    /// The binding's `namespace/name`, when it could be read.
    pub binding: Option<String>,
    /// What is wrong: a field and rule, or a YAML/IO problem.
    pub problem: Problem,
}

/// What is wrong with an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The file or directory could not be read.
    Io(String),
    /// The text is not YAML.
    Yaml(String),
    /// A binding breaks a CRD rule.
    Field(FieldError),
    /// An exception (`namespace/name`, when readable) breaks a CRD rule.
    ExceptionField(Option<String>, FieldError),
    /// Two documents declare the same binding.
    Duplicate {
        /// Where the binding was first declared.
        first: String,
    },
    /// No binding was found in any input.
    NoBindings,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.source)?;
        if let Some(binding) = &self.binding {
            write!(f, "binding {binding}: ")?;
        }
        match &self.problem {
            Problem::Io(e) => write!(f, "cannot read: {e}"),
            Problem::Yaml(e) => write!(f, "not valid YAML: {e}"),
            Problem::Field(e) => write!(f, "{e}"),
            Problem::ExceptionField(Some(key), e) => write!(f, "exception {key}: {e}"),
            Problem::ExceptionField(None, e) => write!(f, "exception: {e}"),
            Problem::Duplicate { first } => write!(
                f,
                "declared twice (first at {first}); give each binding its own namespace/name"
            ),
            Problem::NoBindings => write!(
                f,
                "no BinAuthzBinding found (apiVersion {}, kind {}); pass the files or directories that hold your bindings",
                api::API_VERSION,
                api::KIND
            ),
        }
    }
}

/// A binding read from the input, with its origin.
#[derive(Clone, Debug)]
pub struct LoadedBinding {
    /// The binding (validated).
    pub binding: BinAuthzBinding,
    /// `namespace/name` (namespace `default` when the manifest names none, as kubectl does).
    pub key: String,
    /// Where it was read.
    pub source: Source,
    /// The line of its `spec.policy` (what its targets must carry), when spelled out: where
    /// CI annotations about its targets point.
    pub policy_line: Option<usize>,
}

/// An exception read from the input, with its origin.
#[derive(Clone, Debug)]
pub struct LoadedException {
    /// The exception (validated against the CRD's rules).
    pub exception: BinAuthzException,
    /// Where it was read.
    pub source: Source,
}

/// A Cloud Run manifest read from the input, with its origin.
#[derive(Clone, Debug)]
pub struct LoadedCloudRun {
    /// The manifest, or why it cannot be read.
    pub manifest: Result<CloudRunManifest, CloudRunManifestError>,
    /// Where: the line of its Binary Authorization setting, else of the enclosing
    /// `metadata.annotations` / `metadata` (v1), else of the document.
    pub source: Source,
}

/// The result of reading every input: the valid bindings and every problem found.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Valid bindings, in input order.
    pub bindings: Vec<LoadedBinding>,
    /// Valid exceptions, in input order.
    pub exceptions: Vec<LoadedException>,
    /// Valid `BinAuthzTenancy` grants, in input order: `check` decides tenancy with them
    /// as the controller does with the cluster's.
    pub grants: Vec<api::BinAuthzTenancy>,
    /// Every problem, in input order.
    pub errors: Vec<ManifestError>,
    /// Documents of other kinds that were skipped.
    pub skipped: usize,
    /// Cloud Run manifests (not counted among the skipped documents), in input order.
    pub cloud_run: Vec<LoadedCloudRun>,
    /// Files read (stdin counts as one).
    pub files: usize,
    /// Every binding document with a readable `namespace/name`, valid or not, in input
    /// order: duplicates are found among all of them, so an invalid copy is named too.
    declared: Vec<(String, Source)>,
}

impl Loaded {
    /// Writes every problem as one `error: ...` line (file:line, binding, field, what to
    /// do), in input order; `check` and `validate` print them alike.
    pub fn write_errors(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        for problem in &self.errors {
            writeln!(out, "error: {problem}")?;
        }
        Ok(())
    }
}

/// Reads every input: files, directories (recursively, `*.yaml`/`*.yml`, in name order)
/// and `-` for stdin.
pub fn load(inputs: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    for input in inputs {
        if input.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => {
                    loaded.files += 1;
                    load_text("-", &text, &mut loaded);
                }
                Err(e) => loaded.errors.push(io_error("-", &e)),
            }
            continue;
        }
        let mut files = Vec::new();
        if let Err(e) = collect_files(input, &mut files, true) {
            loaded
                .errors
                .push(io_error(&input.display().to_string(), &e));
            continue;
        }
        for file in files {
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => {
                    loaded.files += 1;
                    load_text(&name, &text, &mut loaded);
                }
                Err(e) => loaded.errors.push(io_error(&name, &e)),
            }
        }
    }
    check_duplicates(&mut loaded);
    if loaded.bindings.is_empty() && loaded.errors.is_empty() {
        loaded.errors.push(ManifestError {
            source: Source {
                file: inputs
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                document: 0,
                line: None,
                column: None,
            },
            binding: None,
            problem: Problem::NoBindings,
        });
    }
    loaded
}

fn io_error(file: &str, e: &std::io::Error) -> ManifestError {
    ManifestError {
        source: Source {
            file: file.to_owned(),
            document: 0,
            line: None,
            column: None,
        },
        binding: None,
        problem: Problem::Io(e.to_string()),
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>, explicit: bool) -> std::io::Result<()> {
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        entries.sort();
        for entry in entries {
            collect_files(&entry, out, false)?;
        }
    } else if explicit || path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
        out.push(path.to_owned());
    }
    Ok(())
}

/// Splits a YAML stream into documents, remembering the line each one starts on.
fn documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut start = 1;
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_separator {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
            // `--- {inline: document}` keeps its content on the separator line.
            let rest = line[3..].trim_start();
            if !rest.is_empty() && !rest.starts_with('#') {
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
        } else if line == "..." {
            docs.push((start, std::mem::take(&mut current)));
            start = i + 2;
        } else {
            current.push_str(line);
            current.push('\n');
        }
    }
    docs.push((start, current));
    docs
}

fn load_text(file: &str, text: &str, loaded: &mut Loaded) {
    let mut number = 0;
    for (start_line, doc) in documents(text) {
        let value: serde_json::Value = match serde_yaml_ng::from_str(&doc) {
            Ok(v) => v,
            Err(e) => {
                number += 1;
                let location = e.location();
                loaded.errors.push(ManifestError {
                    source: Source {
                        file: file.to_owned(),
                        document: number,
                        line: location.as_ref().map(|l| start_line + l.line() - 1),
                        column: location.as_ref().map(|l| l.column()),
                    },
                    binding: None,
                    problem: Problem::Yaml(
                        e.to_string()
                            .split(" at line ")
                            .next()
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                });
                continue;
            }
        };
        if value.is_null() {
            continue; // empty document (comments only, or a trailing separator)
        }
        number += 1;
        let items = if value.get("kind").and_then(|k| k.as_str()) == Some("List") {
            value
                .get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default()
        } else {
            vec![value]
        };
        let at = At {
            file,
            number,
            start_line,
            doc: &doc,
        };
        for item in items {
            load_document(&at, item, loaded);
        }
    }
}

/// One YAML document of a file: where what it holds is reported.
struct At<'a> {
    file: &'a str,
    /// The document's number in the file.
    number: usize,
    /// The file line it starts on.
    start_line: usize,
    /// Its text.
    doc: &'a str,
}

impl At<'_> {
    fn source(&self, line: Option<usize>) -> Source {
        Source {
            file: self.file.to_owned(),
            document: self.number,
            line,
            column: None,
        }
    }

    /// The file line of `field` (`spec.policy`) in the document, when found.
    fn line_of(&self, field: &str) -> Option<usize> {
        field_line(self.doc, field).map(|l| self.start_line + l - 1)
    }
}

fn load_document(at: &At<'_>, value: serde_json::Value, loaded: &mut Loaded) {
    let ours = value
        .get("apiVersion")
        .and_then(|v| v.as_str())
        .is_some_and(|v| v.starts_with("binauthz.dev/"));
    let kind = value.get("kind").and_then(|k| k.as_str());
    if ours && kind == Some(api::EXCEPTION_KIND) {
        load_exception(at, value, loaded);
        return;
    }
    if ours && kind == Some(api::TENANCY_KIND) {
        load_grant(at, value, loaded);
        return;
    }
    let is_binding = ours && kind == Some(api::KIND);
    if !is_binding {
        match cloudrun_manifest::recognize(&value) {
            Some(manifest) => {
                let line = setting_line(at.doc, manifest.as_ref().ok())
                    .map_or(at.start_line, |l| at.start_line + l - 1);
                loaded.cloud_run.push(LoadedCloudRun {
                    manifest,
                    source: at.source(Some(line)),
                });
            }
            None => loaded.skipped += 1,
        }
        return;
    }
    let key = binding_key(&value);
    let source = at.source(Some(at.start_line));
    if let Some(key) = &key {
        loaded.declared.push((key.clone(), source.clone()));
    }
    match api::binding_from_value(value) {
        Ok(binding) => loaded.bindings.push(LoadedBinding {
            binding,
            key: key.unwrap_or_default(),
            policy_line: at.line_of("spec.policy"),
            source,
        }),
        Err(errors) => {
            for error in errors.0 {
                let line = at.line_of(&error.field);
                loaded.errors.push(ManifestError {
                    source: at.source(line),
                    binding: key.clone(),
                    problem: Problem::Field(error),
                });
            }
        }
    }
}

fn load_exception(at: &At<'_>, value: serde_json::Value, loaded: &mut Loaded) {
    let key = binding_key(&value);
    match api::exception_from_value(value) {
        Ok(exception) => loaded.exceptions.push(LoadedException {
            exception,
            source: at.source(Some(at.start_line)),
        }),
        Err(errors) => {
            for error in errors.0 {
                let line = at.line_of(&error.field);
                loaded.errors.push(ManifestError {
                    source: at.source(line),
                    binding: None,
                    problem: Problem::ExceptionField(key.clone(), error),
                });
            }
        }
    }
}

/// One `BinAuthzTenancy` grant document: kept when valid, else each problem reported.
fn load_grant(at: &At<'_>, value: serde_json::Value, loaded: &mut Loaded) {
    let name = value
        .pointer("/metadata/name")
        .and_then(|n| n.as_str())
        .map(|n| format!("{} {n}", api::TENANCY_KIND));
    match api::grant_from_value(value) {
        Ok(grant) => loaded.grants.push(grant),
        Err(errors) => {
            for error in errors.0 {
                let line = at.line_of(&error.field);
                loaded.errors.push(ManifestError {
                    source: at.source(line),
                    binding: name.clone(),
                    problem: Problem::Field(error),
                });
            }
        }
    }
}

/// `namespace/name` of a manifest, `default` namespace when none is given.
fn binding_key(value: &serde_json::Value) -> Option<String> {
    let metadata = value.get("metadata")?;
    let name = metadata.get("name")?.as_str()?;
    let namespace = metadata
        .get("namespace")
        .and_then(|n| n.as_str())
        .unwrap_or("default");
    Some(format!("{namespace}/{name}"))
}

/// Best-effort line of a field inside a document: the line declaring its last key, searched
/// after the lines declaring the keys before it. `None` when the key is not spelled out
/// (e.g. a missing required field).
fn field_line(doc: &str, field: &str) -> Option<usize> {
    let keys: Vec<&str> = field
        .split('.')
        .map(|k| k.split('[').next().unwrap_or(k))
        .filter(|k| !k.is_empty())
        .collect();
    keys_line(doc, &keys)
}

/// The 1-based line of a Cloud Run manifest's Binary Authorization setting within its
/// document, or of the nearest enclosing key that is spelled out.
fn setting_line(doc: &str, manifest: Option<&CloudRunManifest>) -> Option<usize> {
    let format = manifest.map_or(ManifestFormat::V1, |m| m.format);
    let candidates: &[&[&str]] = match format {
        ManifestFormat::V1 => &[
            &[
                "metadata",
                "annotations",
                cloudrun_manifest::POLICY_ANNOTATION,
            ],
            &["metadata", "annotations"],
            &["metadata"],
        ],
        ManifestFormat::V2 => &[&["binaryAuthorization"], &["name"]],
    };
    candidates.iter().find_map(|keys| keys_line(doc, keys))
}

/// The line declaring the last of `keys`, each searched after the line of the one before.
fn keys_line(doc: &str, keys: &[&str]) -> Option<usize> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut from = 0;
    let mut found = None;
    for key in keys.iter().copied() {
        let hit = lines[from..].iter().position(|l| declares(l, key))?;
        from += hit;
        found = Some(from + 1);
    }
    found
}

fn declares(line: &str, key: &str) -> bool {
    let trimmed = line.trim_start().trim_start_matches("- ");
    [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ]
    .iter()
    .any(|k| trimmed.starts_with(k.as_str()))
        || line.contains(&format!("{{{key}:"))
        || line.contains(&format!(", {key}:"))
        || line.contains(&format!("\"{key}\":"))
}

/// Refuses every binding declared again after its first declaration, valid or not: each
/// later copy is one problem naming both locations.
fn check_duplicates(loaded: &mut Loaded) {
    let mut first: BTreeMap<&str, &Source> = BTreeMap::new();
    let mut duplicates = Vec::new();
    for (key, source) in &loaded.declared {
        match first.get(key.as_str()) {
            Some(src) => duplicates.push(ManifestError {
                source: source.clone(),
                binding: Some(key.clone()),
                problem: Problem::Duplicate {
                    first: src.to_string(),
                },
            }),
            None => {
                first.insert(key, source);
            }
        }
    }
    loaded.errors.extend(duplicates);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "apiVersion: binauthz.dev/v1alpha1
kind: BinAuthzBinding
metadata:
  name: prod
  namespace: platform
spec:
  project: acme-prod
  locations: [us-central1]
  targets:
    services:
      names: ['*']
  policy:
    useDefault: true
";

    fn load_str(text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        load_text("bindings.yaml", text, &mut loaded);
        check_duplicates(&mut loaded);
        loaded
    }

    #[test]
    fn reads_multi_document_streams_and_skips_other_kinds() {
        let text = format!(
            "# leading comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{GOOD}---\n"
        );
        let loaded = load_str(&text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.bindings.len(), 1);
        assert_eq!(loaded.skipped, 1);
        assert_eq!(loaded.bindings[0].key, "platform/prod");
        assert_eq!(loaded.bindings[0].source.document, 2);
        assert_eq!(loaded.bindings[0].source.line, Some(7));
        assert_eq!(loaded.bindings[0].policy_line, Some(18));
    }

    #[test]
    fn reports_the_file_document_line_and_field_of_each_problem() {
        let bad = GOOD
            .replace("useDefault: true", "useDefault: false")
            .replace("name: prod", "name: bad");
        let text = format!("{GOOD}---\n{bad}");
        let loaded = load_str(&text);
        assert_eq!(loaded.bindings.len(), 1);
        assert_eq!(loaded.errors.len(), 1);
        let message = loaded.errors[0].to_string();
        assert_eq!(
            message,
            "bindings.yaml:27 (document 2): binding platform/bad: spec.policy.useDefault: \
             useDefault: false would disable Binary Authorization; set useDefault: true or name a policy"
        );
    }

    #[test]
    fn yaml_errors_carry_line_and_column() {
        let loaded = load_str(&format!("{GOOD}---\nkind: [unclosed\n"));
        assert_eq!(loaded.errors.len(), 1);
        let e = &loaded.errors[0];
        assert_eq!(e.source.document, 2);
        assert_eq!(e.source.line, Some(16));
        assert!(matches!(e.problem, Problem::Yaml(_)));
    }

    #[test]
    fn duplicate_bindings_are_refused() {
        let loaded = load_str(&format!("{GOOD}---\n{GOOD}"));
        assert_eq!(loaded.errors.len(), 1);
        assert!(loaded.errors[0].to_string().contains("declared twice"));
    }

    #[test]
    fn every_later_copy_of_a_binding_is_refused_naming_both_locations_even_when_invalid() {
        let invalid = GOOD.replace("useDefault: true", "useDefault: false");
        let loaded = load_str(&format!("{GOOD}---\n{invalid}---\n{GOOD}"));
        let duplicates: Vec<String> = loaded
            .errors
            .iter()
            .filter(|e| matches!(e.problem, Problem::Duplicate { .. }))
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            duplicates,
            [
                "bindings.yaml:15 (document 2): binding platform/prod: declared twice (first at \
                 bindings.yaml:1 (document 1)); give each binding its own namespace/name",
                "bindings.yaml:29 (document 3): binding platform/prod: declared twice (first at \
                 bindings.yaml:1 (document 1)); give each binding its own namespace/name",
            ]
        );
        // The invalid copy's own problem is reported too.
        assert_eq!(loaded.errors.len(), 3, "{:?}", loaded.errors);
    }

    #[test]
    fn duplicates_across_files_are_found_and_files_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yaml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, GOOD).unwrap();
        std::fs::write(&b, GOOD).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not yaml: [").unwrap();
        let loaded = load(&[dir.path().to_path_buf()]);
        assert_eq!(loaded.files, 2);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        let message = loaded.errors[0].to_string();
        assert!(
            message.starts_with(&format!("{}:1 (document 1)", b.display()))
                && message.contains(&format!("first at {}:1 (document 1)", a.display())),
            "{message}"
        );
        let mut out = Vec::new();
        loaded.write_errors(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("error: {message}\n")
        );
    }

    #[test]
    fn list_wrappers_are_unwrapped() {
        let item: serde_json::Value = serde_yaml_ng::from_str(GOOD).unwrap();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [item]});
        let loaded = load_str(&serde_yaml_ng::to_string(&list).unwrap());
        assert_eq!(loaded.bindings.len(), 1);
    }
}
