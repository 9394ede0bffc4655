//! Keyed digests of API keys (HMAC-SHA256 under a server-side pepper) and their
//! constant-time comparison.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::{ApiKey, ConfigError, SecretBytes};

/// Minimum pepper length in bytes (256 bits, the HMAC-SHA256 block-size sweet spot).
pub const MIN_PEPPER_LEN: usize = 32;

/// Domain separation and format version of the digest input. One byte, so that
/// `tag ‖ id (16) ‖ secret (32)` = 49 bytes fits one SHA-256 block with its padding: with the
/// pepper's key pads precomputed, a digest costs two compressions.
const DIGEST_DOMAIN: &[u8] = b"\x01";

/// An HMAC-SHA256 digest of an API key: what a store keeps instead of the key.
///
/// Equality is constant-time. `Debug` does not print the bytes.
#[derive(Clone, Copy)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// Wraps digest bytes read back from a store.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest bytes, for a store to write.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// URL-safe base64 without padding (43 characters).
#[cfg(feature = "serde")]
impl serde::Serialize for KeyDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use base64::Engine as _;
        serializer.serialize_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0))
    }
}

/// Accepts exactly what [`KeyDigest`]'s `Serialize` writes: 32 bytes in URL-safe base64
/// without padding.
#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for KeyDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use base64::Engine as _;
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("a key digest must be URL-safe base64"))?;
        Self::try_from(bytes.as_slice())
            .map_err(|_| serde::de::Error::custom("a key digest must be 32 bytes"))
    }
}

impl TryFrom<&[u8]> for KeyDigest {
    type Error = std::array::TryFromSliceError;

    fn try_from(bytes: &[u8]) -> Result<Self, Self::Error> {
        bytes.try_into().map(Self)
    }
}

impl PartialEq for KeyDigest {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq(other)
    }
}

impl Eq for KeyDigest {}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyDigest([redacted])")
    }
}

/// A digest together with the version of the pepper that produced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct StoredDigest {
    /// Which pepper of the [`PepperRing`] keyed this digest.
    pub pepper_version: u32,
    /// The HMAC-SHA256 output.
    pub digest: KeyDigest,
}

impl StoredDigest {
    /// The generation of the secret this digest was made of, as a derived token carries it
    /// (see [`KeyGeneration`]).
    pub fn generation(&self) -> KeyGeneration {
        use sha2::Digest as _;
        let mut hash = Sha256::new();
        hash.update(GENERATION_DOMAIN);
        hash.update(self.pepper_version.to_be_bytes());
        hash.update(self.digest.as_bytes());
        let full: [u8; 32] = hash.finalize().into();
        let mut short = [0u8; GENERATION_LEN];
        short.copy_from_slice(&full[..GENERATION_LEN]);
        KeyGeneration(short)
    }
}

/// Domain separation of [`StoredDigest::generation`].
const GENERATION_DOMAIN: &[u8] = b"nexora-auth key generation\x01";
/// Bytes of a [`KeyGeneration`]: 96 bits, so two secrets of one key never share one.
const GENERATION_LEN: usize = 12;

/// Which secret of a key something was derived from: a short fingerprint of the stored digest
/// (SHA-256 over it, truncated to 96 bits). A rotation changes it; a derived token carries it
/// (claim `nxr_gen`), so the token dies with the secret it came from.
///
/// It reveals nothing usable: the digest it is taken from is itself a keyed HMAC, and a
/// fingerprint cannot be turned back into one. Equality is constant-time.
#[derive(Clone, Copy)]
pub struct KeyGeneration([u8; GENERATION_LEN]);

impl KeyGeneration {
    /// Length of [`KeyGeneration::to_text`]: 16 characters of URL-safe base64.
    pub const TEXT_LEN: usize = 16;

    /// The claim text: URL-safe base64 without padding.
    pub fn to_text(&self) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Reads [`KeyGeneration::to_text`]'s form; `None` for anything else.
    pub fn from_text(text: &str) -> Option<Self> {
        use base64::Engine as _;
        if text.len() != Self::TEXT_LEN {
            return None;
        }
        let mut out = [0u8; GENERATION_LEN];
        let len = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode_slice(text, &mut out)
            .ok()?;
        (len == GENERATION_LEN).then_some(Self(out))
    }
}

impl PartialEq for KeyGeneration {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for KeyGeneration {}

impl fmt::Debug for KeyGeneration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyGeneration({})", self.to_text())
    }
}

struct Pepper {
    version: u32,
    /// HMAC state with the pepper already absorbed: cloning it skips the two key-pad
    /// compressions on every request. The raw pepper bytes are not kept.
    keyed: Hmac<Sha256>,
}

/// The server-side peppers: one current (used for new digests) and any number of retired
/// ones (still accepted for keys created under them).
///
/// Peppers never enter a store. Rotating the pepper is: add the new one as current, keep the
/// old one as retired until every key digested under it has been rotated or revoked.
pub struct PepperRing {
    current: u32,
    peppers: Vec<Pepper>,
}

impl PepperRing {
    /// A ring with a single pepper, `version`, used for everything.
    ///
    /// Fails if the pepper is shorter than [`MIN_PEPPER_LEN`] bytes.
    pub fn new(version: u32, pepper: SecretBytes) -> Result<Self, ConfigError> {
        let mut ring = Self {
            current: version,
            peppers: Vec::with_capacity(1),
        };
        ring.insert(version, pepper)?;
        Ok(ring)
    }

    /// Adds a retired pepper that still verifies old digests. Fails on a short pepper or a
    /// version already in the ring.
    pub fn with_retired(mut self, version: u32, pepper: SecretBytes) -> Result<Self, ConfigError> {
        self.insert(version, pepper)?;
        Ok(self)
    }

