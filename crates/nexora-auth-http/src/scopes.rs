//! Names of the scopes the Nexora API checks, and type-level markers for extractors.

use std::{fmt, marker::PhantomData, ops::Deref};

use nexora_auth::{AuthError, Principal};

/// Manage one's own API keys: list, create, rotate, revoke.
pub const KEYS_MANAGE: &str = "keys:manage";
/// Read agents (the product's `GET /api/agents`).
pub const AGENTS_READ: &str = "agents:read";
/// Read one's own audit trail (`GET /users/me/audit-events`).
pub const AUDIT_READ: &str = "audit:read";

/// A scope known at compile time, for framework extractors such as
/// `RequireScope<KeysManage>` that answer 403 when the principal lacks it.
///
/// ```
/// use nexora_auth_http::scopes::ScopeName;
///
/// /// `agents:write`, for the routes that change agents.
/// pub struct AgentsWrite;
/// impl ScopeName for AgentsWrite {
///     const NAME: &'static str = "agents:write";
/// }
/// ```
pub trait ScopeName: Send + Sync + 'static {
    /// The scope text, e.g. `"agents:read"`.
    const NAME: &'static str;
}

/// Marker for [`KEYS_MANAGE`].
#[derive(Debug, Clone, Copy, Default)]
pub struct KeysManage;

impl ScopeName for KeysManage {
    const NAME: &'static str = KEYS_MANAGE;
}

/// Marker for [`AGENTS_READ`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AgentsRead;

impl ScopeName for AgentsRead {
    const NAME: &'static str = AGENTS_READ;
}

/// Marker for [`AUDIT_READ`].
#[derive(Debug, Clone, Copy, Default)]
pub struct AuditRead;

impl ScopeName for AuditRead {
    const NAME: &'static str = AUDIT_READ;
}

/// A principal known to hold scope `S`: what the framework crates' `RequireScope<S>`
/// extractors carry. Built only by [`Scoped::check`].
pub struct Scoped<S: ScopeName> {
    principal: Principal,
    scope: PhantomData<fn() -> S>,
}

impl<S: ScopeName> Scoped<S> {
    /// `principal`, if it holds `S`; else 403 ([`AuthError::InsufficientScope`]).
    pub fn check(principal: Principal) -> Result<Self, AuthError> {
        principal.require_scope(S::NAME)?;
        Ok(Self {
            principal,
            scope: PhantomData,
        })
    }

    /// The principal.
    pub fn into_inner(self) -> Principal {
        self.principal
    }
}

impl<S: ScopeName> fmt::Debug for Scoped<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scoped")
            .field("scope", &S::NAME)
            .field("principal", &self.principal)
            .finish()
    }
}

impl<S: ScopeName> Deref for Scoped<S> {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.principal
    }
}

