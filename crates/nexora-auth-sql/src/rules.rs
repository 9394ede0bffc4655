//! The rules every SQL store applies to what its statements return.

use std::future::Future;

use nexora_auth::{
    StoreError, TicketDigest,
    store::{KeyState, RevokeOutcome},
};
use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr, error::DatabaseError};
use time::OffsetDateTime;

use crate::truncate_to_micros;

/// Marks a statement as safe for sqlx: only for text a store builds itself from its own
/// constants and a table prefix [`StoreBuilder::build`](crate::StoreBuilder::build) has
/// validated as `[a-z0-9_]*`. Every value is bound, never spliced. Cheap to clone.
pub fn trusted_sql(text: String) -> SqlStr {
    AssertSqlSafe(std::sync::Arc::<str>::from(text)).into_sql_str()
}

/// The error for a failed statement: [`StoreError::Unavailable`] naming the backend and the
/// operation (`"sqlite: find a key failed"`), with the sqlx error as its source.
pub fn failed(
    backend: &'static str,
    op: &'static str,
) -> impl Fn(sqlx::Error) -> StoreError + Copy {
    move |e| StoreError::backend(format!("{backend}: {op} failed"), e)
}

/// The error for a row the store cannot have written: [`StoreError::Unavailable`], never
/// "not found".
pub fn corrupt(what: &'static str) -> StoreError {
    StoreError::unavailable(format!("corrupt row: {what}"))
}

/// The database error of a unique-constraint violation, if `e` is one.
pub fn unique_violation(e: &sqlx::Error) -> Option<&dyn DatabaseError> {
    e.as_database_error().filter(|d| d.is_unique_violation())
}

/// The result of a key insert, from the rows it inserted or its error.
///
/// The insert is one statement that inserts nothing when the record names a creator that is
/// not the owner's live key: 0 rows is [`StoreError::CreatorRevoked`]. The key table's only
/// unique constraint is its primary key, so a violation is [`StoreError::DuplicateId`].
pub fn key_inserted(
    inserted: Result<u64, sqlx::Error>,
    failed: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    match inserted {
        Ok(0) => Err(StoreError::CreatorRevoked),
        Ok(_) => Ok(()),
        Err(e) if unique_violation(&e).is_some() => Err(StoreError::DuplicateId),
        Err(e) => Err(failed(e)),
    }
}

/// The result of a ticket insert: the table's only unique constraint is its primary key, the
/// digest, so a violation is [`StoreError::DuplicateId`].
pub fn ticket_inserted(
    inserted: Result<(), sqlx::Error>,
    failed: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    match inserted {
        Ok(()) => Ok(()),
        Err(e) if unique_violation(&e).is_some() => Err(StoreError::DuplicateId),
        Err(e) => Err(failed(e)),
    }
}

/// A ticket digest read back from a row: 32 bytes, else a corrupt row.
pub fn ticket_digest(bytes: &[u8]) -> Result<TicketDigest, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(TicketDigest::from_bytes)
        .map_err(|_| corrupt("ticket digest"))
}

/// The result of a user insert: a unique violation is [`StoreError::DuplicateEmail`] when
/// `is_email` recognises the email constraint (each dialect names it its own way), else
/// [`StoreError::DuplicateId`].
pub fn user_inserted(
    inserted: Result<(), sqlx::Error>,
    is_email: impl FnOnce(&dyn DatabaseError) -> bool,
    failed: impl FnOnce(sqlx::Error) -> StoreError,
) -> Result<(), StoreError> {
    let Err(e) = inserted else {
        return Ok(());
    };
    match unique_violation(&e) {
        Some(d) if is_email(d) => Err(StoreError::DuplicateEmail),
        Some(_) => Err(StoreError::DuplicateId),
        None => Err(failed(e)),
    }
}

/// The outcome of revoking one key, from the rows the revoking `UPDATE` changed (its `WHERE`
/// names the owner and a live key). When it changed none, `exists` (run only then, in the
/// same transaction when there is one) says whether the owner has the key: revoked already,
/// or not found. Revocation never undoes itself, so the answer explains the refused update.
pub async fn revoke_outcome(
    updated: u64,
    exists: impl Future<Output = Result<bool, StoreError>>,
) -> Result<RevokeOutcome, StoreError> {
    if updated > 0 {
        return Ok(RevokeOutcome::Revoked);
    }
    Ok(if exists.await? {
        RevokeOutcome::AlreadyRevoked
    } else {
        RevokeOutcome::NotFound
    })
}

/// Why a rotation updated nothing, from the key's row read after it: whether it is revoked,
/// and whether it had expired at the rotation's `now`, compared at the database's
/// (microsecond) precision as the `UPDATE` compared it.
pub fn key_state(
    revoked: bool,
    expires_at: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> KeyState {
    KeyState {
        revoked,
        expired: expires_at.is_some_and(|expires| expires <= truncate_to_micros(now)),
    }
}
