//! Password login, behind the login throttle, and access-token issuance.

use std::net::IpAddr;

use serde::Serialize;

use super::{
    Authenticator,
    users::{check_login_email, normalize_email},
};
use crate::Unavailable;
use crate::{
    AccessToken, AuthError, NewAuditEvent, Scopes, SecretString,
    audit::{Actor, AuditAction, AuditOutcome},
    store::{OwnerId, UserRecord},
    throttle::NewLocks,
};

/// The body of a successful login: `{"access_token", "token_type": "bearer", "expires_in"}`.
#[derive(Debug, Clone)]
pub struct LoginResponse {
    /// The issued token.
    pub token: AccessToken,
}

impl Serialize for LoginResponse {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serialize_bearer(&self.token, serializer)
    }
}

/// An access token as OAuth answers it: `{"access_token", "token_type": "bearer",
/// "expires_in"}` (a login's and a derived token's answer).
pub(super) fn serialize_bearer<S: serde::Serializer>(
    token: &AccessToken,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Body<'a> {
        access_token: &'a str,
        token_type: &'static str,
        expires_in: u64,
    }
    Body {
        access_token: token.token.expose(),
        token_type: "bearer",
        expires_in: token.expires_in,
    }
    .serialize(serializer)
}

impl Authenticator {
    /// Password login without a client address (only the per-email throttle applies). See
    /// [`Authenticator::login_from`].
    pub async fn login(
        &self,
        email: &str,
        password: &SecretString,
    ) -> Result<LoginResponse, AuthError> {
        self.login_from(email, password, None).await
    }

    /// Password login. Unknown email and wrong password give the same error after the same
    /// work (one argon2 verification); so does a password over the length limit.
    ///
    /// Attempts are throttled per email (existing or not) and per `client` address (see
    /// [`ThrottlePolicy`](crate::ThrottlePolicy)): each login reserves a verification on both before the store is
    /// asked, so however many arrive at once, at most the policy's number are verified per
    /// email and per client in a window; the others, and every attempt on a locked subject
    /// (even with the right password), get [`AuthError::RateLimited`]. An email no store can
    /// hold (over [`MAX_EMAIL_LEN`](crate::MAX_EMAIL_LEN) bytes, or with a control character) is refused as
    /// [`AuthError::InvalidInput`] before the throttle and the store. A hash with outdated parameters is replaced.
    ///
    /// Audited ([`crate::audit`]): `login_succeeded`; `login_failed` (in the user's trail for
    /// a known email, in nobody's for an unknown one, never with the email), and
    /// `login_throttled` when the failure locks the email or the client. Attempts refused
    /// while a lock lasts are not recorded.
    pub async fn login_from(
        &self,
        email: &str,
        password: &SecretString,
        client: Option<IpAddr>,
    ) -> Result<LoginResponse, AuthError> {
        let users = self.users()?;
        let tokens = self
            .inner
            .tokens
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoTokenAuthority))?;
        let email = normalize_email(email);
        check_login_email(&email)?;
        let clock = &self.inner.clock;
        // Dropped on any early return (store down, hashing queue full, request cancelled):
        // given back uncounted.
        let reservation = self
            .inner
            .throttle
            .reserve(&email, client, clock.now())
            .await?;
        // A place in the hashing queue before the store: a flood is refused without a lookup.
        let ticket = self.inner.passwords.admit()?;
        let user = users.find_user_by_email(&email).await?;
        let check = self
            .inner
            .passwords
            .verify_admitted(
                ticket,
                password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await?;
        // A disabled user reads exactly like a wrong password: no account-state oracle.
        let user = match user {
            Some(user) if check.matches && !user.disabled => user,
            user => {
                let locked = reservation.failed(clock.now()).await;
                self.login_failed(user.as_ref(), check.matches, locked, client)
                    .await;
                return Err(AuthError::InvalidLogin);
            }
        };
        reservation.succeeded(clock.now()).await;
        if check.needs_rehash {
            match self.inner.passwords.hash(password).await {
                Ok(phc) => {
                    if let Err(e) = users.update_password_hash(&user.id, &phc).await {
                        tracing::warn!(user = %user.id, error = %e, "password rehash not saved");
                    }
                }
                Err(e) => tracing::warn!(user = %user.id, error = %e, "password rehash failed"),
            }
        }
        let token = tokens
            .issue(&user.id, &user.scopes)
            .map_err(|e| AuthError::Unavailable(Unavailable::Signing(e)))?;
        self.record_event(
            NewAuditEvent::new(
                AuditAction::LoginSucceeded,
                Actor::User {
                    user_id: user.id.clone(),
                },
            )
            .owner(user.id.clone())
            .target_user(&user.id)
            .client(client),
        )
        .await;
        Ok(LoginResponse { token })
    }

    /// Records a failed login: in the user's trail for a known email, in nobody's (and
    /// without the email) otherwise; and `login_throttled` when it `locked` a subject.
    async fn login_failed(
        &self,
        user: Option<&UserRecord>,
        password_matched: bool,
        locked: NewLocks,
        client: Option<IpAddr>,
    ) {
        let attempt = |action| {
            let event = NewAuditEvent::new(action, Actor::Anonymous).client(client);
            match user {
                Some(user) => event.owner(user.id.clone()).target_user(&user.id),
                None => event,
            }
        };
        let reason = match user {
            None => "unknown_email",
            Some(_) if !password_matched => "wrong_password",
            Some(_) => "user_disabled",
        };
        let failed = attempt(AuditAction::LoginFailed)
            .outcome(AuditOutcome::Failure)
            .detail("reason", reason);
        let throttled = locked.name().map(|subject| {
            attempt(AuditAction::LoginThrottled)
                .outcome(AuditOutcome::Denied)
                .detail("locked", subject)
        });
        self.record(std::iter::once(failed).chain(throttled)).await;
    }

    /// Issues an access token directly (for applications with their own login).
    pub fn issue_token(
        &self,
        subject: &OwnerId,
        scopes: &Scopes,
    ) -> Result<AccessToken, AuthError> {
        self.inner
            .tokens
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoTokenAuthority))?
            .issue(subject, scopes)
            .map_err(|e| AuthError::Unavailable(Unavailable::Signing(e)))
    }
}
