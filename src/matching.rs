//! Decides which Cloud Run resources a binding's selectors match: name globs, label selectors, excludes, locations.
//!
//! Two ways to ask, with the same answers:
//! - [`BindingMatcher::matches`] judges one resource against one binding — the reference
//!   semantics, written to read like docs/planner.md ("Matching");
//! - [`Inventory::matching`] finds every resource a binding matches in an indexed estate,
//!   without looking at resources of other projects, locations or kinds, and without
//!   scanning a location when the names are exact or globs with a literal prefix.
//!
//! # Semantics (guaranteed)
//! A binding matches a resource of kind K in location L of project P when
//! - the resource is not deleted,
//! - P equals `spec.project` (string equality: a binding naming the project by number
//!   matches resources listed under that number),
//! - `spec.locations` contains L, or is `["*"]` (every location: the caller lists the
//!   regions it resolved for the project, and whatever it lists is matched),
//! - the binding has a selector for K, and under that selector
//!   - the name matches one of `names` (when given; `*` is any run of characters, `?` one
//!     character, everything else literal),
//!   - AND the labels match `labelSelector` (when given; Kubernetes semantics: every
//!     `matchLabels` pair present with that value; `In` — present with one of the values;
//!     `NotIn` — absent or none of the values; `Exists` — present; `DoesNotExist` — absent),
//!   - AND no `exclude` glob matches the name.
//!
//! A selector with neither `names` nor `labelSelector` (refused by validation) matches
//! nothing. Cloud Run resource names are ASCII (`[a-z0-9-]`), so `?` stands for one byte.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::api::{BinAuthzBindingSpec, LabelOperator, LabelSelector, ResourceKind, TargetSelector};
use crate::resource::{Labels, ObservedResource, ResourceId};

/// A compiled name glob: `*` matches any run of characters (also none), `?` exactly one,
/// every other character itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// Length of the literal text before the first wildcard.
    prefix_len: usize,
    /// Length of the literal text after the last wildcard (0 for a plain name).
    suffix_len: usize,
    shape: GlobShape,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GlobShape {
    /// No wildcard: equality.
    Literal,
    /// Only `*`s: matches every name.
    Everything,
    /// Literal prefix, wildcards and literals, literal suffix.
    Pattern,
}

impl Glob {
    /// Compiles a glob. Every string is a valid glob.
    pub fn new(pattern: &str) -> Self {
        let is_wildcard = |c: char| c == '*' || c == '?';
        let (prefix_len, suffix_len, shape) = match pattern.find(is_wildcard) {
            None => (pattern.len(), 0, GlobShape::Literal),
            Some(_) if pattern.bytes().all(|c| c == b'*') => (0, 0, GlobShape::Everything),
            Some(first) => {
                let last = pattern.rfind(is_wildcard).unwrap_or(first);
                (first, pattern.len() - last - 1, GlobShape::Pattern)
            }
        };
        Self {
            pattern: pattern.to_owned(),
            prefix_len,
            suffix_len,
            shape,
        }
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// The literal text every matching name starts with.
    pub fn literal_prefix(&self) -> &str {
        &self.pattern[..self.prefix_len]
    }

    /// Whether the glob is a plain name (no `*` or `?`).
    pub fn is_literal(&self) -> bool {
        self.shape == GlobShape::Literal
    }

    /// Whether `name` matches the whole glob.
    pub fn matches(&self, name: &str) -> bool {
        match self.shape {
            GlobShape::Literal => self.pattern == name,
            GlobShape::Everything => true,
            GlobShape::Pattern => {
                // prefix + middle + suffix, where the middle starts and ends with a
                // wildcard: the literal ends are anchored, only the middle needs search.
                let (p, n) = (self.pattern.as_bytes(), name.as_bytes());
                let (pre, suf) = (self.prefix_len, self.suffix_len);
                n.len() >= pre + suf
                    && n[..pre] == p[..pre]
                    && n[n.len() - suf..] == p[p.len() - suf..]
                    && wildcard_match(&p[pre..p.len() - suf], &n[pre..n.len() - suf])
            }
        }
    }
}

/// Linear-space wildcard matching with backtracking to the last `*` (worst case
/// O(pattern × name), both at most 63 bytes).
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // Position of the last `*` seen and the name position it currently stands in for.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A set of names and globs, as in `names` or `exclude`: matches when any entry matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NameSet {
    /// Plain names, sorted and deduplicated.
    exact: Vec<String>,
    /// Globs with a wildcard, in the order written.
    globs: Vec<Glob>,
}

