//! A client for the control plane's API, used by the `rempart` CLI and, later,
//! by the bastion, the agents and the gateway.
//!
//! [`Client`] speaks HTTPS only and trusts only the deployment's CA (given as
//! PEM in [`ClientOptions`]); it authenticates with a bearer token (people) or
//! a client certificate (machines). Every failure is a [`ClientError`] whose
//! `Display` is one line a person can act on.
//!
//! Architecture invariant: TLS settings come from `rempart-tls`; this crate
//! never builds its own, and has no way to turn certificate checks off.
#![forbid(unsafe_code)]

use std::time::Duration;

use rempart_api::{
    AppendResult, CheckpointView, ConsistencyProofView, CreateMachine, CreateUser, CreatedUser,
    EntryList, EntryView, EraseOrder, Erased, ErrorBody, Health, InclusionProofView, IssuedMachine,
    IssuedToken, Machine, MachineList, SearchResult, User, UserList, WhoAmI,
};
use rempart_core::{MachineName, Secret, UserName};
use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Everything a client needs to reach and trust the control plane.
#[derive(Debug)]
pub struct ClientOptions {
    /// `https://host:port`, without a path.
    pub server: String,
    pub ca_pem: String,
    pub token: Option<Secret<String>>,
    /// A machine identity's certificate and key (PEM).
    pub identity: Option<(String, Secret<String>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Config(String),
    #[error("cannot reach {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("refused by the server ({status} {error}): {detail}")]
    Api {
        status: u16,
        error: String,
        detail: String,
    },
    #[error("unexpected answer from the server: {0}")]
    Decode(String),
}

/// The innermost cause of a transport error: "connection refused", "invalid
/// peer certificate: UnknownIssuer", rather than reqwest's outer wrapper.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<Secret<String>>,
}

