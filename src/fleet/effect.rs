//! Reads what [`crate::plan::effect`] needs: the creation times of the revisions receiving traffic of the targets that carry their policy.
//!
//! # Cost
//! Jobs cost nothing (a job carries its latest execution). Services and worker pools cost
//! one `GET v2/{resource}/revisions/{r}` per revision receiving traffic, only for targets
//! that already carry the desired policy (a target remediated in this pass needs none:
//! everything it runs predates the write), and only the first time a revision is seen:
//! revisions never change, so the client remembers their times
//! ([`crate::cloudrun::CloudRunClient::revision_created`]). After the first pass a fleet
//! costs one read per new deploy. The reads go through the read budget of their project
//! and region and are counted by the calls metric (method `GetRevision`).

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt};

use super::classify::words;
use crate::cloudrun::CloudRunClient;
use crate::plan::{revisions_to_read, BindingPlan, Decision, RevisionTimes};
use crate::resource::ResourceId;

/// Revisions read at once.
const CONCURRENT_REVISION_READS: usize = 8;

/// The creation times of the revisions receiving traffic of every target of `plans` that
/// carries its desired policy (Compliant, Breakglass). A revision that cannot be read is
/// recorded with Google's words (its target's effect is then Unknown).
pub async fn read_revisions<'p, 'r: 'p>(
    client: &CloudRunClient,
    plans: impl IntoIterator<Item = &'p BindingPlan<'r>>,
) -> RevisionTimes {
    let mut wanted: BTreeSet<(ResourceId, String)> = BTreeSet::new();
    for bp in plans {
        for target in bp.targets() {
            if !matches!(target.decision, Decision::Compliant | Decision::Breakglass) {
                continue;
            }
            let id = &target.resource.id;
            for name in revisions_to_read(target.resource) {
                if let Some(short) = name.rsplit('/').next() {
                    wanted.insert((id.clone(), short.to_owned()));
                }
            }
        }
    }
    let read = stream::iter(wanted)
        .map(|(id, revision)| async move {
            let time = client
                .revision_created(&id, &revision)
                .await
                .map_err(|err| words(&err));
            (crate::plan::revision_name(&id, &revision), time)
        })
        .buffer_unordered(CONCURRENT_REVISION_READS)
        .collect::<Vec<_>>()
        .await;
    RevisionTimes(read.into_iter().collect())
}