impl NameSet {
    /// Compiles a list of names and globs.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let mut exact = Vec::new();
        let mut globs = Vec::new();
        for pattern in patterns {
            let glob = Glob::new(pattern.as_ref());
            if glob.is_literal() {
                exact.push(glob.pattern);
            } else {
                globs.push(glob);
            }
        }
        exact.sort_unstable();
        exact.dedup();
        Self { exact, globs }
    }

    /// Whether no entry can match anything.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }

    /// Whether any entry matches `name`.
    pub fn matches(&self, name: &str) -> bool {
        self.exact
            .binary_search_by(|e| e.as_str().cmp(name))
            .is_ok()
            || self.globs.iter().any(|g| g.matches(name))
    }

    /// Whether some glob has no literal prefix (so every name is a candidate).
    fn needs_full_scan(&self) -> bool {
        self.globs.iter().any(|g| g.prefix_len == 0)
    }
}

/// Whether Cloud Run `labels` satisfy a Kubernetes label selector (every `matchLabels`
/// pair and every `matchExpressions` requirement must hold).
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value.as_str()))
        && selector.match_expressions.iter().all(|req| {
            let value = labels.get(&req.key);
            match req.operator {
                LabelOperator::In => value.is_some_and(|v| req.values.iter().any(|x| x == v)),
                LabelOperator::NotIn => value.is_none_or(|v| !req.values.iter().any(|x| x == v)),
                LabelOperator::Exists => value.is_some(),
                LabelOperator::DoesNotExist => value.is_none(),
            }
        })
}

/// A compiled [`TargetSelector`] for one kind.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectorMatcher {
    names: Option<NameSet>,
    labels: Option<LabelSelector>,
    exclude: NameSet,
}

impl SelectorMatcher {
    /// Compiles a selector.
    pub fn new(selector: &TargetSelector) -> Self {
        Self {
            names: selector.names.as_deref().map(NameSet::new),
            labels: selector.label_selector.clone(),
            exclude: NameSet::new(&selector.exclude),
        }
    }

    /// Whether a resource with this name and these labels is covered.
    pub fn matches(&self, name: &str, labels: &Labels) -> bool {
        (self.names.is_some() || self.labels.is_some())
            && self.names.as_ref().is_none_or(|n| n.matches(name))
            && self.labels_and_exclude_match(name, labels)
    }

    fn labels_and_exclude_match(&self, name: &str, labels: &Labels) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|s| label_selector_matches(s, labels))
            && !self.exclude.matches(name)
    }

    /// Appends to `out` the indices (`offset` + position in `resources`, a name-sorted run
    /// of one project, location and kind) of the matching resources; an index may appear
    /// more than once and out of order when several names match one resource.
    fn collect(&self, resources: &[&ObservedResource], offset: usize, out: &mut Vec<usize>) {
        let check = |r: &ObservedResource| self.labels_and_exclude_match(&r.id.name, &r.labels);
        match &self.names {
            None if self.labels.is_none() => {}
            Some(names) if !names.needs_full_scan() => {
                for name in &names.exact {
                    if let Ok(i) = resources.binary_search_by(|r| r.id.name.as_str().cmp(name)) {
                        if check(resources[i]) {
                            out.push(offset + i);
                        }
                    }
                }
                for glob in &names.globs {
                    let range = prefix_range(resources, glob.literal_prefix());
                    for i in range {
                        let r = resources[i];
                        if glob.matches(&r.id.name) && check(r) {
                            out.push(offset + i);
                        }
                    }
                }
            }
            names => {
                for (i, r) in resources.iter().enumerate() {
                    if names.as_ref().is_none_or(|n| n.matches(&r.id.name)) && check(r) {
                        out.push(offset + i);
                    }
                }
            }
        }
    }
}

