//! The CA's certificates and sealed keys, and the inventory of every certificate it issued.

use model::Timestamp;
use pki::{CaRole, CertificateKind, IssuedCertificate, RevocationReason, RevokedCertificate};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;
use crate::grants::raise_revocation_epoch;

/// The CA and certificate tables; obtained from [`crate::Store::certificates`].
#[derive(Debug)]
pub struct Certificates<'a> {
    pool: &'a AnyPool,
}

/// A CA certificate as stored: its key sealed, or absent while the key is offline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCa {
    pub certificate_pem: String,
    pub sealed_key: Option<String>,
}

/// An inventory row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateRecord {
    pub certificate: IssuedCertificate,
    pub revoked: Option<(Timestamp, RevocationReason)>,
}

const COLUMNS: &str =
    "serial, kind, subject, not_before, not_after, certificate_pem, revoked_at, revocation_reason";

impl<'a> Certificates<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn ca(&self, role: CaRole) -> Result<Option<StoredCa>, StoreError> {
        let row: Option<(String, Option<String>)> = sqlx::query_as(
            "SELECT certificate_pem, sealed_key FROM ca_certificates WHERE role = $1",
        )
        .bind(role.as_str())
        .fetch_optional(self.pool)
        .await?;
        Ok(row.map(|(certificate_pem, sealed_key)| StoredCa {
            certificate_pem,
            sealed_key,
        }))
    }

    /// Stores both CA certificates of a new CA in one transaction, unless a CA exists already;
    /// false then (another process created it first) and nothing is changed.
    pub async fn create_ca(
        &self,
        root: &StoredCa,
        intermediate: &StoredCa,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        let mut created = true;
        for (role, ca) in [(CaRole::Root, root), (CaRole::Intermediate, intermediate)] {
            let result = sqlx::query(
                "INSERT INTO ca_certificates (role, certificate_pem, sealed_key, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (role) DO NOTHING",
            )
            .bind(role.as_str())
            .bind(&ca.certificate_pem)
            .bind(ca.sealed_key.clone())
            .bind(now.unix_millis())
            .execute(&mut *tx)
            .await?;
            created &= result.rows_affected() == 1;
        }
        if created {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(created)
    }

    /// Replaces a CA certificate and its sealed key (a re-issued intermediate).
    pub async fn replace_ca(
        &self,
        role: CaRole,
        ca: &StoredCa,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE ca_certificates SET certificate_pem = $1, sealed_key = $2, created_at = $3 WHERE role = $4",
        )
        .bind(&ca.certificate_pem)
        .bind(ca.sealed_key.clone())
        .bind(now.unix_millis())
        .bind(role.as_str())
        .execute(self.pool)
        .await?;
        Ok(())
    }

    /// Sets or (with `None`) removes a CA's sealed key; false when there is no such CA.
    pub async fn set_ca_key(
        &self,
        role: CaRole,
        sealed_key: Option<&str>,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE ca_certificates SET sealed_key = $1 WHERE role = $2")
            .bind(sealed_key)
            .bind(role.as_str())
            .execute(self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn insert(&self, certificate: &IssuedCertificate) -> Result<(), StoreError> {
        self.insert_all(std::slice::from_ref(certificate)).await
    }

    /// Records many certificates in one transaction: all or none, one commit to wait for.
    pub async fn insert_all(&self, certificates: &[IssuedCertificate]) -> Result<(), StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        insert_in(&mut tx, certificates).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn by_serial(&self, serial: &str) -> Result<Option<CertificateRecord>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM certificates WHERE serial = $1");
        let row = sqlx::query(&query)
            .bind(serial)
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every certificate of a subject (a device id), newest first.
    pub async fn by_subject(&self, subject: &str) -> Result<Vec<CertificateRecord>, StoreError> {
        let query = format!(
            "SELECT {COLUMNS} FROM certificates WHERE subject = $1 ORDER BY not_before DESC, serial"
        );
        let rows = sqlx::query(&query)
            .bind(subject)
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// Unrevoked certificates still valid at `now` that expire before `before`, soonest first.
    pub async fn expiring(
        &self,
        now: Timestamp,
        before: Timestamp,
    ) -> Result<Vec<CertificateRecord>, StoreError> {
        let query = format!(
            "SELECT {COLUMNS} FROM certificates \
             WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $2 ORDER BY not_after, serial"
        );
        let rows = sqlx::query(&query)
            .bind(now.unix_millis())
            .bind(before.unix_millis())
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// How many unrevoked certificates valid at `now` expire before `before`.
    pub async fn count_expiring(
        &self,
        now: Timestamp,
        before: Timestamp,
    ) -> Result<i64, StoreError> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM certificates WHERE revoked_at IS NULL AND not_after > $1 AND not_after <= $2",
        )
        .bind(now.unix_millis())
        .bind(before.unix_millis())
        .fetch_one(self.pool)
        .await?;
        Ok(count)
    }

    /// Revokes a certificate; false when it does not exist or was revoked already.
    pub async fn revoke(
        &self,
        serial: &str,
        reason: RevocationReason,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(self.revoke_where("serial", serial, reason, now).await? == 1)
    }

    /// Revokes every unrevoked certificate of a subject; returns how many.
    pub async fn revoke_subject(
        &self,
        subject: &str,
        reason: RevocationReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_where("subject", subject, reason, now).await
    }

    /// Revokes the unrevoked certificates whose `column` (a name from this file, never input) is
    /// `value`; returns how many.
    async fn revoke_where(
        &self,
        column: &'static str,
        value: &str,
        reason: RevocationReason,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let query = format!(
            "UPDATE certificates SET revoked_at = $1, revocation_reason = $2 \
             WHERE {column} = $3 AND revoked_at IS NULL"
        );
        let mut tx = crate::begin_write(self.pool).await?;
        let result = sqlx::query(&query)
            .bind(now.unix_millis())
            .bind(reason.as_str())
            .bind(value)
            .execute(&mut *tx)
            .await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }

    /// Revoked certificates that have not expired at `now`: what a revocation list must name
    /// (an expired certificate is refused anyway, RFC 5280 section 3.3).
    pub async fn revoked(&self, now: Timestamp) -> Result<Vec<RevokedCertificate>, StoreError> {
        let rows: Vec<(String, i64, String)> = sqlx::query_as(
            "SELECT serial, revoked_at, revocation_reason FROM certificates \
             WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY revoked_at, serial",
        )
        .bind(now.unix_millis())
        .fetch_all(self.pool)
        .await?;
        rows.into_iter()
            .map(|(serial, revoked_at, reason)| {
                Ok(RevokedCertificate {
                    serial,
                    revoked_at: Timestamp::from_unix_millis(revoked_at),
                    reason: RevocationReason::parse(&reason).map_err(|error| {
                        StoreError::corrupt("certificates", "revocation_reason", error)
                    })?,
                })
            })
            .collect()
    }

    /// The next revocation list number: one more than the last one handed out.
    pub async fn next_crl_number(&self) -> Result<i64, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query("UPDATE crl_number SET number = number + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        let (number,): (i64,) = sqlx::query_as("SELECT number FROM crl_number WHERE id = 1")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(number)
    }
}

fn decode(row: &AnyRow) -> Result<CertificateRecord, StoreError> {
    let kind: String = row.try_get("kind")?;
    let revoked_at: Option<i64> = row.try_get("revoked_at")?;
    let reason: Option<String> = row.try_get("revocation_reason")?;
    let revoked = match (revoked_at, reason) {
        (Some(at), Some(reason)) => Some((
            Timestamp::from_unix_millis(at),
            RevocationReason::parse(&reason)
                .map_err(|error| StoreError::corrupt("certificates", "revocation_reason", error))?,
        )),
        _ => None,
    };
    Ok(CertificateRecord {
        certificate: IssuedCertificate {
            serial: row.try_get("serial")?,
            kind: CertificateKind::parse(&kind)
                .ok_or_else(|| StoreError::corrupt("certificates", "kind", kind))?,
            subject: row.try_get("subject")?,
            not_before: Timestamp::from_unix_millis(row.try_get("not_before")?),
            not_after: Timestamp::from_unix_millis(row.try_get("not_after")?),
            certificate_pem: row.try_get("certificate_pem")?,
        },
        revoked,
    })
}

/// Records certificates as part of a larger transaction.
pub(crate) async fn insert_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    certificates: &[IssuedCertificate],
) -> Result<(), StoreError> {
    let query =
        format!("INSERT INTO certificates ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL)");
    for certificate in certificates {
        sqlx::query(&query)
            .bind(&certificate.serial)
            .bind(certificate.kind.as_str())
            .bind(&certificate.subject)
            .bind(certificate.not_before.unix_millis())
            .bind(certificate.not_after.unix_millis())
            .bind(&certificate.certificate_pem)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}
