//! The Cloud Run Admin API v2 wire model: the fields the operator reads, every other field
//! kept verbatim.
//!
//! Field names and encodings follow Google's discovery documents
//! (`run_v2_messages.py` in the Google Cloud SDK). Guarantees:
//! - Every JSON field a type does not model is kept in its `other` map and serialized back
//!   unchanged, so a resource read and written back (the job read-modify-write) loses
//!   nothing. Modelled fields are `Option`s so absent stays absent.
//! - int64 fields are JSON strings on the wire ([`Int64`]); numbers are accepted too.
//! - Enum fields keep the raw value ([`EnumValue`]: a name, or a number under
//!   `$alt=json;enum-encoding=int`), so an enum value this client has never heard of
//!   parses and round-trips.
//! - [`BinaryAuthorization::for_remediation`] can only produce `useDefault: true` or a
//!   non-empty `policy`: the value the operator writes never disables Binary Authorization.
//!
//! # Parts
//! - `values`: the wire scalars ([`Int64`], [`EnumValue`]).
//! - `conditions`: conditions and their state and reason enums.
//! - `resource`: a service, job or worker pool, its `binaryAuthorization`, and the body
//!   of the one write.
//! - `names`: the parts of a v2 resource name.
//! - `responses`: list pages, locations, long-running operations, and the bound on a
//!   response's JSON values.

mod conditions;
mod names;
mod resource;
mod responses;
#[cfg(test)]
mod tests;
mod values;

pub use conditions::{CommonReason, Condition, ConditionState, ExecutionReason, RevisionReason};
pub use names::NameParts;
pub use resource::{masked_remediation_body, BinaryAuthorization, Resource};
pub use responses::{json_values_at_most, ListPage, Location, LocationsPage, Operation};
pub use values::{EnumValue, Int64};
