//! Account rows: create, look up, change role, list.

use model::{Email, PasswordHash, Role, Timestamp, UserId};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use crate::StoreError;

/// An account about to be written.
#[derive(Clone, Debug)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub role: Role,
    pub created_at: Timestamp,
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub role: Role,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The account table; obtained from [`crate::Store::users`].
#[derive(Debug)]
pub struct Users<'a> {
    pool: &'a AnyPool,
}

/// The account columns, qualified so that joins can use them too.
pub(crate) const USER_COLUMNS: &str =
    "users.id, users.email, users.password_hash, users.role, users.created_at, users.updated_at";

impl<'a> Users<'a> {
    pub(crate) fn new(pool: &'a AnyPool) -> Self {
        Self { pool }
    }

    /// Creates one account; an e-mail address that is taken is a [`StoreError::Conflict`].
    pub async fn insert(&self, user: &NewUser) -> Result<(), StoreError> {
        let inserted = insert_unless_taken(self.pool, user).await?;
        if !inserted {
            return Err(StoreError::Conflict {
                what: "an account with this e-mail address",
            });
        }
        Ok(())
    }

    /// Creates the accounts whose e-mail address is not taken yet, all in one transaction, and
    /// returns how many it created. When it returns, they are durably stored.
    pub async fn insert_missing(&self, users: &[NewUser]) -> Result<u64, StoreError> {
        let mut tx = crate::begin_write(self.pool).await?;
        let mut created = 0;
        for user in users {
            if insert_unless_taken(&mut *tx, user).await? {
                created += 1;
            }
        }
        tx.commit().await?;
        Ok(created)
    }

    pub async fn by_id(&self, id: UserId) -> Result<Option<UserRecord>, StoreError> {
        let query = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&query)
            .bind(id.to_string())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_user).transpose()
    }

    pub async fn by_email(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let query = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(&query)
            .bind(email.as_str())
            .fetch_optional(self.pool)
            .await?;
        row.as_ref().map(decode_user).transpose()
    }

    /// Changes an account's role; false when there is no such account.
    pub async fn set_role(
        &self,
        id: UserId,
        role: Role,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("UPDATE users SET role = $1, updated_at = $2 WHERE id = $3")
            .bind(role.as_str())
            .bind(now.unix_millis())
            .bind(id.to_string())
            .execute(self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Accounts in e-mail order, `limit` at a time, starting after `after` (keyset pagination, so a
    /// page costs the same wherever it is).
    pub async fn list(
        &self,
        after: Option<&Email>,
        limit: u32,
    ) -> Result<Vec<UserRecord>, StoreError> {
        let query =
            format!("SELECT {USER_COLUMNS} FROM users WHERE email > $1 ORDER BY email LIMIT $2");
        let rows = sqlx::query(&query)
            .bind(after.map(Email::as_str).unwrap_or(""))
            .bind(i64::from(limit))
            .fetch_all(self.pool)
            .await?;
        rows.iter().map(decode_user).collect()
    }

    /// Replaces an account's password hash (after a password change, or to upgrade an old hash).
    pub async fn set_password_hash(
        &self,
        id: UserId,
        hash: &PasswordHash,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let result =
            sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
                .bind(hash.as_str())
                .bind(now.unix_millis())
                .bind(id.to_string())
                .execute(self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

    pub async fn count(&self) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM users")
            .fetch_one(self.pool)
            .await?;
        Ok(u64::try_from(count).unwrap_or_default())
    }
}

async fn insert_unless_taken<'e, E>(executor: E, user: &NewUser) -> Result<bool, StoreError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let result = sqlx::query(
        "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (email) DO NOTHING",
    )
    .bind(user.id.to_string())
    .bind(user.email.as_str())
    .bind(user.password_hash.as_str())
    .bind(user.role.as_str())
    .bind(user.created_at.unix_millis())
    .execute(executor)
    .await?;
    Ok(result.rows_affected() == 1)
}

pub(crate) fn decode_user(row: &AnyRow) -> Result<UserRecord, StoreError> {
    let corrupt = |column, reason: String| StoreError::corrupt("users", column, reason);
    let id: String = row.try_get("id")?;
    let email: String = row.try_get("email")?;
    let password_hash: String = row.try_get("password_hash")?;
    let role: String = row.try_get("role")?;
    Ok(UserRecord {
        id: id
            .parse()
            .map_err(|e: model::UserIdError| corrupt("id", e.to_string()))?,
        email: Email::parse(&email).map_err(|e| corrupt("email", e.to_string()))?,
        password_hash: PasswordHash::parse(&password_hash)
            .map_err(|e| corrupt("password_hash", e.to_string()))?,
        role: role
            .parse()
            .map_err(|e: model::RoleError| corrupt("role", e.to_string()))?,
        created_at: Timestamp::from_unix_millis(row.try_get("created_at")?),
        updated_at: Timestamp::from_unix_millis(row.try_get("updated_at")?),
    })
}
