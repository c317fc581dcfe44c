//! The parts of a Cloud Run Admin API v2 resource name.

use crate::resource::ResourceKind;

/// The segments of a v2 resource name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NameParts<'a> {
    /// Project id or number.
    pub project: &'a str,
    /// Region.
    pub location: &'a str,
    /// Kind, from the collection segment.
    pub kind: ResourceKind,
    /// Resource id.
    pub id: &'a str,
}

impl<'a> NameParts<'a> {
    /// Parses `projects/{p}/locations/{l}/{services|jobs|workerPools}/{id}`.
    pub fn parse(name: &'a str) -> Option<Self> {
        let mut segments = name.split('/');
        let (Some("projects"), Some(project), Some("locations"), Some(location)) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        let collection = segments.next()?;
        let id = segments.next()?;
        if segments.next().is_some() || [project, location, id].iter().any(|s| s.is_empty()) {
            return None;
        }
        let kind = ResourceKind::ALL
            .into_iter()
            .find(|k| k.collection() == collection)?;
        Some(Self {
            project,
            location,
            kind,
            id,
        })
    }
}
