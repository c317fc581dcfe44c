//! Coverage: the Cloud Run resources of a project that no binding matches — the list a security team works through. Not an error.
//!
//! Computed over the resources the bindings' reads listed (one list per region and kind
//! some binding of the project selects), so it costs no read of its own; a region or kind
//! no binding selects is not listed, and its resources are not counted (the report says
//! which regions and kinds were listed).

use std::collections::BTreeSet;

use crate::api::ResourceKind;
use crate::matching::BindingMatcher;
use crate::resource::ObservedResource;

use super::BindingInput;

/// How many names of uncovered resources a report lists per kind.
pub const UNCOVERED_NAMES: usize = 20;

/// The resources of one kind in one project that no binding matches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uncovered {
    /// How many.
    pub count: usize,
    /// The first [`UNCOVERED_NAMES`] of them, as `location/name`, sorted.
    pub first: Vec<String>,
}

/// Coverage of one project by its bindings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProjectCoverage {
    /// Resources listed (not deleted), by kind in [`ResourceKind::ALL`] order.
    pub listed: [usize; 3],
    /// Resources no binding matches, by kind in [`ResourceKind::ALL`] order.
    pub uncovered: [Uncovered; 3],
    /// The regions listed resources are in, sorted.
    pub locations: BTreeSet<String>,
    /// The kinds some binding of the project selects (the kinds listed).
    pub kinds: Vec<ResourceKind>,
}

impl ProjectCoverage {
    /// The uncovered resources of `kind`.
    pub fn of(&self, kind: ResourceKind) -> &Uncovered {
        &self.uncovered[index(kind)]
    }

    /// How many resources no binding matches, every kind together.
    pub fn total_uncovered(&self) -> usize {
        self.uncovered.iter().map(|u| u.count).sum()
    }
}

fn index(kind: ResourceKind) -> usize {
    match kind {
        ResourceKind::Service => 0,
        ResourceKind::Job => 1,
        ResourceKind::WorkerPool => 2,
    }
}

/// The coverage of `project` by `bindings` (every binding naming it, suspended or not:
/// a suspended binding still declares the resource) over the `resources` listed for it.
/// Resources of other projects and deleted ones are ignored.
pub fn coverage<'r>(
    project: &str,
    bindings: &[BindingInput<'_>],
    resources: impl IntoIterator<Item = &'r ObservedResource>,
) -> ProjectCoverage {
    let matchers: Vec<BindingMatcher> = bindings
        .iter()
        .filter(|b| b.spec.project == project)
        .map(|b| BindingMatcher::new(b.spec))
        .collect();
    let mut out = ProjectCoverage {
        kinds: ResourceKind::ALL
            .into_iter()
            .filter(|k| matchers.iter().any(|m| m.kinds().any(|mk| mk == *k)))
            .collect(),
        ..ProjectCoverage::default()
    };
    let mut names: [Vec<String>; 3] = Default::default();
    for resource in resources {
        let id = &resource.id;
        if id.project != project || resource.deleted {
            continue;
        }
        let i = index(id.kind);
        out.listed[i] += 1;
        out.locations.insert(id.location.clone());
        if !matchers.iter().any(|m| m.matches(resource)) {
            out.uncovered[i].count += 1;
            names[i].push(format!("{}/{}", id.location, id.name));
        }
    }
    for (uncovered, mut names) in out.uncovered.iter_mut().zip(names) {
        names.sort();
        names.dedup();
        names.truncate(UNCOVERED_NAMES);
        uncovered.first = names;
    }
    out
}