    fn insert(&mut self, version: u32, pepper: SecretBytes) -> Result<(), ConfigError> {
        if pepper.len() < MIN_PEPPER_LEN {
            return Err(ConfigError::PepperTooShort {
                min: MIN_PEPPER_LEN,
            });
        }
        if self.peppers.iter().any(|p| p.version == version) {
            return Err(ConfigError::DuplicatePepperVersion(version));
        }
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper.expose()).map_err(|_| {
            ConfigError::PepperTooShort {
                min: MIN_PEPPER_LEN,
            }
        })?;
        self.peppers.push(Pepper { version, keyed });
        Ok(())
    }

    /// The version new digests are made with.
    pub fn current_version(&self) -> u32 {
        self.current
    }

    /// Digests `key` under the current pepper.
    pub fn digest(&self, key: &ApiKey) -> StoredDigest {
        // The current pepper is always present: `new` inserts it and nothing removes it.
        let digest = self
            .digest_with(self.current, key)
            .unwrap_or(KeyDigest([0; 32]));
        StoredDigest {
            pepper_version: self.current,
            digest,
        }
    }

    /// Digests `key` under pepper `version`; `None` if the ring does not hold that version.
    pub fn digest_with(&self, version: u32, key: &ApiKey) -> Option<KeyDigest> {
        let pepper = self.peppers.iter().find(|p| p.version == version)?;
        let mut mac = pepper.keyed.clone();
        mac.update(DIGEST_DOMAIN);
        mac.update(key.id().as_uuid().as_bytes());
        mac.update(key.secret_bytes());
        Some(KeyDigest(mac.finalize().into_bytes().into()))
    }

    /// Whether `key` matches `stored`, in constant time with respect to the digest bytes.
    /// `false` if the stored digest's pepper version is unknown.
    pub fn verify(&self, key: &ApiKey, stored: &StoredDigest) -> bool {
        match self.digest_with(stored.pepper_version, key) {
            Some(digest) => digest.ct_eq(&stored.digest),
            None => false,
        }
    }
}

impl fmt::Debug for PepperRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let versions: Vec<u32> = self.peppers.iter().map(|p| p.version).collect();
        f.debug_struct("PepperRing")
            .field("current", &self.current)
            .field("versions", &versions)
            .field("peppers", &format_args!("[redacted]"))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(byte: u8) -> SecretBytes {
        SecretBytes::new(vec![byte; 32])
    }

    #[test]
    fn digest_depends_on_pepper_and_key() {
        let ring = PepperRing::new(1, pepper(1)).unwrap();
        let other = PepperRing::new(1, pepper(2)).unwrap();
        let key = ApiKey::generate().unwrap();
        let d = ring.digest(&key);
        assert_eq!(d.pepper_version, 1);
        assert!(ring.verify(&key, &d));
        assert!(!other.verify(&key, &d));
        assert!(!ring.verify(&ApiKey::generate().unwrap(), &d));
        assert_eq!(ring.digest(&key), d, "digest is deterministic");
    }

    #[test]
    fn digest_matches_a_plain_hmac_sha256() {
        let ring = PepperRing::new(7, pepper(9)).unwrap();
        let key = ApiKey::generate().unwrap();
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&[9; 32]).unwrap();
        mac.update(DIGEST_DOMAIN);
        mac.update(key.id().as_uuid().as_bytes());
        mac.update(&key.expose().as_bytes()[26..58]);
        let expected: [u8; 32] = mac.finalize().into_bytes().into();
        assert_eq!(ring.digest(&key).digest.as_bytes(), &expected);
    }

    #[test]
    fn retired_pepper_still_verifies_and_rejects_short_or_duplicate() {
        let old = PepperRing::new(1, pepper(1)).unwrap();
        let key = ApiKey::generate().unwrap();
        let d = old.digest(&key);
        let ring = PepperRing::new(2, pepper(2))
            .unwrap()
            .with_retired(1, pepper(1))
            .unwrap();
        assert!(ring.verify(&key, &d));
        assert_eq!(ring.digest(&key).pepper_version, 2);
        assert!(
            PepperRing::new(2, pepper(2))
                .unwrap()
                .with_retired(2, pepper(3))
                .is_err()
        );
        assert!(PepperRing::new(1, SecretBytes::new(vec![0; 31])).is_err());
        let without = PepperRing::new(2, pepper(2)).unwrap();
        assert!(
            !without.verify(&key, &d),
            "unknown pepper version never verifies"
        );
    }

    #[test]
    fn generations_follow_the_digest_and_read_back() {
        let ring = PepperRing::new(1, pepper(1)).unwrap();
        let key = ApiKey::generate().unwrap();
        let d = ring.digest(&key);
        let g = d.generation();
        assert_eq!(g, ring.digest(&key).generation(), "deterministic");
        assert_ne!(g, ring.digest(&ApiKey::generate().unwrap()).generation());
        let other_version = StoredDigest {
            pepper_version: 2,
            ..d
        };
        assert_ne!(g, other_version.generation(), "the pepper version counts");
        let text = g.to_text();
        assert_eq!(text.len(), KeyGeneration::TEXT_LEN);
        assert_eq!(KeyGeneration::from_text(&text), Some(g));
        for bad in ["", "short", "!!!!!!!!!!!!!!!!", &format!("{text}A")] {
            assert_eq!(KeyGeneration::from_text(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn debug_hides_peppers_and_digests() {
        let ring = PepperRing::new(1, pepper(0xAB)).unwrap();
        let d = ring.digest(&ApiKey::generate().unwrap());
        assert_eq!(format!("{:?}", d.digest), "KeyDigest([redacted])");
        assert!(format!("{ring:?}").contains("[redacted]"));
    }
}
