//! Throwaway signing keys for tests (feature `jwt`), embedded so that a crate's tests build
//! from its package alone. Generated with `openssl genpkey`; never use them anywhere else.
//!
//! Private keys are PKCS#8 PEM (RSA: PEM), public keys SPKI PEM.

/// A P-256 private key (the signing key of the asymmetric rings in the HTTP suites).
pub const ES256_A: &[u8] = include_bytes!("../keys/es256-a.pem");
/// The public key of [`ES256_A`].
pub const ES256_A_PUBLIC: &[u8] = include_bytes!("../keys/es256-a.pub.pem");
/// Another P-256 private key, which no ring holds (the attacker's own key).
pub const ES256_B: &[u8] = include_bytes!("../keys/es256-b.pem");
/// The public key of [`ES256_B`].
pub const ES256_B_PUBLIC: &[u8] = include_bytes!("../keys/es256-b.pub.pem");
/// An Ed25519 private key.
pub const ED25519: &[u8] = include_bytes!("../keys/ed25519.pem");
/// The public key of [`ED25519`].
pub const ED25519_PUBLIC: &[u8] = include_bytes!("../keys/ed25519.pub.pem");
/// An RSA private key.
pub const RS256: &[u8] = include_bytes!("../keys/rs256.pem");
/// The public key of [`RS256`].
pub const RS256_PUBLIC: &[u8] = include_bytes!("../keys/rs256.pub.pem");
