//! Secret values that never print, never `Display`, and are wiped from memory on drop.

use std::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A secret string: a password, a raw token, an API key's text.
///
/// `Debug` prints `[redacted]`; there is deliberately no `Display`. The bytes are zeroized on
/// drop. Read the value with [`SecretString::expose`], which makes every read greppable.
#[derive(Clone, Zeroize, ZeroizeOnDrop, Default)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a string, taking ownership so no unwiped copy is left behind by this call.
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The secret value. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (not secret: it is visible on the wire anyway).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

/// Secret bytes: a pepper, an HMAC or JWT signing secret.
///
/// `Debug` prints `[redacted]`, there is no `Display`, and the bytes are zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretBytes(Vec<u8>);

impl SecretBytes {
    /// Wraps secret bytes.
    pub fn new(value: Vec<u8>) -> Self {
        Self(value)
    }

    /// `len` bytes from the operating system's CSPRNG (for generating peppers and JWT
    /// secrets).
    pub fn generate(len: usize) -> Result<Self, crate::RandomnessError> {
        use rand::TryRng;
        let mut bytes = vec![0u8; len];
        rand::rngs::SysRng
            .try_fill_bytes(&mut bytes)
            .map_err(crate::RandomnessError::from)?;
        Ok(Self(bytes))
    }

    /// The secret bytes. Do not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(value: Vec<u8>) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let s = SecretString::from("hunter2-password");
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    [redacted],\n)");
        let b = SecretBytes::new(b"pepper-bytes".to_vec());
        let g = SecretBytes::generate(32).unwrap();
        assert_eq!(g.len(), 32);
        assert_ne!(g.expose(), SecretBytes::generate(32).unwrap().expose());
        assert_eq!(format!("{b:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2-password");
    }
}
