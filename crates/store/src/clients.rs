//! OAuth clients.

use model::Timestamp;
use oauth::client::{Client, ClientKind};
use oauth::scope::Scopes;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// The OAuth client table; obtained from [`crate::Store::oauth_clients`].
#[derive(Debug)]
pub struct OAuthClients<'a> {
    pool: &'a AnyPool,
}

const COLUMNS: &str = "client_id, name, kind, secret_hash, allowed_scopes, created_at, redirect_uris, first_party, jwks";

impl<'a> OAuthClients<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    pub async fn insert(&self, client: &Client) -> Result<(), StoreError> {
        let query = format!(
            "INSERT INTO oauth_clients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        sqlx::query(&query)
            .bind(&client.client_id)
            .bind(&client.name)
            .bind(client.kind.as_str())
            .bind(client.secret_hash.clone())
            .bind(client.allowed_scopes.to_string())
            .bind(client.created_at.unix_millis())
            .bind(client.redirect_uris.join("\n"))
            .bind(i64::from(client.first_party))
            .bind(client.jwks.clone())
            .execute(self.pool)
            .await?;
        Ok(())
    }

    pub async fn by_id(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM oauth_clients WHERE client_id = $1");
        let row = sqlx::query(&query)
            .bind(client_id)
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Replaces where a client may send people back to.
    pub async fn set_redirect_uris(
        &self,
        client_id: &str,
        redirect_uris: &[String],
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE oauth_clients SET redirect_uris = $1 WHERE client_id = $2")
            .bind(redirect_uris.join("\n"))
            .bind(client_id)
            .execute(self.pool)
            .await?;
        Ok(())
    }

    pub async fn all(&self) -> Result<Vec<Client>, StoreError> {
        let query = format!("SELECT {COLUMNS} FROM oauth_clients ORDER BY created_at, client_id");
        let rows = sqlx::query(&query).fetch_all(self.pool).await?;
        rows.iter().map(decode).collect()
    }

    /// Records a client assertion's `jti`; false when it was seen before (a replay).
    pub async fn record_assertion(
        &self,
        client_id: &str,
        jti: &str,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO used_client_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id, jti) DO NOTHING",
        )
        .bind(client_id)
        .bind(jti)
        .bind(expires_at.unix_millis())
        .execute(self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }
}

fn decode(row: &AnyRow) -> Result<Client, StoreError> {
    let corrupt = |column, reason: String| StoreError::corrupt("oauth_clients", column, reason);
    let kind: String = row.try_get("kind")?;
    let scopes: String = row.try_get("allowed_scopes")?;
    let redirect_uris: String = row.try_get("redirect_uris")?;
    let first_party: i64 = row.try_get("first_party")?;
    Ok(Client {
        client_id: row.try_get("client_id")?,
        name: row.try_get("name")?,
        kind: ClientKind::parse(&kind).ok_or_else(|| corrupt("kind", kind.clone()))?,
        secret_hash: row.try_get("secret_hash")?,
        allowed_scopes: Scopes::parse(&scopes)
            .map_err(|e| corrupt("allowed_scopes", e.to_string()))?,
        redirect_uris: redirect_uris.lines().map(str::to_owned).collect(),
        first_party: first_party != 0,
        jwks: row.try_get("jwks")?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
    })
}
