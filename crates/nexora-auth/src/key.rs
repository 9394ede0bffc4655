//! The `nxr_` API key format: generation, parsing and the non-secret parts of a key.
//!
//! A key is 64 ASCII characters:
//!
//! ```text
//! nxr_ 4fGh2kQ9xZ1bT0pLm7cVwE Xy3Q...32 random base62...Ab 1x9ZqK
//! └──┘ └──────── id ────────┘ └──────── secret ──────────┘ └ crc ┘
//!  4            22                         32                 6
//! ```
//!
//! * `id` is the key's UUID (its store primary key) in fixed-width base62. It is not secret: it
//!   names the key, like a username names an account, and lets the store find the record with
//!   one primary-key lookup.
//! * `secret` is 32 characters drawn uniformly from base62 by the operating system's CSPRNG:
//!   log2(62^32) ≈ 190.5 bits of entropy.
//! * `crc` is the CRC32 of everything before it, in fixed-width base62, as in GitHub's token
//!   format: a truncated, mistyped or random string is rejected by [`ApiKey::parse`] alone, with
//!   no store round trip, and secret scanners can validate a candidate offline.
//!
//! The alphabet (`0-9A-Za-z` plus the `_` of the prefix) survives URLs, JSON and shell quoting,
//! and a double click selects the whole key.

use std::fmt;

use rand::TryRng;
use uuid::Uuid;
use zeroize::Zeroize;

/// The prefix every key starts with.
pub const KEY_PREFIX: &str = "nxr_";
const ID_LEN: usize = 22;
const HALF_ID_LEN: usize = 11;
const SECRET_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
const ID_START: usize = KEY_PREFIX.len();
const SECRET_START: usize = ID_START + ID_LEN;
const CHECKSUM_START: usize = SECRET_START + SECRET_LEN;
/// Length of every well-formed key, in bytes (all ASCII).
pub const KEY_LEN: usize = CHECKSUM_START + CHECKSUM_LEN;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The identifier of an API key: a UUID, embedded in the key itself.
///
/// Not secret. Rotation keeps it, so clients and logs can name a key across rotations.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct KeyId(Uuid);

