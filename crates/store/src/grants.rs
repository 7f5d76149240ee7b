//! What an authorization grant leaves behind: one-time authorization codes and rotating refresh
//! tokens, each kept by the SHA-256 of its secret and tied to a grant id.

use model::{Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// An authorization code, as issued and as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    pub code_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: UserId,
    pub redirect_uri: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// What redeeming a code found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Redemption<T> {
    /// First use: the caller may act on it.
    Fresh(T),
    /// Used before, at the given time: a replay.
    Replayed(T, Timestamp),
    /// Revoked, with the rest of its grant.
    Revoked(T),
    NotFound,
}

/// A refresh token as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    pub token_hash: String,
    pub grant_id: String,
    pub client_id: String,
    pub user_id: UserId,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// Codes and refresh tokens; obtained from [`crate::Store::grants`].
#[derive(Debug)]
pub struct Grants<'a> {
    pool: &'a AnyPool,
}

const CODE_COLUMNS: &str = "code_hash, grant_id, client_id, user_id, redirect_uri, scope, nonce, code_challenge, created_at, expires_at, used_at";
const REFRESH_COLUMNS: &str =
    "token_hash, grant_id, client_id, user_id, scope, created_at, expires_at, used_at, revoked_at";

impl<'a> Grants<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn insert_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO authorization_codes ({CODE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL)"
        );
        sqlx::query(&query)
            .bind(&code.code_hash)
            .bind(&code.grant_id)
            .bind(&code.client_id)
            .bind(code.user_id.to_string())
            .bind(&code.redirect_uri)
            .bind(&code.scope)
            .bind(code.nonce.clone())
            .bind(code.code_challenge.clone())
            .bind(code.created_at.unix_millis())
            .bind(code.expires_at.unix_millis())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Marks a code used. Only the first caller gets [`Redemption::Fresh`], also under concurrency:
    /// the update itself decides.
    pub async fn redeem_code(
        &self,
        code_hash: &str,
        now: Timestamp,
    ) -> Result<Redemption<CodeRecord>, StoreError> {
        let claimed = sqlx::query(
            "UPDATE authorization_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(code_hash)
        .execute(self.pool)
        .await?
        .rows_affected()
            == 1;
        let query = format!("SELECT {CODE_COLUMNS} FROM authorization_codes WHERE code_hash = $1");
        let Some(row) = sqlx::query(&query)
            .bind(code_hash)
            .fetch_optional(self.pool)
            .await?
        else {
            return Ok(Redemption::NotFound);
        };
        let record = decode_code(&row)?;
        if claimed {
            return Ok(Redemption::Fresh(record));
        }
        let used_at: Option<i64> = row.try_get("used_at")?;
        Ok(Redemption::Replayed(
            record,
            Timestamp::from_unix_millis(used_at.unwrap_or_default()),
        ))
    }

    pub async fn insert_refresh(&self, token: &RefreshRecord) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO refresh_tokens ({REFRESH_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL)"
        );
        sqlx::query(&query)
            .bind(&token.token_hash)
            .bind(&token.grant_id)
            .bind(&token.client_id)
            .bind(token.user_id.to_string())
            .bind(&token.scope)
            .bind(token.created_at.unix_millis())
            .bind(token.expires_at.unix_millis())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    /// Marks a refresh token used (rotation). Only the first caller gets [`Redemption::Fresh`].
    pub async fn use_refresh(
        &self,
        token_hash: &str,
        now: Timestamp,
    ) -> Result<Redemption<RefreshRecord>, StoreError> {
        let claimed = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(token_hash)
        .execute(self.pool)
        .await?
        .rows_affected()
            == 1;
        let query = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1");
        let Some(row) = sqlx::query(&query)
            .bind(token_hash)
            .fetch_optional(self.pool)
            .await?
        else {
            return Ok(Redemption::NotFound);
        };
        let record = decode_refresh(&row)?;
        if claimed {
            return Ok(Redemption::Fresh(record));
        }
        let revoked_at: Option<i64> = row.try_get("revoked_at")?;
        if revoked_at.is_some() {
            return Ok(Redemption::Revoked(record));
        }
        let used_at: Option<i64> = row.try_get("used_at")?;
        Ok(Redemption::Replayed(
            record,
            Timestamp::from_unix_millis(used_at.unwrap_or_default()),
        ))
    }

    /// Revokes a grant: every refresh token of it, and (through [`Grants::is_revoked`]) every
    /// access token issued under it. Returns how many refresh tokens were still live.
    pub async fn revoke_grant(&self, grant_id: &str, now: Timestamp) -> Result<u64, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(
            "INSERT INTO revoked_grants (grant_id, revoked_at) VALUES ($1, $2) ON CONFLICT (grant_id) DO NOTHING",
        )
        .bind(grant_id)
        .bind(now.unix_millis())
        .execute(&mut *tx)
        .await?;
        let result = sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $1 WHERE grant_id = $2 AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(grant_id)
        .execute(&mut *tx)
        .await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(result.rows_affected())
    }

    pub async fn is_revoked(&self, grant_id: &str) -> Result<bool, StoreError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM revoked_grants WHERE grant_id = $1")
                .bind(grant_id)
                .fetch_one(self.pool)
                .await?;
        Ok(count > 0)
    }

    /// Revokes one access token by its `jti`, until `expires_at`.
    pub async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: Timestamp,
    ) -> Result<(), StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at.unix_millis())
        .execute(&mut *tx)
        .await?;
        raise_revocation_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// A number that every revocation raises, in any process sharing this database: a cache of
    /// active tokens that remembers the epoch it was filled in knows it is stale when this moves.
    pub async fn revocation_epoch(&self) -> Result<i64, StoreError> {
        let (epoch,): (i64,) = sqlx::query_as("SELECT epoch FROM revocation_epoch WHERE id = 1")
            .fetch_one(self.pool)
            .await?;
        Ok(epoch)
    }

    pub async fn is_access_token_revoked(&self, jti: &str) -> Result<bool, StoreError> {
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM revoked_access_tokens WHERE jti = $1")
                .bind(jti)
                .fetch_one(self.pool)
                .await?;
        Ok(count > 0)
    }

    /// A refresh token by the hash of its secret, whatever its state.
    pub async fn refresh_by_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<RefreshRecord>, StoreError> {
        let query = format!("SELECT {REFRESH_COLUMNS} FROM refresh_tokens WHERE token_hash = $1");
        let row = sqlx::query(&query)
            .bind(token_hash)
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_refresh).transpose()
    }
}

