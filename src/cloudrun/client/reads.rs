//! Reads: lists and gets of services, jobs and worker pools, and the regions of a project.

use std::collections::{BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, BoxStream, StreamExt, TryStreamExt};
use serde::Deserialize;

use super::transport::{check_id, check_segments, lock};
use super::{Call, CloudRunClient, LiveResource, MAX_DETAIL, MAX_NAME_IN_ERROR};
use crate::cloudrun::error::{clip, Error, Result};
use crate::cloudrun::model::{ListPage, LocationsPage, Resource};
use crate::cloudrun::observe::ApiMethod;
use crate::cloudrun::ratelimit::Budget;
use crate::resource::{ResourceId, ResourceKind};

impl CloudRunClient {
    /// Lists the resources of `kind` in (project, location), one page (`pageSize` 100) per
    /// stream item, following `nextPageToken` to the end. Deleted resources are not listed.
    /// The stream ends after the first error.
    pub fn list(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
    ) -> BoxStream<'static, Result<Vec<LiveResource>>> {
        let client = self.clone();
        let scope = Arc::new((project.to_owned(), location.to_owned()));
        let tokens = PageTokens::new(self.inner.config.max_list_pages);
        stream::try_unfold((Some(String::new()), tokens), move |(token, mut tokens)| {
            let client = client.clone();
            let scope = Arc::clone(&scope);
            async move {
                let Some(token) = token else {
                    return Ok(None);
                };
                let (project, location) = &*scope;
                let (items, next) = client.list_page(project, location, kind, &token).await?;
                let next = tokens.follow(next).map_err(|detail| Error::Decode {
                    target: format!(
                        "{} projects/{project}/locations/{location}",
                        ApiMethod::list(kind)
                    ),
                    detail,
                })?;
                Ok(Some((items, (next, tokens))))
            }
        })
        .boxed()
    }

    /// Every resource of `kind` in (project, location): [`CloudRunClient::list`], collected.
    pub async fn list_all(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
    ) -> Result<Vec<LiveResource>> {
        let pages: Vec<Vec<LiveResource>> =
            self.list(project, location, kind).try_collect().await?;
        // Sized once: a flattening collect doubles its buffer as it goes, and a controller
        // lists every collection of its fleet.
        let mut all = Vec::with_capacity(pages.iter().map(Vec::len).sum());
        for page in pages {
            all.extend(page);
        }
        Ok(all)
    }

    pub(super) async fn list_page(
        &self,
        project: &str,
        location: &str,
        kind: ResourceKind,
        token: &str,
    ) -> Result<(Vec<LiveResource>, Option<String>)> {
        let parent = format!("projects/{project}/locations/{location}");
        check_segments(
            || format!("{} {parent}", ApiMethod::list(kind)),
            &[("project", project), ("location", location)],
        )?;
        let mut query = vec![("pageSize", self.inner.config.page_size.to_string())];
        if !token.is_empty() {
            query.push(("pageToken", token.to_owned()));
        }
        let call = Call {
            method: ApiMethod::list(kind),
            verb: reqwest::Method::GET,
            url: format!(
                "{}/v2/{parent}/{}",
                self.inner.config.cloud_run_base_url,
                kind.collection()
            ),
            query,
            body: None,
            budget: Some(Budget::Read),
            prepaid: None,
            project,
            location,
            resource: parent,
            timeout: self.inner.config.request_timeout,
            deadline: None,
        };
        let target = call.target();
        let page: ListPage = self.execute(call).await?;
        let items = page
            .items
            .into_iter()
            .map(|item| {
                let resource: Resource = serde_json::from_str(item.get()).map_err(|err| {
                    #[derive(Deserialize)]
                    struct Named {
                        name: String,
                    }
                    let name = serde_json::from_str::<Named>(item.get())
                        .map_or_else(|_| "(unnamed)".to_owned(), |n| n.name);
                    Error::Decode {
                        target: target.clone(),
                        detail: format!(
                            "resource {} is malformed: {}",
                            clip(&name, MAX_NAME_IN_ERROR),
                            clip(&err.to_string(), MAX_DETAIL)
                        ),
                    }
                })?;
                let id = match resource.name_parts() {
                    Some(parts) if parts.kind == kind => ResourceId {
                        kind,
                        project: project.to_owned(),
                        location: location.to_owned(),
                        name: parts.id.to_owned(),
                    },
                    _ => {
                        return Err(Error::Decode {
                            target: target.clone(),
                            detail: format!(
                                "listed resource name {:?} is not a {kind} name",
                                clip(&resource.name, MAX_NAME_IN_ERROR)
                            ),
                        })
                    }
                };
                LiveResource::listed(id, resource).map_err(|err| Error::Decode {
                    target: target.clone(),
                    detail: format!("cannot keep the listed resource: {err}"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((items, page.next_page_token))
    }

    /// Reads one resource. A missing one is [`Error::NotFound`].
    pub async fn get(&self, id: &ResourceId) -> Result<LiveResource> {
        let name = id.resource_name();
        check_id(ApiMethod::get(id.kind), id)?;
        let resource: Resource = self
            .execute(Call {
                method: ApiMethod::get(id.kind),
                verb: reqwest::Method::GET,
                url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
                query: Vec::new(),
                body: None,
                budget: Some(Budget::Read),
                prepaid: None,
                project: &id.project,
                location: &id.location,
                resource: name,
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await?;
        LiveResource::new(id.clone(), resource).map_err(|err| Error::Decode {
            target: format!("{} {}", ApiMethod::get(id.kind), id.resource_name()),
            detail: format!("cannot keep the resource read: {err}"),
        })
    }

    /// When revision `revision` (short name) of the service or worker pool `id` was created
    /// (`GET v2/{id}/revisions/{revision}`, its `createTime`). Revisions never change, so
    /// each is read once per process (at most [`MAX_CACHED_REVISIONS`] are remembered).
    pub async fn revision_created(
        &self,
        id: &ResourceId,
        revision: &str,
    ) -> Result<jiff::Timestamp> {
        let name = format!("{}/revisions/{revision}", id.resource_name());
        if let Some(created) = lock(&self.inner.revisions).get(name.as_str()) {
            return Ok(*created);
        }
        check_id(ApiMethod::GetRevision, id)?;
        check_segments(
            || format!("{} {name}", ApiMethod::GetRevision),
            &[("revision", revision)],
        )?;
        let read: RevisionRead = self
            .execute(Call {
                method: ApiMethod::GetRevision,
                verb: reqwest::Method::GET,
                url: format!("{}/v2/{name}", self.inner.config.cloud_run_base_url),
                query: Vec::new(),
                body: None,
                budget: Some(Budget::Read),
                prepaid: None,
                project: &id.project,
                location: &id.location,
                resource: name.clone(),
                timeout: self.inner.config.request_timeout,
                deadline: None,
            })
            .await?;
        let created = read
            .create_time
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .ok_or_else(|| Error::Decode {
                target: format!("{} {name}", ApiMethod::GetRevision),
                detail: "the revision carries no valid createTime".to_owned(),
            })?;
        let mut cache = lock(&self.inner.revisions);
        if cache.len() >= MAX_CACHED_REVISIONS {
            cache.clear();
        }
        cache.insert(name.into_boxed_str(), created);
        Ok(created)
    }

    /// The Cloud Run regions of `project` (v1 locations list), sorted; cached for
    /// `regions_ttl`.
    pub async fn regions(&self, project: &str) -> Result<Vec<String>> {
        let ttl = self.inner.config.regions_ttl;
        if let Some((at, regions)) = lock(&self.inner.regions).get(project) {
            if at.elapsed() < ttl {
                return Ok(regions.clone());
            }
        }
        let parent = format!("projects/{project}");
        check_segments(
            || format!("{} {parent}", ApiMethod::ListLocations),
            &[("project", project)],
        )?;
        let mut regions = BTreeSet::new();
        let mut token = String::new();
        let mut tokens = PageTokens::new(self.inner.config.max_list_pages);
        loop {
            let mut query = vec![("pageSize", "100".to_owned())];
            if !token.is_empty() {
                query.push(("pageToken", token.clone()));
            }
            let page: LocationsPage = self
                .execute(Call {
                    method: ApiMethod::ListLocations,
                    verb: reqwest::Method::GET,
                    url: format!(
                        "{}/v1/{parent}/locations",
                        self.inner.config.cloud_run_base_url
                    ),
                    query,
                    body: None,
                    budget: Some(Budget::Read),
                    prepaid: None,
                    project,
                    location: "global",
                    resource: parent.clone(),
                    timeout: self.inner.config.request_timeout,
                    deadline: None,
                })
                .await?;
            regions.extend(
                page.locations
                    .iter()
                    .filter_map(|l| l.region())
                    .map(str::to_owned),
            );
            let next = tokens
                .follow(page.next_page_token)
                .map_err(|detail| Error::Decode {
                    target: format!("{} {parent}", ApiMethod::ListLocations),
                    detail,
                })?;
            match next {
                Some(next) => token = next,
                None => break,
            }
        }
        let regions: Vec<String> = regions.into_iter().collect();
        lock(&self.inner.regions).insert(project.to_owned(), (Instant::now(), regions.clone()));
        Ok(regions)
    }
}

/// The page tokens one list has followed.
struct PageTokens {
    /// Hashes of the tokens returned so far (a hostile token can be large).
    seen: HashSet<u64>,
    pages: u32,
    max_pages: u32,
}

impl PageTokens {
    fn new(max_pages: u32) -> Self {
        Self {
            seen: HashSet::new(),
            pages: 0,
            max_pages,
        }
    }

    /// After a page answered `next`: the token of the page to read next, `None` at the end,
    /// or why the list cannot go on — the server returned a token it had returned before
    /// (the list would loop forever) or more pages than any Cloud Run list has.
    fn follow(&mut self, next: Option<String>) -> std::result::Result<Option<String>, String> {
        self.pages += 1;
        let Some(next) = next.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        next.hash(&mut hasher);
        if !self.seen.insert(hasher.finish()) {
            return Err(
                "the server returned the same page token twice (the list would loop forever)"
                    .into(),
            );
        }
        if self.pages >= self.max_pages {
            return Err(format!(
                "the list goes on beyond {} pages; refusing to follow more",
                self.max_pages
            ));
        }
        Ok(Some(next))
    }
}

/// Most revision creation times remembered (then forgotten all at once).
pub const MAX_CACHED_REVISIONS: usize = 200_000;

/// The one field of a revision the operator reads.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RevisionRead {
    #[serde(default)]
    create_time: Option<String>,
}
