//! Shared helpers of the emulator test suites: start an in-process emulator and speak raw
//! HTTP + JSON to it.

use cloudrun_emulator::{EmulatorConfig, EmulatorHandle, Faults, Seed};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The example estate shipped for the demo.
pub const EXAMPLE_SEED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cloudrun-seed.yaml");

/// An emulator on 127.0.0.1:<free port> and an HTTP client for it.
pub struct Emu {
    pub handle: EmulatorHandle,
    pub url: String,
    pub http: reqwest::Client,
}

/// A response: status and JSON body (`Value::Null` when the body is empty or not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    /// The Google error envelope's `error.status`.
    pub fn error_status(&self) -> &str {
        self.body["error"]["status"].as_str().unwrap_or("")
    }

    /// The detail of the error envelope with this `@type` suffix (`ErrorInfo`, ...).
    pub fn detail(&self, type_suffix: &str) -> Value {
        self.body["error"]["details"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|d| {
                d["@type"]
                    .as_str()
                    .is_some_and(|t| t == format!("type.googleapis.com/google.rpc.{type_suffix}"))
            })
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Asserts the Google error envelope: HTTP code, `error.code`, `error.status`.
    pub fn assert_error(&self, http: u16, status: &str) {
        assert_eq!(self.status.as_u16(), http, "{:#}", self.body);
        assert_eq!(self.body["error"]["code"], json!(http), "{:#}", self.body);
        assert_eq!(
            self.body["error"]["status"],
            json!(status),
            "{:#}",
            self.body
        );
        assert!(self.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

pub async fn start_with(seed: Seed, faults: Faults) -> Emu {
    let handle = cloudrun_emulator::start(EmulatorConfig {
        seed,
        faults,
        ..EmulatorConfig::default()
    })
    .await
    .expect("emulator starts");
    let url = handle.url();
    Emu {
        handle,
        url,
        http: reqwest::Client::new(),
    }
}

/// The example estate, no faults.
pub async fn start_example() -> Emu {
    start_with(example_seed(), Faults::default()).await
}

pub fn example_seed() -> Seed {
    Seed::from_file(EXAMPLE_SEED.as_ref()).expect("example seed loads")
}

impl Emu {
    /// `GET /v2/{name}`, asserted 200: the resource as the API returns it.
    pub async fn read(&self, name: &str) -> Value {
        let reply = self.get(&format!("/v2/{name}")).await;
        assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
        reply.body
    }

    /// A raw call with a bearer token and the given caller tag.
    pub async fn call_as(
        &self,
        client: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth("test-token")
            .header("x-emulator-client", client);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request completes");
        reply(response).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call_as("tests", Method::GET, path, None).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Reply {
        self.call_as("tests", Method::PATCH, path, Some(body)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.call_as("tests", Method::POST, path, Some(body)).await
    }

    /// An admin call (`/_emulator/...`), without credentials.
    pub async fn admin(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}/_emulator{path}", self.url));
        if let Some(body) = body {
            request = request.json(body);
        }
        reply(request.send().await.expect("admin request completes")).await
    }

    /// Every item of a v2 list, following `nextPageToken`.
    pub async fn list_all(&self, parent_and_collection: &str, page_size: usize) -> Vec<Value> {
        let key = parent_and_collection
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let mut items = Vec::new();
        let mut token = String::new();
        loop {
            let reply = self
                .get(&format!(
                    "/v2/{parent_and_collection}?pageSize={page_size}&pageToken={token}"
                ))
                .await;
            assert_eq!(reply.status, StatusCode::OK, "{:#}", reply.body);
            items.extend(reply.body[&key].as_array().cloned().unwrap_or_default());
            match reply.body["nextPageToken"].as_str() {
                Some(next) if !next.is_empty() => token = next.to_string(),
                _ => return items,
            }
        }
    }
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    Reply {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        headers,
    }
}

/// Names (last segment) of listed resources.
pub fn ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| {
            i["name"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// `GET /v2/{name}` on the emulator at `base_url`, as any API client reads a resource.
pub async fn get_resource(base_url: &str, name: &str) -> Value {
    let url = format!("{base_url}/v2/{name}");
    reqwest::Client::new()
        .get(&url)
        .bearer_auth("test")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: not JSON: {e}"))
}