/// The index range of the names starting with `prefix` in a name-sorted run.
fn prefix_range(resources: &[&ObservedResource], prefix: &str) -> Range<usize> {
    let start = resources.partition_point(|r| r.id.name.as_str() < prefix);
    let len = resources[start..].partition_point(|r| r.id.name.starts_with(prefix));
    start..start + len
}

/// Which locations a binding covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationFilter {
    /// `["*"]`: every location the caller listed for the project.
    Any,
    /// These regions (sorted, deduplicated).
    Only(Vec<String>),
}

impl LocationFilter {
    /// Reads `spec.locations`.
    pub fn new(locations: &[String]) -> Self {
        if locations.iter().any(|l| l == "*") {
            Self::Any
        } else {
            let mut only = locations.to_vec();
            only.sort_unstable();
            only.dedup();
            Self::Only(only)
        }
    }

    /// Whether `location` is covered.
    pub fn contains(&self, location: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Only(only) => only.binary_search_by(|l| l.as_str().cmp(location)).is_ok(),
        }
    }
}

/// A compiled binding spec: answers "does this binding match that resource?".
#[derive(Clone, Debug, PartialEq)]
pub struct BindingMatcher {
    project: String,
    locations: LocationFilter,
    /// Indexed like [`ResourceKind::ALL`].
    kinds: [Option<SelectorMatcher>; 3],
}

fn kind_index(kind: ResourceKind) -> usize {
    match kind {
        ResourceKind::Service => 0,
        ResourceKind::Job => 1,
        ResourceKind::WorkerPool => 2,
    }
}

impl BindingMatcher {
    /// Compiles the matching part of a spec (project, locations, targets). Works on any
    /// spec; validation is the caller's business.
    pub fn new(spec: &BinAuthzBindingSpec) -> Self {
        Self {
            project: spec.project.clone(),
            locations: LocationFilter::new(&spec.locations),
            kinds: ResourceKind::ALL.map(|k| spec.targets.for_kind(k).map(SelectorMatcher::new)),
        }
    }

    /// The project whose resources the binding covers.
    pub fn project(&self) -> &str {
        &self.project
    }

    /// The locations the binding covers.
    pub fn locations(&self) -> &LocationFilter {
        &self.locations
    }

    /// The kinds the binding has a selector for, in [`ResourceKind::ALL`] order: together
    /// with [`BindingMatcher::project`] and [`BindingMatcher::locations`], the lists a pass
    /// must read.
    pub fn kinds(&self) -> impl Iterator<Item = ResourceKind> + '_ {
        ResourceKind::ALL
            .into_iter()
            .filter(|&k| self.kinds[kind_index(k)].is_some())
    }

    /// Whether the binding covers the resource (the reference semantics of this module).
    pub fn matches(&self, resource: &ObservedResource) -> bool {
        let id = &resource.id;
        !resource.deleted
            && id.project == self.project
            && self.locations.contains(&id.location)
            && self.kinds[kind_index(id.kind)]
                .as_ref()
                .is_some_and(|s| s.matches(&id.name, &resource.labels))
    }
}

/// An estate of observed resources indexed for matching: deleted resources dropped, one
/// entry per [`ResourceId`], sorted by id, grouped by (kind, project, location).
///
/// When the input holds the same id twice (a list that shifted between pages), the entry
/// kept is chosen by content, never by input order, so results stay order-independent.
#[derive(Clone, Debug)]
pub struct Inventory<'r> {
    resources: Vec<&'r ObservedResource>,
    /// (kind, project, location) → index range into `resources`.
    groups: BTreeMap<(ResourceKind, &'r str, &'r str), Range<usize>>,
}

impl<'r> Inventory<'r> {
    /// Indexes an estate.
    pub fn new<I>(resources: I) -> Self
    where
        I: IntoIterator<Item = &'r ObservedResource>,
    {
        let mut resources: Vec<&'r ObservedResource> =
            resources.into_iter().filter(|r| !r.deleted).collect();
        resources.sort_unstable_by(|a, b| {
            a.id.cmp(&b.id)
                .then_with(|| content_key(a).cmp(&content_key(b)))
        });
        resources.dedup_by(|later, earlier| later.id == earlier.id);
        let mut groups: BTreeMap<(ResourceKind, &'r str, &'r str), Range<usize>> = BTreeMap::new();
        for (i, r) in resources.iter().enumerate() {
            let key = (r.id.kind, r.id.project.as_str(), r.id.location.as_str());
            groups.entry(key).or_insert(i..i).end = i + 1;
        }
        Self { resources, groups }
    }