fn user_id(row: &AnyRow, table: &'static str) -> Result<UserId, StoreError> {
    let text: String = row.try_get("user_id")?;
    text.parse()
        .map_err(|e: model::UserIdError| StoreError::corrupt(table, "user_id", e))
}

fn decode_code(row: &AnyRow) -> Result<CodeRecord, StoreError> {
    Ok(CodeRecord {
        code_hash: row.try_get("code_hash")?,
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        user_id: user_id(row, "authorization_codes")?,
        redirect_uri: row.try_get("redirect_uri")?,
        scope: row.try_get("scope")?,
        nonce: row.try_get("nonce")?,
        code_challenge: row.try_get("code_challenge")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
    })
}

fn decode_refresh(row: &AnyRow) -> Result<RefreshRecord, StoreError> {
    Ok(RefreshRecord {
        token_hash: row.try_get("token_hash")?,
        grant_id: row.try_get("grant_id")?,
        client_id: row.try_get("client_id")?,
        user_id: user_id(row, "refresh_tokens")?,
        scope: row.try_get("scope")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        expires_at: Timestamp::from_unix_millis(row.try_get("expires_at")?),
    })
}

/// Raises the revocation epoch inside `tx`: every revocation of a token, a grant (OAuth or a
/// technician's), an ownership or a certificate calls this, so whatever remembers an earlier
/// decision (active tokens, live MQTT sessions) checks it again.
pub(crate) async fn raise_revocation_epoch(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE revocation_epoch SET epoch = epoch + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}
