//! Users: registration, lookup and the admin operations on a [`UserStore`].

use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;

use super::Authenticator;
use crate::Unavailable;
use crate::{
    AuthError, Field, InvalidInput, NewAuditEvent, Problem, Scopes, SecretString,
    audit::{Actor, AuditAction},
    store::{OwnerId, StoreError, UserRecord, UserStore},
};

/// Longest email accepted, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// The public view of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct UserInfo {
    /// The user id (the JWT `sub`).
    pub id: OwnerId,
    /// The normalised email.
    pub email: String,
    /// The user's scopes.
    pub scopes: Scopes,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Whether the user is disabled (no login; no token or key of theirs authenticates).
    pub disabled: bool,
}

impl From<&UserRecord> for UserInfo {
    fn from(u: &UserRecord) -> Self {
        Self {
            id: u.id.clone(),
            email: u.email.clone(),
            scopes: u.scopes.clone(),
            created_at: u.created_at,
            disabled: u.disabled,
        }
    }
}

/// Normalises an email for storage and lookup: trimmed and lower-cased, so that
/// `Alice@Example.com` and `alice@example.com ` are one account.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Refuses, at login, an email that no account can have because registration and every store
/// refuse it: longer than [`MAX_EMAIL_LEN`] bytes, or holding a control character (NUL among
/// them, which Postgres cannot store at all). [`AuthError::InvalidInput`] naming the field
/// rather than the ordinary [`AuthError::InvalidLogin`]: the request is malformed rather than a
/// wrong credential, the rule is public (RFC 5321
/// and [`MAX_EMAIL_LEN`]), and it reveals nothing about any account — no account can match.
/// Answered before the throttle and the store are touched, so these requests cost neither
/// memory nor a lookup; they cost no argon2 run either, which is safe for the same reason.
/// Login applies no other format rule: an account created under older rules or by another
/// system can still sign in.
pub(super) fn check_login_email(email: &str) -> Result<(), InvalidInput> {
    let invalid = |problem| InvalidInput::new(Field::Email, problem);
    if email.len() > MAX_EMAIL_LEN {
        return Err(invalid(Problem::TooLong { max: MAX_EMAIL_LEN }));
    }
    if email.chars().any(char::is_control) {
        return Err(invalid(Problem::ControlCharacter));
    }
    Ok(())
}

fn validate_email(email: &str) -> Result<(), InvalidInput> {
    check_login_email(email)?;
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace) =>
        {
            Ok(())
        }
        _ => Err(InvalidInput::new(Field::Email, Problem::NotAnEmail)),
    }
}

impl Authenticator {
    pub(super) fn users(&self) -> Result<&Arc<dyn UserStore>, AuthError> {
        self.inner
            .users
            .as_ref()
            .ok_or(AuthError::Unavailable(Unavailable::NoUserStore))
    }

    /// Registers a password user with `scopes`.
    pub async fn register_user(
        &self,
        email: &str,
        password: &SecretString,
        scopes: Scopes,
    ) -> Result<UserInfo, AuthError> {
        let users = self.users()?;
        let email = normalize_email(email);
        validate_email(&email)?;
        let password_hash = self.inner.passwords.hash(password).await?;
        let user = UserRecord {
            id: OwnerId::new(uuid::Uuid::new_v4().to_string()),
            email,
            password_hash,
            scopes,
            created_at: self.inner.clock.now(),
            disabled: false,
            rate_limit: None,
        };
        match users.insert_user(&user).await {
            Ok(()) => {
                // A cached "no such user" for this id is now wrong.
                self.inner.cache.forget_user(&user.id);
                Ok(UserInfo::from(&user))
            }
            Err(StoreError::DuplicateEmail) => Err(AuthError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// A user by id.
    pub async fn user(&self, id: &OwnerId) -> Result<Option<UserInfo>, AuthError> {
        Ok(self
            .users()?
            .find_user(id)
            .await?
            .as_ref()
            .map(UserInfo::from))
    }

    /// All users, oldest first.
    pub async fn list_users(&self) -> Result<Vec<UserInfo>, AuthError> {
        Ok(self
            .users()?
            .list_users()
            .await?
            .iter()
            .map(UserInfo::from)
            .collect())
    }

    /// Disables a user: no login, and none of their tokens or keys authenticate until
    /// [`Authenticator::enable_user`]. Keys are kept, not revoked. `Ok(false)`: no such user.
    /// `by` is who does it (an admin tool: `Actor::system("cli")`); audited as
    /// `user_disabled`.
    pub async fn disable_user(&self, id: &OwnerId, by: &Actor) -> Result<bool, AuthError> {
        let changed = self.users()?.set_user_disabled(id, true).await?;
        self.user_changed(changed, user_event(AuditAction::UserDisabled, id, by))
            .await
    }

    /// Enables a disabled user: their unexpired tokens and unrevoked keys work again.
    /// `Ok(false)`: no such user. Audited as `user_enabled`, done `by`.
    pub async fn enable_user(&self, id: &OwnerId, by: &Actor) -> Result<bool, AuthError> {
        let changed = self.users()?.set_user_disabled(id, false).await?;
        self.user_changed(changed, user_event(AuditAction::UserEnabled, id, by))
            .await
    }

    /// Replaces a user's scopes. Every token and key of the user is capped at them from the
    /// next request on. `Ok(false)`: no such user. Audited as `user_scopes_changed` (with the
    /// new `scopes`), done `by`.
    pub async fn set_user_scopes(
        &self,
        id: &OwnerId,
        scopes: &Scopes,
        by: &Actor,
    ) -> Result<bool, AuthError> {
        let changed = self.users()?.set_user_scopes(id, scopes).await?;
        let scopes = scopes.iter().collect::<Vec<_>>().join(" ");
        self.user_changed(
            changed,
            user_event(AuditAction::UserScopesChanged, id, by).detail("scopes", scopes),
        )
        .await
    }

    /// Deletes a user: their tokens and keys stop authenticating from the next request on (keys stay in
    /// the key store, unusable). `Ok(false)`: no such user. Audited as `user_deleted`, done
    /// `by` (the user's trail outlives them, until pruned).
    pub async fn delete_user(&self, id: &OwnerId, by: &Actor) -> Result<bool, AuthError> {
        let changed = self.users()?.delete_user(id).await?;
        self.user_changed(changed, user_event(AuditAction::UserDeleted, id, by))
            .await
    }

    /// Records `event` when the store changed a user (`changed`), and answers `changed`.
    async fn user_changed(&self, changed: bool, event: NewAuditEvent) -> Result<bool, AuthError> {
        if changed {
            self.record_event(event).await;
        }
        Ok(changed)
    }
}

/// `by` did `action` to the user `id`: an event of the user's trail.
fn user_event(action: AuditAction, id: &OwnerId, by: &Actor) -> NewAuditEvent {
    NewAuditEvent::new(action, by.clone())
        .owner(id.clone())
        .target_user(id)
}
