//! WebSockets that end with their credential.
//!
//! A WebSocket outlives the request that opened it: the auth layer checked the credential
//! once, at the upgrade. [`credential_ended`] resolves when that credential stops
//! authenticating ([`Authenticator::watch`]: the key revoked, rotated without grace or
//! expired, the user disabled or deleted, the access token expired), with the Close frame the
//! socket sends then. [`until_credential_ends`] runs a socket's own work (echo, relay, …) until
//! then, so a handler only sends the frame:
//!
//! ```
//! # use std::sync::Arc;
//! # use nexora_auth::{Authenticator, MemoryKeyStore, NewKey, OwnerId, PepperRing, RevokeOptions, Scopes, SecretBytes};
//! use nexora_auth_http::websocket::{SocketClose, until_credential_ends};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let pepper = SecretBytes::new(b"pepper: 32+ random bytes, kept out of the db".to_vec());
//! # let auth = Authenticator::builder(Arc::new(MemoryKeyStore::new()), PepperRing::new(1, pepper)?).build()?;
//! # let owner = OwnerId::new("ada");
//! # let created = auth.create_key_for(&owner, &Scopes::empty(), NewKey::named("chat")).await?;
//! // The principal the auth layer put on the upgrade request.
//! let principal = auth.authenticate(created.key.expose()).await?;
//! // The socket's work; here, one that would run for ever.
//! let serve_socket = std::future::pending::<()>();
//! let socket = until_credential_ends(&auth, &principal, serve_socket);
//! # let revoke = async {
//! #     tokio::task::yield_now().await;
//! #     auth.revoke_key(&principal, created.info.id, RevokeOptions::default()).await
//! # };
//! # let (outcome, revoked) = tokio::join!(socket, revoke);
//! # revoked?;
//! // The key is revoked meanwhile: the work is dropped, and the socket sends this Close frame.
//! assert_eq!(
//!     outcome,
//!     Err(SocketClose::new(SocketClose::CREDENTIAL_INVALID, "credential revoked"))
//! );
//! # Ok(())
//! # }
//! ```
//!
//! The close reasons name the cause in a few words and never a secret or an id; the holder of
//! the socket held the credential, so they learn nothing new. A store outage is not read as
//! "the credential is fine": the socket closes with 1011, fail closed.

use std::{
    future::{Future, poll_fn},
    pin::pin,
    task::Poll,
};

use nexora_auth::{AuthError, Authenticator, InvalidReason, Principal};

/// The Close frame a WebSocket sends when its credential ends: a close code and a short
/// reason (at most 123 bytes, the limit of a Close frame's reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct SocketClose {
    /// The close code: [`SocketClose::CREDENTIAL_INVALID`] or
    /// [`SocketClose::INTERNAL_ERROR`].
    pub code: u16,
    /// The reason, for people reading logs: `credential revoked`, `credential expired`, …
    pub reason: &'static str,
}

impl SocketClose {
    /// 4401, in the range RFC 6455 leaves to applications, after HTTP's 401: the credential the
    /// socket was opened with no longer authenticates. The client should not reconnect with it.
    pub const CREDENTIAL_INVALID: u16 = 4401;
    /// 1011 (RFC 6455, internal error): the credential could not be checked (the store is
    /// down). The credential may still be good: the client may reconnect later.
    pub const INTERNAL_ERROR: u16 = 1011;

    /// A Close frame of `code` and `reason`.
    pub const fn new(code: u16, reason: &'static str) -> Self {
        Self { code, reason }
    }

    /// The Close frame for the error [`Authenticator::watch`] resolved with.
    pub fn for_error(error: &AuthError) -> Self {
        let invalid = |reason| Self::new(Self::CREDENTIAL_INVALID, reason);
        match error {
            AuthError::InvalidToken(reason) => match reason {
                // A deleted key reads as revoked: both are gone for good.
                InvalidReason::Revoked | InvalidReason::UnknownKey => invalid("credential revoked"),
                InvalidReason::SecretMismatch => invalid("credential rotated"),
                InvalidReason::Expired => invalid("credential expired"),
                InvalidReason::UserDisabled => invalid("user disabled"),
                InvalidReason::UnknownUser => invalid("user deleted"),
                _ => invalid("credential invalid"),
            },
            AuthError::StoreUnavailable(_) => {
                Self::new(Self::INTERNAL_ERROR, "credential store unavailable")
            }
            // Nothing else comes out of a watch today; whatever does cannot vouch for the
            // credential, so the socket closes all the same.
            _ => Self::new(Self::INTERNAL_ERROR, "credential check failed"),
        }
    }
}

/// Resolves when the credential behind `principal` stops authenticating, with the Close frame
/// to send ([`Authenticator::watch`], mapped by [`SocketClose::for_error`]). Within the
/// verification cache's bound: at once for a change made through this authenticator, within
/// its ceiling for one made elsewhere (another instance on the same database), within 1 second
/// when the cache is off or cannot vouch for its entries.
pub async fn credential_ended(authenticator: &Authenticator, principal: &Principal) -> SocketClose {
    SocketClose::for_error(&authenticator.watch(principal).await)
}

/// Runs `work` (a socket's loop) until it finishes (`Ok` with its output: the client left) or
/// the credential behind `principal` ends ([`credential_ended`]; `Err` with the Close frame to
/// send), whichever comes first; `work` is dropped unfinished in the second case. When both
/// are ready at once, the credential wins: a socket never outlives its credential by a
/// message.
pub async fn until_credential_ends<F: Future>(
    authenticator: &Authenticator,
    principal: &Principal,
    work: F,
) -> Result<F::Output, SocketClose> {
    let mut ended = pin!(credential_ended(authenticator, principal));
    let mut work = pin!(work);
    poll_fn(|cx| {
        if let Poll::Ready(close) = ended.as_mut().poll(cx) {
            return Poll::Ready(Err(close));
        }
        work.as_mut().poll(cx).map(Ok)
    })
    .await
}

#[cfg(test)]
mod tests {
    use nexora_auth::{AuthError, InvalidReason, StoreError};

    use super::SocketClose;

    #[test]
    fn every_end_of_a_credential_has_its_close_frame() {
        let invalid = SocketClose::CREDENTIAL_INVALID;
        for (error, code, reason) in [
            (InvalidReason::Revoked, invalid, "credential revoked"),
            (InvalidReason::UnknownKey, invalid, "credential revoked"),
            (InvalidReason::SecretMismatch, invalid, "credential rotated"),
            (InvalidReason::Expired, invalid, "credential expired"),
            (InvalidReason::UserDisabled, invalid, "user disabled"),
            (InvalidReason::UnknownUser, invalid, "user deleted"),
            (InvalidReason::UnknownPepper, invalid, "credential invalid"),
        ] {
            let close = SocketClose::for_error(&AuthError::InvalidToken(error));
            assert_eq!((close.code, close.reason), (code, reason));
        }
        let outage = SocketClose::for_error(&AuthError::StoreUnavailable(StoreError::unavailable(
            "timed out",
        )));
        assert_eq!(
            (outage.code, outage.reason),
            (1011, "credential store unavailable")
        );
    }
}
