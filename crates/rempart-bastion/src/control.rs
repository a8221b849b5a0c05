//! The bastion's link to the control plane: mTLS with its machine identity
//! (role bastion), through `rempart-client` only.

use anyhow::{Context, Result};
use rempart_api::{GrantCheck, OpenSession, SessionGrant};
use rempart_client::{Client, ClientOptions};
use rempart_core::Secret;

use crate::config;

/// Whether an error is the control plane's final answer about what was
/// sent (a bad or conflicting request): sending it again cannot help.
pub fn is_final_refusal(err: &anyhow::Error) -> bool {
    matches!(
        err.downcast_ref::<rempart_client::ClientError>(),
        Some(rempart_client::ClientError::Api { status, .. })
            if (400..500).contains(status) && ![401, 403, 408, 429].contains(status)
    )
}

/// What became of a batch of events the control plane answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Stored,
    /// Stored but for these lines (1-based), refused with these reasons.
    Partly(Vec<(u64, String)>),
    Refused(String),
}

#[derive(Debug, Clone)]
pub struct ControlPlane {
    client: Client,
}

impl ControlPlane {
    pub fn connect(settings: &config::ControlPlane) -> Result<ControlPlane> {
        let read = |path: &std::path::Path, what: &str| {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the {what} {}", path.display()))
        };
        let client = Client::new(ClientOptions {
            server: settings.server.clone(),
            ca_pem: read(&settings.ca_cert, "control plane's CA certificate")?,
            token: None,
            identity: Some((
                read(&settings.cert, "machine certificate")?,
                Secret::new(read(&settings.key, "machine key")?),
            )),
        })?;
        Ok(ControlPlane { client })
    }

    /// The user CA's public key: the only issuer of certificates the
    /// bastion accepts.
    pub async fn user_ca(&self) -> Result<String> {
        Ok(self.client.ssh_authorities().await?.user_ca)
    }

    pub async fn open_session(&self, request: &OpenSession) -> Result<SessionGrant> {
        Ok(self.client.open_session(request).await?)
    }

    pub async fn check_grant(&self, user: &str, target: &str) -> Result<GrantCheck> {
        Ok(self
            .client
            .check_grant(user, &format!("host:{target}"))
            .await?)
    }

    pub async fn check_db_grant(&self, user: &str, database: &str) -> Result<GrantCheck> {
        Ok(self
            .client
            .check_grant(user, &format!("db:{database}"))
            .await?)
    }

    /// The CA whose client certificates the PostgreSQL listener accepts.
    pub async fn db_user_ca(&self) -> Result<String> {
        Ok(self.client.db_authorities().await?.user_ca_pem)
    }

    pub async fn store_recording(
        &self,
        session: &str,
        name: &str,
        sha256: &str,
        content: Vec<u8>,
    ) -> Result<()> {
        self.client
            .store_recording(session, name, sha256, content)
            .await?;
        Ok(())
    }

    pub async fn store_session(&self, summary: &rempart_api::SessionSummary) -> Result<()> {
        self.client.store_session(summary).await?;
        Ok(())
    }

    /// Appends JSON lines to the well-log. [`Delivery::Refused`] when the
    /// control plane answered that the batch itself is bad (retrying it
    /// would never succeed); an error when it could not be asked.
    pub async fn append(&self, lines: Vec<u8>) -> Result<Delivery> {
        match self.client.append_entries(lines).await {
            Ok(result) if result.rejected.is_empty() => Ok(Delivery::Stored),
            Ok(result) => Ok(Delivery::Partly(
                result
                    .rejected
                    .into_iter()
                    .map(|r| (r.line, r.error))
                    .collect(),
            )),
            Err(rempart_client::ClientError::Api {
                status: 400 | 413 | 415 | 422,
                detail,
                ..
            }) => Ok(Delivery::Refused(detail)),
            Err(err) => Err(err.into()),
        }
    }
}