impl KeyId {
    /// A fresh random (version 4) id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// Wraps a UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    /// From the UUID's 16 bytes (big-endian, as stored in a BLOB/BYTEA column).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(Uuid::from_bytes(bytes))
    }

    /// The UUID's 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// The UUID.
    pub const fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Parses the canonical hyphenated UUID form (as used in URLs such as
    /// `/api/users/me/api-keys/{key_id}`).
    pub fn parse_str(s: &str) -> Result<Self, uuid::Error> {
        Uuid::parse_str(s).map(Self)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl From<Uuid> for KeyId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

/// Why a string is not a well-formed API key. Never contains the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyParseError {
    /// The string does not start with `nxr_`.
    #[error("API key does not start with `nxr_`")]
    WrongPrefix,
    /// The string is not exactly [`KEY_LEN`] bytes long.
    #[error("API key has the wrong length")]
    WrongLength,
    /// A byte after the prefix is not in `0-9A-Za-z`.
    #[error("API key contains a character outside base62")]
    InvalidCharacter,
    /// The embedded CRC32 does not match: a typo, a truncation, or a made-up key.
    #[error("API key checksum does not match")]
    BadChecksum,
    /// The id part does not encode a valid UUID (only possible for a forged key).
    #[error("API key id is out of range")]
    InvalidId,
}

/// The operating system's random number generator failed.
#[derive(Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomnessError(#[source] rand::rngs::SysError);

impl From<rand::rngs::SysError> for RandomnessError {
    fn from(error: rand::rngs::SysError) -> Self {
        Self(error)
    }
}

/// A complete API key, as handed to its owner exactly once.
///
/// It holds the secret: `Debug` prints only the non-secret id, there is no `Display`, and the
/// text is zeroized on drop. Use [`ApiKey::expose`] to obtain the text for the one response that
/// shows it.
#[derive(Clone)]
pub struct ApiKey {
    text: [u8; KEY_LEN],
    id: KeyId,
}

impl ApiKey {
    /// Parses a key. Total: any input gives a key or a typed error, never a panic, and only
    /// the checksum (not the store) is consulted.
    pub fn parse(input: &str) -> Result<Self, KeyParseError> {
        let bytes = input.as_bytes();
        if !bytes.starts_with(KEY_PREFIX.as_bytes()) {
            return Err(KeyParseError::WrongPrefix);
        }
        let text: [u8; KEY_LEN] = bytes.try_into().map_err(|_| KeyParseError::WrongLength)?;
        // One pass over the body: validate the alphabet while decoding the three numbers.
        let high = decode_u64(&text[ID_START..ID_START + HALF_ID_LEN]);
        let low = decode_u64(&text[ID_START + HALF_ID_LEN..SECRET_START]);
        let secret_ok = text[SECRET_START..CHECKSUM_START]
            .iter()
            .all(|&b| DIGITS[usize::from(b)] != INVALID);
        let checksum = decode_u64(&text[CHECKSUM_START..]);
        let (Ok(high), Ok(low), true, Ok(checksum)) = (high, low, secret_ok, checksum) else {
            return Err(KeyParseError::InvalidCharacter);
        };
        if checksum != Some(u64::from(crc32fast::hash(&text[..CHECKSUM_START]))) {
            return Err(KeyParseError::BadChecksum);
        }
        let (Some(high), Some(low)) = (high, low) else {
            return Err(KeyParseError::InvalidId);
        };
        Ok(Self {
            text,
            id: KeyId(Uuid::from_u64_pair(high, low)),
        })
    }

    /// Generates a key with a fresh random id and secret.
    pub fn generate() -> Result<Self, RandomnessError> {
        Self::generate_for(KeyId::new_random())
    }

    /// Generates a new secret for an existing id (used by rotation, which keeps the id).
    pub fn generate_for(id: KeyId) -> Result<Self, RandomnessError> {
        let mut text = [0u8; KEY_LEN];
        text[..ID_START].copy_from_slice(KEY_PREFIX.as_bytes());
        let (high, low) = id.0.as_u64_pair();
        encode_u64(high, &mut text[ID_START..ID_START + HALF_ID_LEN]);
        encode_u64(low, &mut text[ID_START + HALF_ID_LEN..SECRET_START]);
        fill_random_base62(&mut text[SECRET_START..CHECKSUM_START])?;
        let checksum = encode_checksum(&text[..CHECKSUM_START]);
        text[CHECKSUM_START..].copy_from_slice(&checksum);
        Ok(Self { text, id })
    }

    /// The key's id (not secret).
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The full key text. This is the secret: show it once, never log it.
    pub fn expose(&self) -> &str {
        // Cannot fail: `parse` and `generate_for` only ever store ASCII bytes.
        std::str::from_utf8(&self.text).unwrap_or_default()
    }

    /// The secret characters (the part a store never sees).
    pub(crate) fn secret_bytes(&self) -> &[u8] {
        &self.text[SECRET_START..CHECKSUM_START]
    }

    /// A short non-secret fragment for lists and logs: the prefix, the first 6 characters of
    /// the id and the last 4 of the secret, e.g. `nxr_4fGh2k…Xy3Q`. It reveals about 24 of the
    /// secret's 190 bits, leaving more than 160 bits, and changes when the key is rotated.
    pub fn display_fragment(&self) -> String {
        let id = &self.text[ID_START..ID_START + 6];
        let tail = &self.text[CHECKSUM_START - 4..CHECKSUM_START];
        let mut out = String::with_capacity(KEY_PREFIX.len() + 6 + 3 + 4);
        out.push_str(KEY_PREFIX);
        out.extend(id.iter().map(|&b| char::from(b)));
        out.push('…');
        out.extend(tail.iter().map(|&b| char::from(b)));
        out
    }
}

impl Drop for ApiKey {
    fn drop(&mut self) {
        self.text.zeroize();
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("secret", &format_args!("[redacted]"))
            .finish()
    }
}

impl PartialEq for ApiKey {
    /// Constant-time comparison of the whole key text.
    fn eq(&self, other: &Self) -> bool {
        use subtle::ConstantTimeEq;
        self.text.ct_eq(&other.text).into()
    }
}

impl Eq for ApiKey {}

/// Whether `token` looks like an API key (starts with the `nxr_` prefix). Tokens that do are
/// always handled as keys, never as JWTs.
pub fn has_key_prefix(token: &str) -> bool {
    token.as_bytes().starts_with(KEY_PREFIX.as_bytes())
}

pub(crate) fn fill_random_base62(out: &mut [u8]) -> Result<(), RandomnessError> {
    // Rejection sampling: bytes >= 248 (= 4 * 62) are discarded so every character is uniform.
    let mut pool = [0u8; 64];
    let mut filled = 0;
    while filled < out.len() {
        rand::rngs::SysRng
            .try_fill_bytes(&mut pool)
            .map_err(RandomnessError)?;
        for &byte in &pool {
            if filled == out.len() {
                break;
            }
            if byte < 248 {
                out[filled] = ALPHABET[usize::from(byte % 62)];
                filled += 1;
            }
        }
    }
    pool.zeroize();
    Ok(())
}

fn encode_u64(mut value: u64, out: &mut [u8]) {
    for slot in out.iter_mut().rev() {
        // `value % 62` is below 62, so the index is in bounds.
        *slot = ALPHABET[(value % 62) as usize];
        value /= 62;
    }
}

const INVALID: u8 = 0xFF;

/// Base62 digit values by byte; [`INVALID`] for bytes outside the alphabet.
const DIGITS: [u8; 256] = {
    let mut table = [INVALID; 256];
    let mut i = 0;
    while i < ALPHABET.len() {
        table[ALPHABET[i] as usize] = i as u8;
        i += 1;
    }
    table
};

/// Decodes fixed-width base62. `Err` on a byte outside the alphabet; `Ok(None)` on overflow.
fn decode_u64(chars: &[u8]) -> Result<Option<u64>, ()> {
    let mut acc: Option<u64> = Some(0);
    for &c in chars {
        let d = DIGITS[usize::from(c)];
        if d == INVALID {
            return Err(());
        }
        acc = acc
            .and_then(|a| a.checked_mul(62))
            .and_then(|a| a.checked_add(u64::from(d)));
    }
    Ok(acc)
}

fn encode_checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut out = [0u8; CHECKSUM_LEN];
    encode_u64(u64::from(crc32fast::hash(body)), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let key = ApiKey::generate().unwrap();
        let text = key.expose();
        assert_eq!(text.len(), KEY_LEN);
        assert!(text.starts_with("nxr_"));
        assert!(text[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(ApiKey::parse(text).unwrap(), key);
        assert_ne!(ApiKey::generate().unwrap(), key);
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let key = ApiKey::generate().unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&key.expose()[SECRET_START..CHECKSUM_START]));
        assert!(debug.contains("[redacted]"));
    }

    #[test]
    fn rotation_keeps_the_id_and_changes_the_secret() {
        let key = ApiKey::generate().unwrap();
        let rotated = ApiKey::generate_for(key.id()).unwrap();
        assert_eq!(rotated.id(), key.id());
        assert_ne!(rotated.secret_bytes(), key.secret_bytes());
        assert_eq!(ApiKey::parse(rotated.expose()).unwrap().id(), key.id());
    }

    #[test]
    fn display_fragment_is_short_and_not_the_secret() {
        let key = ApiKey::generate().unwrap();
        let fragment = key.display_fragment();
        assert!(fragment.starts_with("nxr_"));
        assert_eq!(fragment.chars().count(), 4 + 6 + 1 + 4);
        assert!(!key.expose().contains(&fragment));
    }

    #[test]
    fn typed_errors_for_each_kind_of_bad_input() {
        let good = ApiKey::generate().unwrap();
        let text = good.expose().to_owned();
        assert_eq!(ApiKey::parse(""), Err(KeyParseError::WrongPrefix));
        assert_eq!(ApiKey::parse("nxr"), Err(KeyParseError::WrongPrefix));
        assert_eq!(ApiKey::parse("abc_x"), Err(KeyParseError::WrongPrefix));
        assert_eq!(ApiKey::parse("nxr_"), Err(KeyParseError::WrongLength));
        assert_eq!(
            ApiKey::parse(&text[..KEY_LEN - 1]),
            Err(KeyParseError::WrongLength)
        );
        assert_eq!(
            ApiKey::parse(&format!("{text}A")),
            Err(KeyParseError::WrongLength)
        );
        let mut bad = text.clone().into_bytes();
        bad[30] = b'-';
        assert_eq!(
            ApiKey::parse(std::str::from_utf8(&bad).unwrap()),
            Err(KeyParseError::InvalidCharacter)
        );
        let mut bad = text.into_bytes();
        bad[30] = if bad[30] == b'a' { b'b' } else { b'a' };
        assert_eq!(
            ApiKey::parse(std::str::from_utf8(&bad).unwrap()),
            Err(KeyParseError::BadChecksum)
        );
    }

    #[test]
    fn id_overflow_is_rejected_even_with_a_valid_checksum() {
        // "zzzzzzzzzzz" is 62^11 - 1 > u64::MAX; forge a matching checksum.
        let mut text = [b'0'; KEY_LEN];
        text[..4].copy_from_slice(b"nxr_");
        text[4..15].copy_from_slice(b"zzzzzzzzzzz");
        let crc = encode_checksum(&text[..CHECKSUM_START]);
        text[CHECKSUM_START..].copy_from_slice(&crc);
        let forged = std::str::from_utf8(&text).unwrap();
        assert_eq!(ApiKey::parse(forged), Err(KeyParseError::InvalidId));
    }

    #[test]
    fn base62_round_trips_extremes() {
        for value in [0, 1, 61, 62, u64::MAX, u64::MAX - 1, 1 << 63] {
            let mut buf = [0u8; HALF_ID_LEN];
            encode_u64(value, &mut buf);
            assert_eq!(decode_u64(&buf), Ok(Some(value)));
        }
    }

    proptest! {
        #[test]
        fn parse_is_total(input in ".{0,80}") {
            let _ = ApiKey::parse(&input);
        }

        #[test]
        fn parse_is_total_on_key_like_input(body in "[0-9A-Za-z_\\-]{0,70}") {
            let input = format!("nxr_{body}");
            if let Ok(key) = ApiKey::parse(&input) {
                prop_assert_eq!(key.expose(), input.as_str());
            }
        }

        #[test]
        fn format_parse_round_trip(high in any::<u64>(), low in any::<u64>()) {
            let id = KeyId::from_uuid(Uuid::from_u64_pair(high, low));
            let key = ApiKey::generate_for(id).unwrap();
            let parsed = ApiKey::parse(key.expose()).unwrap();
            prop_assert_eq!(parsed.id(), id);
            prop_assert_eq!(parsed.expose(), key.expose());
        }

        #[test]
        fn any_single_character_change_fails_parse(pos in 4usize..KEY_LEN, replacement in "[0-9A-Za-z]") {
            let key = ApiKey::generate().unwrap();
            let mut text = key.expose().as_bytes().to_vec();
            let replacement = replacement.as_bytes()[0];
            prop_assume!(text[pos] != replacement);
            text[pos] = replacement;
            // CRC32 detects every single-symbol error in a message this short.
            prop_assert!(ApiKey::parse(std::str::from_utf8(&text).unwrap()).is_err());
        }
    }
}
