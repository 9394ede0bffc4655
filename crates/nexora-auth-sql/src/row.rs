//! Decoding what the stores' rows share: digests, scopes and times.

use nexora_auth::{KeyDigest, Scopes, StoreError, StoredDigest, store::PreviousDigest};
use time::OffsetDateTime;

use crate::corrupt;

/// A stored digest from its pepper version and digest columns.
pub fn digest(pepper_version: i64, bytes: &[u8]) -> Result<StoredDigest, StoreError> {
    Ok(StoredDigest {
        pepper_version: u32::try_from(pepper_version).map_err(|_| corrupt("pepper version"))?,
        digest: KeyDigest::try_from(bytes).map_err(|_| corrupt("digest length"))?,
    })
}

/// The digest a rotation with a grace period kept, from its three columns: present only
/// when all three are (a revoke or a rotation without grace clears all three).
pub fn previous_digest(
    pepper_version: Option<i64>,
    bytes: Option<Vec<u8>>,
    valid_until: Option<OffsetDateTime>,
) -> Result<Option<PreviousDigest>, StoreError> {
    match (pepper_version, bytes, valid_until) {
        (Some(version), Some(bytes), Some(valid_until)) => Ok(Some(PreviousDigest {
            digest: digest(version, &bytes)?,
            valid_until,
        })),
        _ => Ok(None),
    }
}

/// Scopes from the list a row holds (a JSON array in SQLite, `text[]` in Postgres).
pub fn scopes(list: Vec<String>) -> Result<Scopes, StoreError> {
    Scopes::new(list).map_err(|e| StoreError::backend("corrupt row: scopes", e))
}

/// `t` rounded down to the microsecond: the precision both stores keep (SQLite as integer
/// microseconds, Postgres in `timestamptz`). Comparisons made in Rust against stored times
/// use it, so they agree with the database's.
pub fn truncate_to_micros(t: OffsetDateTime) -> OffsetDateTime {
    // nanosecond() < 1e9, and so is the rounded-down value.
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

/// `t` as whole Unix microseconds, rounded down (towards the past).
pub fn unix_micros(t: OffsetDateTime) -> i64 {
    let m = t.unix_timestamp_nanos().div_euclid(1_000);
    // OffsetDateTime spans ±9999 years: ±3.2e17 µs, well inside i64.
    i64::try_from(m).unwrap_or(if m < 0 { i64::MIN } else { i64::MAX })
}

/// The time `m` Unix microseconds name; out of `OffsetDateTime`'s range is a corrupt row.
pub fn from_unix_micros(m: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(m) * 1_000)
        .map_err(|e| StoreError::backend("corrupt row: timestamp out of range", e))
}
