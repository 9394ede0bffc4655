//! The throwaway test keys of `crates/nexora-auth/tests/keys` (never used anywhere else).

/// ES256 (P-256) private key, PKCS#8 PEM: a signing key of the asymmetric rings.
pub const ES256_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-a.pem");
/// Its public key, SPKI PEM.
pub const ES256_PUBLIC: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-a.pub.pem");
/// Another P-256 key that no ring holds: the attacker's own key.
pub const ES256_ATTACKER: &[u8] = include_bytes!("../../nexora-auth/tests/keys/es256-b.pem");
/// Ed25519 private key, PKCS#8 PEM.
pub const ED25519_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/ed25519.pem");
/// Its public key, SPKI PEM.
pub const ED25519_PUBLIC: &[u8] = include_bytes!("../../nexora-auth/tests/keys/ed25519.pub.pem");
/// RSA private key, PEM.
pub const RS256_PRIVATE: &[u8] = include_bytes!("../../nexora-auth/tests/keys/rs256.pem");
/// Its public key, SPKI PEM.
pub const RS256_PUBLIC: &[u8] = include_bytes!("../../nexora-auth/tests/keys/rs256.pub.pem");
