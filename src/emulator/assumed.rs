//! Every emulator behaviour that no source settles (marked **(assumed)** in cloudrun-api.md), in one place.
//!
//! The real Cloud Run Admin API does not document these. They are implemented as written
//! here; change them here and nowhere else. Besides the items below:
//! - resource, operation and policy names in responses carry the project **id**, also when
//!   the request addressed the project by number;
//! - a write that changes nothing at all bumps nothing (no new generation or etag) and is
//!   not in the audit log;
//! - a write whose operation fails (the `operationFailureRate` fault) leaves the resource
//!   unchanged;
//! - an etag is `"<base64 version>/<base64 name>"`, the version being `updateTime` in
//!   microseconds; the ABORTED message quotes those versions.

use std::time::Duration;

/// Largest page a v2 list answers; larger `pageSize` values are capped to it **(assumed)**.
pub const MAX_PAGE_SIZE: usize = 100;

/// Page size used when `pageSize` is absent or `0` **(assumed)**.
pub const DEFAULT_PAGE_SIZE: usize = MAX_PAGE_SIZE;

/// Largest page of the v1 locations list **(assumed)**.
pub const MAX_LOCATIONS_PAGE_SIZE: usize = 100;

/// Longest time one `operations/{id}:wait` call blocks, and what it waits when the body
/// carries no `timeout` **(assumed)**.
pub const MAX_OPERATION_WAIT: Duration = Duration::from_secs(60);

/// A `breakglassJustification` is accepted with `useDefault: true` or with a named `policy`,
/// and refused when Binary Authorization is disabled **(assumed)**.
pub fn breakglass_allowed(binary_authorization_enabled: bool) -> bool {
    binary_authorization_enabled
}

/// The `etag` of a write is checked only when the request body carries one; a body without
/// an etag is applied unconditionally **(assumed)**.
pub fn etag_checked(body_etag: Option<&str>) -> bool {
    body_etag.is_some_and(|etag| !etag.is_empty())
}

/// A PATCH that changes only `binaryAuthorization` (no template change) bumps `generation`,
/// `etag` and `updateTime` but creates no revision **(assumed)**.
pub fn creates_revision(template_changed: bool, force_new_revision: bool) -> bool {
    template_changed || force_new_revision
}

/// A PATCH of a service or worker pool without an `updateMask` replaces the whole resource
/// (server-managed output fields are kept), like a job PATCH **(assumed)**.
pub const MISSING_UPDATE_MASK_REPLACES_WHOLE_RESOURCE: bool = true;

/// Listing a region that the project does not have answers 404 NOT_FOUND **(assumed)**;
/// a region it has but with no resources answers an empty list (`{}`).
pub const UNKNOWN_LOCATION_IS_NOT_FOUND: bool = true;

/// The message of a write naming a Binary Authorization policy that does not exist; the
/// call fails with 400 INVALID_ARGUMENT **(assumed)**.
pub fn unknown_policy_message(policy: &str) -> String {
    format!("Binary Authorization policy '{policy}' was not found.")
}