impl Client {
    pub fn new(options: ClientOptions) -> Result<Client, ClientError> {
        let base = options.server.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(ClientError::Config(format!(
                "the server URL must start with https:// (got {base:?}): Rempart speaks TLS only"
            )));
        }
        let identity = options
            .identity
            .as_ref()
            .map(|(cert, key)| rempart_tls::ClientIdentity {
                cert_pem: cert,
                key_pem: key.expose(),
            });
        let tls = rempart_tls::client_config(&options.ca_pem, identity)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Config(root_cause(&e)))?;
        Ok(Client {
            http,
            base,
            token: options.token,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::JsonBody>,
    ) -> Result<reqwest::Response, ClientError> {
        let body = match body {
            Some(body) => Some(("application/json", body.to_json()?)),
            None => None,
        };
        self.send_bytes(method, path, body).await
    }

    async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        body: Option<(&'static str, Vec<u8>)>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some((content_type, bytes)) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes);
        }
        let response = request.send().await.map_err(|e| ClientError::Unreachable {
            server: self.base.clone(),
            detail: root_cause(&e),
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api {
                status: status.as_u16(),
                error: body.error,
                detail: body.detail,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                error: status.canonical_reason().unwrap_or("error").to_owned(),
                detail: text.chars().take(200).collect(),
            },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&dyn erased::JsonBody>,
    ) -> Result<T, ClientError> {
        let response = self.send(method, path, body).await?;
        decode(response).await
    }

    /// Any GET route, as text (security.txt, metrics, the OpenAPI document).
    pub async fn get_text(&self, path: &str) -> Result<String, ClientError> {
        let response = self.send(Method::GET, path, None).await?;
        response
            .text()
            .await
            .map_err(|e| ClientError::Decode(root_cause(&e)))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        self.json(Method::GET, "/healthz", None).await
    }

    pub async fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.json(Method::GET, "/v1/whoami", None).await
    }

    pub async fn list_users(&self) -> Result<UserList, ClientError> {
        self.json(Method::GET, "/v1/users", None).await
    }

    pub async fn get_user(&self, name: &UserName) -> Result<User, ClientError> {
        self.json(Method::GET, &format!("/v1/users/{name}"), None)
            .await
    }

    pub async fn create_user(&self, request: &CreateUser) -> Result<CreatedUser, ClientError> {
        self.json(Method::POST, "/v1/users", Some(request)).await
    }

    pub async fn disable_user(&self, name: &UserName) -> Result<User, ClientError> {
        self.json(Method::POST, &format!("/v1/users/{name}/disable"), None)
            .await
    }

    pub async fn issue_token(&self, name: &UserName) -> Result<IssuedToken, ClientError> {
        self.json(Method::POST, &format!("/v1/users/{name}/token"), None)
            .await
    }

    pub async fn list_machines(&self) -> Result<MachineList, ClientError> {
        self.json(Method::GET, "/v1/machines", None).await
    }

    pub async fn create_machine(
        &self,
        request: &CreateMachine,
    ) -> Result<IssuedMachine, ClientError> {
        self.json(Method::POST, "/v1/machines", Some(request)).await
    }

    pub async fn revoke_machine(&self, name: &MachineName) -> Result<Machine, ClientError> {
        self.json(Method::POST, &format!("/v1/machines/{name}/revoke"), None)
            .await
    }

    pub async fn create_resource(
        &self,
        request: &rempart_api::CreateResource,
    ) -> Result<rempart_api::ResourceView, ClientError> {
        self.json(Method::POST, "/v1/resources", Some(request))
            .await
    }

    pub async fn list_resources(&self) -> Result<rempart_api::ResourceList, ClientError> {
        self.json(Method::GET, "/v1/resources", None).await
    }

    pub async fn create_request(
        &self,
        request: &rempart_api::CreateRequest,
    ) -> Result<rempart_api::RequestView, ClientError> {
        self.json(Method::POST, "/v1/access/requests", Some(request))
            .await
    }

    /// Requests, newest first (`state`: pending, approved, ...).
    pub async fn list_requests(
        &self,
        state: Option<&str>,
        mine: bool,
    ) -> Result<rempart_api::RequestList, ClientError> {
        let mut path = format!("/v1/access/requests?mine={mine}");
        if let Some(state) = state {
            path.push_str(&format!("&state={}", percent_encode(state)));
        }
        self.json(Method::GET, &path, None).await
    }

    pub async fn get_request(&self, id: &str) -> Result<rempart_api::RequestView, ClientError> {
        self.json(
            Method::GET,
            &format!("/v1/access/requests/{}", percent_encode(id)),
            None,
        )
        .await
    }

    /// `approve`, `deny`, `revoke` or `cancel` a request.
    pub async fn decide_request(
        &self,
        id: &str,
        verb: &str,
        text: Option<&str>,
    ) -> Result<rempart_api::RequestView, ClientError> {
        let path = format!("/v1/access/requests/{}/{verb}", percent_encode(id));
        match (verb, text) {
            ("approve", Some(comment)) => {
                let body = rempart_api::Approval {
                    comment: comment.to_owned(),
                };
                self.json(Method::POST, &path, Some(&body)).await
            }
            (_, Some(reason)) => {
                let body = rempart_api::Refusal {
                    reason: reason.to_owned(),
                };
                self.json(Method::POST, &path, Some(&body)).await
            }
            (_, None) => self.json(Method::POST, &path, None).await,
        }
    }

    pub async fn create_training_module(
        &self,
        request: &rempart_api::CreateTrainingModule,
    ) -> Result<rempart_api::TrainingModuleView, ClientError> {
        self.json(Method::POST, "/v1/training/modules", Some(request))
            .await
    }

    pub async fn training_modules(&self) -> Result<rempart_api::TrainingModuleList, ClientError> {
        self.json(Method::GET, "/v1/training/modules", None).await
    }

    pub async fn record_training(
        &self,
        request: &rempart_api::RecordTraining,
    ) -> Result<rempart_api::TrainingRecorded, ClientError> {
        self.json(Method::POST, "/v1/training/records", Some(request))
            .await
    }

    pub async fn training_status(
        &self,
        user: Option<&str>,
    ) -> Result<rempart_api::TrainingStatus, ClientError> {
        let path = match user {
            Some(user) => format!("/v1/training/status?user={}", percent_encode(user)),
            None => "/v1/training/status".to_owned(),
        };
        self.json(Method::GET, &path, None).await
    }

    /// Whether `user` may reach `resource` now (a bastion's question).
    pub async fn check_grant(
        &self,
        user: &str,
        resource: &str,
    ) -> Result<rempart_api::GrantCheck, ClientError> {
        let path = format!(
            "/v1/grants/check?user={}&resource={}",
            percent_encode(user),
            percent_encode(resource)
        );
        self.json(Method::GET, &path, None).await
    }

    /// Sends JSON lines to the well-log; the answer says what is durable.
    /// Signs the caller's public key for the bastion (`rempart login`).
    pub async fn ssh_certificate(
        &self,
        request: &rempart_api::CreateSshCertificate,
    ) -> Result<rempart_api::SshCertificate, ClientError> {
        self.json(Method::POST, "/v1/ssh/certificates", Some(request))
            .await
    }

    /// A client certificate for one database behind the bastion.
    pub async fn create_db_certificate(
        &self,
        request: &rempart_api::CreateDbCertificate,
    ) -> Result<rempart_api::DbCertificate, ClientError> {
        self.json(Method::POST, "/v1/db/certificates", Some(request))
            .await
    }

    /// The CA whose database certificates the bastion accepts.
    pub async fn db_authorities(&self) -> Result<rempart_api::DbAuthoritiesView, ClientError> {
        self.json(Method::GET, "/v1/db/authorities", None).await
    }

    /// The deployment's SSH CAs' public keys.
    pub async fn ssh_authorities(&self) -> Result<rempart_api::SshAuthoritiesView, ClientError> {
        self.json(Method::GET, "/v1/ssh/authorities", None).await
    }

    /// The bastion asks to open a session: a grant check and, on a grant, a
    /// session certificate for its key.
    pub async fn open_session(
        &self,
        request: &rempart_api::OpenSession,
    ) -> Result<rempart_api::SessionGrant, ClientError> {
        self.json(Method::POST, "/v1/bastion/sessions", Some(request))
            .await
    }

    /// The bastion stores a session's recording (asciicast v2), announcing
    /// its SHA-256.
    pub async fn store_recording(
        &self,
        session: &str,
        name: &str,
        sha256: &str,
        content: Vec<u8>,
    ) -> Result<rempart_api::RecordingStored, ClientError> {
        let path = format!(
            "/v1/sessions/{}/recordings/{}?sha256={}",
            percent_encode(session),
            percent_encode(name),
            percent_encode(sha256)
        );
        let body = Some(("application/x-asciicast", content));
        decode(self.send_bytes(Method::PUT, &path, body).await?).await
    }

    /// The bastion stores a session's summary (its recordings first).
    pub async fn store_session(
        &self,
        summary: &rempart_api::SessionSummary,
    ) -> Result<rempart_api::SessionView, ClientError> {
        self.json(Method::POST, "/v1/sessions", Some(summary)).await
    }

    pub async fn list_sessions(&self, limit: u32) -> Result<rempart_api::SessionList, ClientError> {
        self.json(Method::GET, &format!("/v1/sessions?limit={limit}"), None)
            .await
    }

    pub async fn show_session(&self, id: &str) -> Result<rempart_api::SessionView, ClientError> {
        let path = format!("/v1/sessions/{}", percent_encode(id));
        self.json(Method::GET, &path, None).await
    }

    /// A recording's bytes, as stored.
    pub async fn recording(&self, session: &str, name: &str) -> Result<Vec<u8>, ClientError> {
        let path = format!(
            "/v1/sessions/{}/recordings/{}",
            percent_encode(session),
            percent_encode(name)
        );
        let response = self.send(Method::GET, &path, None).await?;
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Decode(root_cause(&e)))
    }

    pub async fn append_entries(&self, lines: Vec<u8>) -> Result<AppendResult, ClientError> {
        let body = Some(("application/x-ndjson", lines));
        decode(
            self.send_bytes(Method::POST, "/v1/log/entries", body)
                .await?,
        )
        .await
    }

    pub async fn checkpoint(&self) -> Result<CheckpointView, ClientError> {
        self.json(Method::GET, "/v1/log/checkpoint", None).await
    }

    /// Up to `limit` entries from `from` (default: the last `limit`), only
    /// those matching `query` if given.
    pub async fn entries(
        &self,
        from: Option<u64>,
        limit: u64,
        query: Option<&str>,
    ) -> Result<EntryList, ClientError> {
        let from = from.map(|f| format!("&from={f}")).unwrap_or_default();
        let query = query
            .map(|q| format!("&q={}", percent_encode(q)))
            .unwrap_or_default();
        let path = format!("/v1/log/entries?limit={limit}{from}{query}");
        self.json(Method::GET, &path, None).await
    }

    /// Erases one entry's payload on an admin's order (the order is logged).
    pub async fn erase(&self, seq: u64, reason: &str) -> Result<Erased, ClientError> {
        let order = EraseOrder {
            reason: reason.to_owned(),
        };
        self.json(
            Method::POST,
            &format!("/v1/log/entries/{seq}/erase"),
            Some(&order),
        )
        .await
    }

    /// Incident search, newest first.
    pub async fn search(&self, query: &str, limit: u32) -> Result<SearchResult, ClientError> {
        let path = format!("/v1/log/search?limit={limit}&q={}", percent_encode(query));
        self.json(Method::GET, &path, None).await
    }

    pub async fn entry(&self, seq: u64) -> Result<EntryView, ClientError> {
        self.json(Method::GET, &format!("/v1/log/entries/{seq}"), None)
            .await
    }

    pub async fn inclusion_proof(
        &self,
        seq: u64,
        size: Option<u64>,
    ) -> Result<InclusionProofView, ClientError> {
        let size = size.map(|s| format!("&size={s}")).unwrap_or_default();
        let path = format!("/v1/log/proof/inclusion?seq={seq}{size}");
        self.json(Method::GET, &path, None).await
    }

    pub async fn consistency_proof(
        &self,
        old: u64,
        new: Option<u64>,
    ) -> Result<ConsistencyProofView, ClientError> {
        let new = new.map(|n| format!("&new={n}")).unwrap_or_default();
        let path = format!("/v1/log/proof/consistency?old={old}{new}");
        self.json(Method::GET, &path, None).await
    }
}

/// Percent-encodes a query-string value (RFC 3986: all but unreserved).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Decode(root_cause(&e)))?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
}

/// Request bodies as trait objects, so that one `send` serves every type.
mod erased {
    use super::{ClientError, Serialize};

    /// `Sync`, so that the client's futures are `Send` (callers spawn them).
    pub trait JsonBody: Sync {
        fn to_json(&self) -> Result<Vec<u8>, ClientError>;
    }

    impl<T: Serialize + Sync> JsonBody for T {
        fn to_json(&self) -> Result<Vec<u8>, ClientError> {
            serde_json::to_vec(self).map_err(|e| ClientError::Decode(e.to_string()))
        }
    }
}
