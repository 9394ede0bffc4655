//! Scopes: what a principal may do (`agents:read`, `keys:manage`, …).

use std::{fmt, sync::Arc};

/// Longest accepted scope, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;
/// Most scopes one credential may carry.
pub const MAX_SCOPES: usize = 64;

/// A scope string is not an RFC 6749 `scope-token`, is too long, or there are too many.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeError {
    /// Empty, longer than [`MAX_SCOPE_LEN`], or containing a character outside
    /// `%x21 / %x23-5B / %x5D-7E` (RFC 6749 §3.3).
    #[error("invalid scope")]
    Invalid,
    /// More than [`MAX_SCOPES`] scopes.
    #[error("too many scopes (at most {MAX_SCOPES})")]
    TooMany,
}

fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= MAX_SCOPE_LEN
        && scope
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// A validated, sorted, de-duplicated set of scopes. Cheap to clone (shared).
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Scopes(Arc<[String]>);

impl Scopes {
    /// No scopes.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Validates and normalises scopes (sorted, duplicates removed).
    pub fn new<I, S>(scopes: I) -> Result<Self, ScopeError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut list: Vec<String> = Vec::new();
        for scope in scopes {
            let scope = scope.into();
            if !valid_scope(&scope) {
                return Err(ScopeError::Invalid);
            }
            list.push(scope);
            if list.len() > MAX_SCOPES * 2 {
                return Err(ScopeError::TooMany);
            }
        }
        list.sort_unstable();
        list.dedup();
        if list.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        Ok(Self(list.into()))
    }

    /// Parses a space-separated list (the OAuth `scope` claim form).
    pub fn parse_space_separated(text: &str) -> Result<Self, ScopeError> {
        Self::new(text.split(' ').filter(|s| !s.is_empty()))
    }

    /// The scopes as one space-separated string.
    pub fn to_space_separated(&self) -> String {
        self.0.join(" ")
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.binary_search_by(|s| s.as_str().cmp(scope)).is_ok()
    }

    /// Whether every scope of `self` is also in `other`.
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }

    /// The scopes in both `self` and `other`, in `self`'s order. Returns a clone of `self`
    /// (no allocation) when `self` is already a subset of `other`.
    pub fn intersection(&self, other: &Scopes) -> Scopes {
        if self.is_subset_of(other) {
            return self.clone();
        }
        Scopes(
            self.0
                .iter()
                .filter(|s| other.contains(s))
                .cloned()
                .collect(),
        )
    }

    /// The scopes of `self` missing from `other`.
    pub fn missing_from<'a>(&'a self, other: &'a Scopes) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .map(String::as_str)
            .filter(|s| !other.contains(s))
    }

    /// Iterates in sorted order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// Number of scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.iter()).finish()
    }
}

impl serde::Serialize for Scopes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter())
    }
}

impl<'de> serde::Deserialize<'de> for Scopes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let list = Vec::<String>::deserialize(deserializer)?;
        Scopes::new(list).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_checks() {
        let s = Scopes::new(["keys:manage", "agents:read", "agents:read"]).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["agents:read", "keys:manage"]);
        assert!(s.contains("agents:read"));
        assert!(!s.contains("agents:write"));
        let sub = Scopes::new(["agents:read"]).unwrap();
        assert!(sub.is_subset_of(&s));
        assert!(!s.is_subset_of(&sub));
        assert_eq!(s.missing_from(&sub).collect::<Vec<_>>(), ["keys:manage"]);
        assert_eq!(s.to_space_separated(), "agents:read keys:manage");
        assert_eq!(
            Scopes::parse_space_separated("b  a")
                .unwrap()
                .to_space_separated(),
            "a b"
        );
    }

    #[test]
    fn rejects_bad_scopes() {
        for bad in ["", "a b", "quote\"", "back\\slash", "é", &"x".repeat(129)] {
            assert_eq!(Scopes::new([bad]), Err(ScopeError::Invalid), "{bad:?}");
        }
        let many: Vec<String> = (0..65).map(|i| format!("s{i}")).collect();
        assert_eq!(Scopes::new(many), Err(ScopeError::TooMany));
    }
}
