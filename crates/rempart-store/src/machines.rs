//! Machine identities: the mTLS client certificates issued by the internal CA.

use rempart_core::{MachineName, MachineRole};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::is_unique_violation;
use crate::{Store, StoreError, describe};

/// A machine identity to record, once its certificate is issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMachine {
    pub name: MachineName,
    pub role: MachineRole,
    /// Lowercase hex of the SHA-256 of the DER certificate.
    pub cert_sha256: String,
    /// The certificate's serial number, in hex.
    pub cert_serial: String,
    pub not_after_ms: i64,
    pub created_at_ms: i64,
    /// The actor who issued it (`alice`, `machine:…`).
    pub created_by: String,
}

/// A stored machine identity. A revoked one keeps its row, and its name is
/// never reused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub name: MachineName,
    pub role: MachineRole,
    pub cert_sha256: String,
    pub cert_serial: String,
    pub not_after_ms: i64,
    pub created_at_ms: i64,
    pub created_by: String,
    pub revoked_at_ms: Option<i64>,
}

const MACHINE_COLUMNS: &str =
    "name, role, cert_sha256, cert_serial, not_after_ms, created_at_ms, created_by, revoked_at_ms";

impl Machine {
    fn from_row(row: &AnyRow) -> Result<Machine, StoreError> {
        let name: String = row.try_get("name")?;
        let role: String = row.try_get("role")?;
        Ok(Machine {
            role: role.parse().map_err(|e| StoreError::Corrupt {
                detail: format!("role of machine {name:?}: {e}"),
            })?,
            name: MachineName::try_from(name.clone()).map_err(|e| StoreError::Corrupt {
                detail: format!("machine name {name:?}: {e}"),
            })?,
            cert_sha256: row.try_get("cert_sha256")?,
            cert_serial: row.try_get("cert_serial")?,
            not_after_ms: row.try_get("not_after_ms")?,
            created_at_ms: row.try_get("created_at_ms")?,
            created_by: row.try_get("created_by")?,
            revoked_at_ms: row.try_get("revoked_at_ms")?,
        })
    }
}

impl Store {
    /// Records a machine identity. [`StoreError::Conflict`] if the name was
    /// ever used (even by a revoked machine) or the certificate is already
    /// recorded.
    pub async fn create_machine(&self, m: &NewMachine) -> Result<Machine, StoreError> {
        // Fingerprints are compared as lowercase hex everywhere.
        let cert_sha256 = m.cert_sha256.to_ascii_lowercase();
        let inserted = sqlx::query(
            "INSERT INTO machines (name, role, cert_sha256, cert_serial, not_after_ms, created_at_ms, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(m.name.as_str())
        .bind(m.role.as_str())
        .bind(&cert_sha256)
        .bind(&m.cert_serial)
        .bind(m.not_after_ms)
        .bind(m.created_at_ms)
        .bind(&m.created_by)
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(Machine {
                name: m.name.clone(),
                role: m.role,
                cert_sha256,
                cert_serial: m.cert_serial.clone(),
                not_after_ms: m.not_after_ms,
                created_at_ms: m.created_at_ms,
                created_by: m.created_by.clone(),
                revoked_at_ms: None,
            }),
            Err(e) if is_unique_violation(&e) => {
                // The insert was atomic; this look-up only words the message
                // (the backends name the violated constraint differently).
                let name_taken = sqlx::query("SELECT 1 FROM machines WHERE name = $1")
                    .bind(m.name.as_str())
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                let what = if name_taken {
                    format!("{} already exists", describe("machine", m.name.as_str()))
                } else {
                    format!("a machine with certificate sha256 {cert_sha256} already exists")
                };
                Err(StoreError::Conflict { what })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every machine, revoked ones included, ordered by name.
    pub async fn list_machines(&self) -> Result<Vec<Machine>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines ORDER BY name"
        ))
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Machine::from_row)
        .collect()
    }

    /// Revokes a machine identity: its certificate no longer authenticates.
    /// Idempotent: revoking again keeps the first `revoked_at_ms`.
    pub async fn revoke_machine(
        &self,
        name: &MachineName,
        at_ms: i64,
    ) -> Result<Machine, StoreError> {
        let (store, name) = (self.clone(), name.clone());
        self.change_identities(async move { store.revoke_machine_now(&name, at_ms).await })
            .await
    }

    async fn revoke_machine_now(
        &self,
        name: &MachineName,
        at_ms: i64,
    ) -> Result<Machine, StoreError> {
        let row = sqlx::query(&format!(
            "UPDATE machines SET revoked_at_ms = COALESCE(revoked_at_ms, $2)
             WHERE name = $1 RETURNING {MACHINE_COLUMNS}"
        ))
        .bind(name.as_str())
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: describe("machine", name.as_str()),
        })?;
        Machine::from_row(&row)
    }

    /// The machine a client certificate belongs to, by the lowercase hex
    /// SHA-256 of its DER encoding. `None` when unknown, revoked or expired
    /// (TLS session resumption does not re-check a certificate's validity).
    pub async fn machine_for_cert(
        &self,
        cert_sha256_hex: &str,
        now_ms: i64,
    ) -> Result<Option<Machine>, StoreError> {
        let fingerprint = cert_sha256_hex.to_ascii_lowercase();
        let ticket = match self
            .identity_cache
            .as_deref()
            .map(|c| c.machine(&fingerprint, now_ms))
        {
            Some(Ok(cached)) => return Ok(Some(cached)),
            Some(Err(ticket)) => Some(ticket),
            None => None,
        };
        let machine = sqlx::query(&format!(
            "SELECT {MACHINE_COLUMNS} FROM machines
             WHERE cert_sha256 = $1 AND revoked_at_ms IS NULL AND not_after_ms > $2"
        ))
        .bind(&fingerprint)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(Machine::from_row)
        .transpose()?;
        if let (Some(cache), Some(ticket), Some(machine)) =
            (self.identity_cache.as_deref(), ticket, &machine)
        {
            cache.put_machine(ticket, fingerprint, machine.clone());
        }
        Ok(machine)
    }
}
