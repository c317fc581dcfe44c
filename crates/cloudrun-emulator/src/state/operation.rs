//! The long-running operations writes return.

use super::*;

/// A long-running operation returned by a write.
#[derive(Clone, Debug)]
pub struct Operation {
    /// `projects/{id}/locations/{l}/operations/{uuid}`.
    pub name: String,
    /// The kind of the resource written.
    pub kind: Kind,
    /// The resource as it was when the operation started.
    pub metadata: Map<String, Value>,
    /// When the operation is done.
    pub done_at: Instant,
    /// The resource after the change, or the error the operation ends with.
    pub outcome: Result<Map<String, Value>, ApiError>,
}

impl Operation {
    /// The Operation JSON as of `now`.
    pub fn render(&self, now: Instant) -> Value {
        let typed = |resource: &Map<String, Value>| {
            let mut out = Map::new();
            out.insert("@type".into(), Value::String(self.kind.type_url().into()));
            out.extend(resource.clone());
            Value::Object(out)
        };
        let mut op = Map::new();
        op.insert("name".into(), Value::String(self.name.clone()));
        op.insert("metadata".into(), typed(&self.metadata));
        let done = now >= self.done_at;
        op.insert("done".into(), Value::Bool(done));
        if done {
            match &self.outcome {
                Ok(resource) => {
                    op.insert("response".into(), typed(resource));
                }
                Err(error) => {
                    op.insert("error".into(), error.operation_error());
                }
            }
        }
        Value::Object(op)
    }
}