/// Defines, in a framework adapter crate, the three types every adapter offers —
/// `Authenticated` (a principal), `RequireScope<S>` (a principal holding scope `S`) and
/// `AuthRejection` (an [`ApiError`](crate::ApiError) to answer with, `From` it and from a core
/// `AuthError`) — with their `Deref`, `Debug`, `Display` and `into_inner`, so that each adapter
/// writes only its framework's traits for them. (The types must be the adapter's own: a
/// framework's trait cannot be implemented for a type of this crate.) The attributes given
/// before each `;` go on the respective type, docs included.
///
/// ```
/// nexora_auth_http::adapter_types! {
///     /// The authenticated caller.
///     ;
///     /// The authenticated caller, holding scope `S`.
///     ;
///     /// An error to answer with.
/// }
/// # let p = nexora_auth::Principal::new(
/// #     nexora_auth::OwnerId::new("a"), nexora_auth::Credential::Internal, nexora_auth::Scopes::empty());
/// assert_eq!(Authenticated(p).owner().as_str(), "a");
/// ```
#[macro_export]
macro_rules! adapter_types {
    ($(#[$authenticated:meta])* ; $(#[$require:meta])* ; $(#[$rejection:meta])*) => {
        $(#[$rejection])*
        #[derive(Debug)]
        pub struct AuthRejection(pub $crate::ApiError);

        impl ::std::fmt::Display for AuthRejection {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }

        impl ::std::convert::From<$crate::ApiError> for AuthRejection {
            fn from(error: $crate::ApiError) -> Self {
                Self(error)
            }
        }

        impl ::std::convert::From<$crate::nexora_auth::AuthError> for AuthRejection {
            fn from(error: $crate::nexora_auth::AuthError) -> Self {
                Self(error.into())
            }
        }

        $(#[$authenticated])*
        #[derive(Debug, Clone)]
        pub struct Authenticated(pub $crate::nexora_auth::Principal);

        impl ::std::ops::Deref for Authenticated {
            type Target = $crate::nexora_auth::Principal;

            fn deref(&self) -> &$crate::nexora_auth::Principal {
                &self.0
            }
        }

        $(#[$require])*
        pub struct RequireScope<S: $crate::scopes::ScopeName>(pub $crate::scopes::Scoped<S>);

        impl<S: $crate::scopes::ScopeName> RequireScope<S> {
            /// The principal.
            pub fn into_inner(self) -> $crate::nexora_auth::Principal {
                self.0.into_inner()
            }
        }

        impl<S: $crate::scopes::ScopeName> ::std::fmt::Debug for RequireScope<S> {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Debug::fmt(&self.0, f)
            }
        }

        impl<S: $crate::scopes::ScopeName> ::std::ops::Deref for RequireScope<S> {
            type Target = $crate::nexora_auth::Principal;

            fn deref(&self) -> &$crate::nexora_auth::Principal {
                &self.0
            }
        }
    };
}

/// Implements, for a framework adapter's auth layer `$layer` (a newtype over [`Guard`]), the
/// builder every adapter offers: `new(auth)`, `accept_query_token()` and `optional()`, with
/// their docs and defaults.
///
/// [`Guard`]: crate::Guard
///
/// ```
/// /// An auth layer.
/// #[derive(Clone, Debug)]
/// pub struct MyLayer(nexora_auth_http::Guard);
/// nexora_auth_http::guard_builder!(MyLayer);
/// ```
#[macro_export]
macro_rules! guard_builder {
    ($layer:ident) => {
        impl $layer {
            /// Requires a valid credential in the `Authorization` header.
            pub fn new(auth: $crate::nexora_auth::Authenticator) -> Self {
                Self($crate::Guard::new(auth))
            }

            /// Also accepts the credential in `?token=` (for WebSocket routes). A header *and*
            /// a different `?token=` are refused. Off by default.
            pub fn accept_query_token(self) -> Self {
                Self(self.0.accept_query_token())
            }

            /// Also accepts a single-use ticket in `?ticket=` (for WebSocket routes), redeemed
            /// for the chat named by the last path segment. Off by default.
            pub fn accept_ticket(self) -> Self {
                Self(self.0.accept_ticket())
            }

            /// Lets requests *without* credentials through with no principal (use
            /// `Option<Authenticated>`); a bad credential is still refused. Off by default.
            pub fn optional(self) -> Self {
                Self(self.0.optional())
            }

            /// The reverse proxies whose forwarding header names the client address the
            /// principal carries (for the audit trail). Defaults to none: the TCP peer.
            pub fn trusted_proxies(self, proxies: $crate::proxy::TrustedProxies) -> Self {
                Self(self.0.trusted_proxies(proxies))
            }

            /// What each request through the layer costs against its credential's limits
            /// (rate limits and credits; see [`$crate::limits`]). Defaults to 1; 0 charges
            /// nothing but still reports the limits in the `RateLimit` headers.
            pub fn cost(self, cost: u32) -> Self {
                Self(self.0.cost(cost))
            }
        }
    };
}