    /// The indexed resources, sorted by id.
    pub fn resources(&self) -> &[&'r ObservedResource] {
        &self.resources
    }

    /// Position of a resource in [`Inventory::resources`].
    pub fn position(&self, id: &ResourceId) -> Option<usize> {
        self.resources.binary_search_by(|r| r.id.cmp(id)).ok()
    }

    /// Indices (into [`Inventory::resources`], ascending) of every resource the binding
    /// matches. Same answer as filtering with [`BindingMatcher::matches`].
    pub fn matching(&self, matcher: &BindingMatcher) -> Vec<usize> {
        let mut out = Vec::new();
        for kind in ResourceKind::ALL {
            let Some(selector) = &matcher.kinds[kind_index(kind)] else {
                continue;
            };
            let project = matcher.project.as_str();
            let mut visit = |range: &Range<usize>| {
                selector.collect(&self.resources[range.clone()], range.start, &mut out);
            };
            match &matcher.locations {
                LocationFilter::Any => {
                    for (_, range) in self
                        .groups
                        .range((kind, project, "")..)
                        .take_while(|((k, p, _), _)| *k == kind && *p == project)
                    {
                        visit(range);
                    }
                }
                LocationFilter::Only(locations) => {
                    for location in locations {
                        if let Some(range) = self.groups.get(&(kind, project, location.as_str())) {
                            visit(range);
                        }
                    }
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// Orders duplicates of one id by content, so the one kept does not depend on input order.
fn content_key(r: &ObservedResource) -> impl Ord + '_ {
    (&r.policy, &r.breakglass, &r.deploy_blocked, &r.labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::LabelSelectorRequirement;
    use crate::policy::ObservedPolicy;
    use crate::testing::spec;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn req(key: &str, operator: LabelOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| (*v).to_owned()).collect(),
        }
    }

    #[test]
    fn globs_match_whole_names_with_star_and_question_mark() {
        for (glob, name, ok) in [
            ("checkout", "checkout", true),
            ("checkout", "checkout-2", false),
            ("payments-*", "payments-eu", true),
            ("payments-*", "payments-", true),
            ("payments-*", "payments", false),
            ("*", "anything", true),
            ("*-prod", "api-prod", true),
            ("*-prod", "api-prod-2", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "abbc", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            (
                "*a*a*a*b",
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                false,
            ),
            ("??", "ab", true),
            ("??", "abc", false),
            ("x**y", "xy", true),
        ] {
            assert_eq!(Glob::new(glob).matches(name), ok, "{glob} vs {name}");
        }
        assert_eq!(Glob::new("pay-*-eu").literal_prefix(), "pay-");
        assert!(Glob::new("pay").is_literal());
    }

    #[test]
    fn name_sets_match_any_entry() {
        let set = NameSet::new(&["checkout", "payments-*", "checkout"]);
        assert!(set.matches("checkout"));
        assert!(set.matches("payments-1"));
        assert!(!set.matches("search"));
        assert!(NameSet::new::<&str>(&[]).is_empty());
    }

    #[test]
    fn label_selectors_follow_kubernetes_semantics() {
        let prod: Labels = labels(&[("env", "prod"), ("tier", "critical")]).into();
        let dev: Labels = labels(&[("env", "dev")]).into();
        let none = Labels::default();
        let sel =
            |match_labels: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>| LabelSelector {
                match_labels: labels(match_labels),
                match_expressions: exprs,
            };
        let env_prod = sel(&[("env", "prod")], vec![]);
        assert!(label_selector_matches(&env_prod, &prod));
        assert!(!label_selector_matches(&env_prod, &dev));
        assert!(!label_selector_matches(&env_prod, &none));

        let in_ = sel(
            &[],
            vec![req("tier", LabelOperator::In, &["critical", "high"])],
        );
        assert!(label_selector_matches(&in_, &prod));
        assert!(
            !label_selector_matches(&in_, &dev),
            "In needs the label present"
        );

        let not_in = sel(&[], vec![req("env", LabelOperator::NotIn, &["dev"])]);
        assert!(label_selector_matches(&not_in, &prod));
        assert!(!label_selector_matches(&not_in, &dev));
        assert!(
            label_selector_matches(&not_in, &none),
            "NotIn holds when absent"
        );

        let exists = sel(&[], vec![req("tier", LabelOperator::Exists, &[])]);
        assert!(label_selector_matches(&exists, &prod));
        assert!(!label_selector_matches(&exists, &dev));

        let absent = sel(&[], vec![req("tier", LabelOperator::DoesNotExist, &[])]);
        assert!(!label_selector_matches(&absent, &prod));
        assert!(label_selector_matches(&absent, &dev));

        let all = sel(
            &[("env", "prod")],
            vec![req("tier", LabelOperator::Exists, &[])],
        );
        assert!(label_selector_matches(&all, &prod));
        assert!(!label_selector_matches(
            &all,
            &labels(&[("env", "prod")]).into()
        ));
    }

    fn resource(kind: ResourceKind, project: &str, location: &str, name: &str) -> ObservedResource {
        ObservedResource {
            id: ResourceId {
                kind,
                project: project.into(),
                location: location.into(),
                name: name.into(),
            },
            labels: Labels::default(),
            deleted: false,
            policy: ObservedPolicy::None,
            breakglass: None,
            deploy_blocked: None,
            last_change: None,
            running: Default::default(),
        }
    }

    #[test]
    fn bindings_match_project_location_kind_names_labels_and_excludes() {
        let m = BindingMatcher::new(&spec(serde_json::json!({
            "targets": {"services": {
                "names": ["checkout", "payments-*"],
                "labelSelector": {"matchLabels": {"env": "prod"}},
                "exclude": ["payments-sandbox"]
            }}
        })));
        let prod = |mut r: ObservedResource| {
            r.labels = labels(&[("env", "prod")]).into();
            r
        };
        let svc = |name| {
            prod(resource(
                ResourceKind::Service,
                "acme-prod",
                "us-central1",
                name,
            ))
        };
        assert!(m.matches(&svc("checkout")));
        assert!(m.matches(&svc("payments-eu")));
        assert!(!m.matches(&svc("payments-sandbox")), "excluded");
        assert!(!m.matches(&svc("search")), "name not listed");
        assert!(
            !m.matches(&resource(
                ResourceKind::Service,
                "acme-prod",
                "us-central1",
                "checkout"
            )),
            "labels must match too"
        );
        assert!(
            !m.matches(&prod(resource(
                ResourceKind::Job,
                "acme-prod",
                "us-central1",
                "checkout"
            ))),
            "no job selector"
        );
        assert!(
            !m.matches(&prod(resource(
                ResourceKind::Service,
                "acme-dev",
                "us-central1",
                "checkout"
            ))),
            "other project"
        );
        assert!(
            !m.matches(&prod(resource(
                ResourceKind::Service,
                "acme-prod",
                "europe-west1",
                "checkout"
            ))),
            "other location"
        );
        let mut deleted = svc("checkout");
        deleted.deleted = true;
        assert!(!m.matches(&deleted), "deleted resources never match");

        assert_eq!(m.project(), "acme-prod");
        assert_eq!(m.kinds().collect::<Vec<_>>(), [ResourceKind::Service]);
        assert_eq!(
            m.locations(),
            &LocationFilter::Only(vec!["us-central1".to_owned()])
        );

        let everywhere = BindingMatcher::new(&spec(serde_json::json!({"locations": ["*"]})));
        assert_eq!(everywhere.locations(), &LocationFilter::Any);
        assert!(everywhere.matches(&resource(
            ResourceKind::Service,
            "acme-prod",
            "asia-east1",
            "x"
        )));
        assert!(!everywhere.matches(&resource(
            ResourceKind::Service,
            "acme-dev",
            "asia-east1",
            "x"
        )));

        let labels_only = BindingMatcher::new(&spec(serde_json::json!({
            "targets": {"workerPools": {"labelSelector": {"matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["critical"]}]}}}
        })));
        let mut pool = resource(ResourceKind::WorkerPool, "acme-prod", "us-central1", "q");
        assert!(!labels_only.matches(&pool));
        pool.labels = labels(&[("tier", "critical")]).into();
        assert!(labels_only.matches(&pool));
    }

    #[test]
    fn a_selector_without_names_or_labels_matches_nothing() {
        let m = BindingMatcher::new(&spec(serde_json::json!({"targets": {"services": {}}})));
        let r = resource(ResourceKind::Service, "acme-prod", "us-central1", "x");
        assert!(!m.matches(&r));
        assert!(Inventory::new([&r]).matching(&m).is_empty());
    }

    #[test]
    fn the_index_agrees_with_the_reference_semantics() {
        let mut estate = Vec::new();
        for kind in ResourceKind::ALL {
            for project in ["acme-prod", "acme-dev"] {
                for location in ["us-central1", "europe-west1", "asia-east1"] {
                    for name in ["api", "pay-1", "pay-2", "pay-eu", "payx", "web", "web-1"] {
                        let mut r = resource(kind, project, location, name);
                        if name.ends_with('1') {
                            r.labels = labels(&[("env", "prod")]).into();
                        }
                        estate.push(r);
                    }
                }
            }
        }
        estate[3].deleted = true;
        let inventory = Inventory::new(&estate);
        for targets in [
            serde_json::json!({"services": {"names": ["pay-*", "pay-1", "api"]}}),
            serde_json::json!({"services": {"names": ["pay-?"], "exclude": ["pay-2"]}}),
            serde_json::json!({"jobs": {"names": ["*-1", "web"]}}),
            serde_json::json!({"workerPools": {"labelSelector": {"matchLabels": {"env": "prod"}}}}),
            serde_json::json!({"services": {"names": ["nothing"]}, "jobs": {"names": ["pay*"]}}),
        ] {
            for locations in [
                serde_json::json!(["*"]),
                serde_json::json!(["europe-west1", "us-central1"]),
            ] {
                let m = BindingMatcher::new(&spec(serde_json::json!({
                    "targets": targets, "locations": locations
                })));
                let got: Vec<&ResourceId> = inventory
                    .matching(&m)
                    .into_iter()
                    .map(|i| &inventory.resources()[i].id)
                    .collect();
                let mut want: Vec<&ResourceId> = estate
                    .iter()
                    .filter(|r| m.matches(r))
                    .map(|r| &r.id)
                    .collect();
                want.sort();
                assert_eq!(got, want, "{targets} in {locations}");
                assert!(!want.is_empty() || targets.to_string().contains("nothing"));
            }
        }
    }

    #[test]
    fn duplicate_ids_keep_one_entry_whatever_the_input_order() {
        let a = resource(ResourceKind::Service, "acme-prod", "us-central1", "x");
        let mut b = a.clone();
        b.policy = ObservedPolicy::ProjectDefault;
        let one = Inventory::new([&a, &b]);
        let two = Inventory::new([&b, &a]);
        assert_eq!(one.resources().len(), 1);
        assert_eq!(one.resources()[0], two.resources()[0]);
        assert_eq!(one.position(&a.id), Some(0));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// The definition, written recursively: slow and obviously right.
    fn reference(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.first(), name.first()) {
            (None, _) => name.is_empty(),
            (Some(b'*'), _) => {
                reference(&pattern[1..], name)
                    || (!name.is_empty() && reference(pattern, &name[1..]))
            }
            (Some(_), None) => false,
            (Some(&p), Some(&n)) => (p == b'?' || p == n) && reference(&pattern[1..], &name[1..]),
        }
    }

    proptest! {
        #[test]
        fn globs_agree_with_the_definition(pattern in "[ab*?-]{0,8}", name in "[ab-]{0,10}") {
            prop_assert_eq!(
                Glob::new(&pattern).matches(&name),
                reference(pattern.as_bytes(), name.as_bytes()),
                "{} vs {}", pattern, name
            );
        }
    }
}
