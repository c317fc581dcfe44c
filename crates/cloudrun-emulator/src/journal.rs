//! The request log and call counters: what every API call was, who made it and how it ended.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::faults::Access;

/// One API call as the emulator answered it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    /// Increasing sequence number (survives the log's size limit; use it with `since`).
    pub seq: u64,
    /// When the call arrived, RFC 3339.
    pub time: String,
    /// API method: `services.list`, `jobs.patch`, `operations.wait`, `locations.list`,
    /// `platformPolicies.get`, ... or `unknown` for a path the API does not serve.
    pub method: String,
    /// HTTP method.
    pub http_method: String,
    /// Request path and query.
    pub path: String,
    /// The resource, parent or operation named by the call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// HTTP status answered; 0 when the connection was reset without a response.
    pub code: u16,
    /// The caller tag: the `x-emulator-client` header, else the User-Agent.
    pub client: String,
}

/// Calls of one method that ended with one status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCount {
    /// API method.
    pub method: String,
    /// HTTP status (0: connection reset).
    pub code: u16,
    /// How many.
    pub count: u64,
}

/// Call counters, optionally restricted to one caller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Per method and status, sorted by method then status.
    pub calls: Vec<CallCount>,
    /// Read calls (list, get, operations, locations, policies), whatever their status.
    pub reads: u64,
    /// Write calls (patch), whatever their status.
    pub writes: u64,
    /// Resource changes made through the API (a write that changed something).
    pub changes: u64,
}

/// Request log (bounded, oldest dropped first) and exact counters.
#[derive(Debug)]
pub struct Journal {
    log: VecDeque<RequestRecord>,
    limit: usize,
    next_seq: u64,
    counts: BTreeMap<(String, String, u16), (Option<Access>, u64)>,
}

impl Journal {
    /// A journal keeping at most `limit` requests.
    pub fn new(limit: usize) -> Self {
        Journal {
            log: VecDeque::new(),
            limit,
            next_seq: 0,
            counts: BTreeMap::new(),
        }
    }

    /// Records one call; `access` is `None` for a path the API does not serve.
    pub fn record(&mut self, mut record: RequestRecord, access: Option<Access>) {
        self.next_seq += 1;
        record.seq = self.next_seq;
        let key = (record.method.clone(), record.client.clone(), record.code);
        self.counts.entry(key).or_insert((access, 0)).1 += 1;
        if self.limit > 0 {
            if self.log.len() == self.limit {
                self.log.pop_front();
            }
            self.log.push_back(record);
        }
    }

    /// Requests with `seq > since`, optionally only from `client` / of `method`.
    pub fn requests(
        &self,
        since: u64,
        client: Option<&str>,
        method: Option<&str>,
    ) -> Vec<RequestRecord> {
        self.log
            .iter()
            .filter(|r| r.seq > since)
            .filter(|r| client.is_none_or(|c| r.client == c))
            .filter(|r| method.is_none_or(|m| r.method == m))
            .cloned()
            .collect()
    }

    /// Counters over every call, or only `client`'s; `changes` is supplied by the store.
    pub fn counters(&self, client: Option<&str>, changes: u64) -> Counters {
        let mut calls: BTreeMap<(String, u16), u64> = BTreeMap::new();
        let (mut reads, mut writes) = (0, 0);
        for ((method, caller, code), (access, count)) in &self.counts {
            if client.is_some_and(|c| c != caller) {
                continue;
            }
            *calls.entry((method.clone(), *code)).or_default() += count;
            match access {
                Some(Access::Read) => reads += count,
                Some(Access::Write) => writes += count,
                None => {}
            }
        }
        Counters {
            calls: calls
                .into_iter()
                .map(|((method, code), count)| CallCount {
                    method,
                    code,
                    count,
                })
                .collect(),
            reads,
            writes,
            changes,
        }
    }

    /// Forgets every call.
    pub fn clear(&mut self) {
        self.log.clear();
        self.counts.clear();
    }
}
