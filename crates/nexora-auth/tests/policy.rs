//! The key-management policy against a model: random sequences of principals (user sessions,
//! and keys of random scopes, expiries and parents, each authenticated for real) and operations
//! (create, rotate, revoke with or without cascade, list, time passing).
//!
//! Invariants: no principal ever obtains a credential with a scope it lacks or a lifetime beyond
//! its own; no key outside its reach is listed, rotated or revoked; a cascade revokes exactly the
//! descendants; a key authenticates exactly while it is neither revoked nor expired.

use std::{sync::Arc, time::Duration};

use nexora_auth::{
    ApiKey, AuthError, Authenticator, Clock, Credential, InvalidReason, KeyId, MemoryKeyStore,
    MemoryUserStore, NewKey, OwnerId, Principal, RevokeOptions, RotateOptions, Scopes, UserRecord,
    UserStore,
};
use nexora_auth_testkit::{ManualClock, authenticator_builder};
use proptest::prelude::*;
use time::OffsetDateTime;

const SCOPE_NAMES: [&str; 3] = ["a", "b", "keys:manage"];
const OWNERS: [&str; 2] = ["alice", "bob"];

fn scopes(bits: u8) -> Scopes {
    Scopes::new(
        SCOPE_NAMES
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, s)| *s),
    )
    .unwrap()
}

fn bits(scopes: &Scopes) -> u8 {
    SCOPE_NAMES
        .iter()
        .enumerate()
        .filter(|(_, s)| scopes.contains(s))
        .fold(0, |acc, (i, _)| acc | (1 << i))
}

#[derive(Debug, Clone)]
enum Actor {
    /// The owner's session: all of the user's scopes, no lifetime of its own.
    Session { owner: usize },
    /// One of the model's keys, by index.
    Key(usize),
}

#[derive(Debug, Clone)]
enum Op {
    Create {
        by: Actor,
        scopes: Option<u8>,
        expires_in: Option<i64>,
    },
    Rotate {
        by: Actor,
        target: usize,
    },
    Revoke {
        by: Actor,
        target: usize,
        cascade: bool,
    },
    List {
        by: Actor,
    },
    Wait {
        secs: i64,
    },
    /// The admin sets both users' scopes.
    SetUserScopes {
        bits: u8,
    },
}

fn actor() -> impl Strategy<Value = Actor> {
    prop_oneof![
        (0..OWNERS.len()).prop_map(|owner| Actor::Session { owner }),
        any::<usize>().prop_map(Actor::Key),
        any::<usize>().prop_map(Actor::Key),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (actor(), proptest::option::of(0u8..8), proptest::option::of(prop_oneof![Just(10i64), Just(30), Just(90)]))
            .prop_map(|(by, scopes, expires_in)| Op::Create { by, scopes, expires_in }),
        2 => (actor(), any::<usize>()).prop_map(|(by, target)| Op::Rotate { by, target }),
        2 => (actor(), any::<usize>(), any::<bool>())
            .prop_map(|(by, target, cascade)| Op::Revoke { by, target, cascade }),
        2 => actor().prop_map(|by| Op::List { by }),
        1 => (5i64..40).prop_map(|secs| Op::Wait { secs }),
        1 => (0u8..8).prop_map(|bits| Op::SetUserScopes { bits }),
    ]
}

/// What the model knows of a key.
#[derive(Debug)]
struct ModelKey {
    id: KeyId,
    owner: usize,
    scopes: u8,
    expires_at: Option<i64>,
    created_by: Option<usize>,
    revoked: bool,
    text: ApiKey,
}

/// The model's principal: owner, scopes, lifetime cap, and the key behind it.
#[derive(Debug, Clone, Copy)]
struct Power {
    owner: usize,
    scopes: u8,
    cap: Option<i64>,
    key: Option<usize>,
}

struct World {
    auth: Authenticator,
    clock: Arc<ManualClock>,
    user_ids: Vec<OwnerId>,
    user_scopes: u8,
    keys: Vec<ModelKey>,
}

impl World {
    async fn new() -> Self {
        let clock = Arc::new(ManualClock::new(
            OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
        ));
        let users = Arc::new(MemoryUserStore::new());
        let user_scopes = 0b111;
        let mut user_ids = Vec::new();
        for owner in OWNERS {
            let id = OwnerId::new(owner);
            users
                .insert_user(&UserRecord {
                    id: id.clone(),
                    email: format!("{owner}@example.com"),
                    password_hash: String::new(),
                    scopes: scopes(user_scopes),
                    created_at: clock.now(),
                    disabled: false,
                    rate_limit: None,
                })
                .await
                .unwrap();
            user_ids.push(id);
        }
        let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
            .users(users)
            .clock(clock.clone())
            .build()
            .unwrap();
        Self {
            auth,
            clock,
            user_ids,
            user_scopes,
            keys: Vec::new(),
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    fn alive(&self, k: &ModelKey) -> bool {
        !k.revoked && k.expires_at.is_none_or(|at| at > self.now())
    }

    /// The real principal for `actor` (authenticating a key for real) and its model, or `None`
    /// when the actor is a key that no longer authenticates (checked against the model).
    async fn principal(&self, actor: &Actor) -> Result<Option<(Principal, Power)>, TestCaseError> {
        match *actor {
            Actor::Session { owner } => Ok(Some((
                Principal::new(
                    self.user_ids[owner].clone(),
                    Credential::Internal,
                    scopes(self.user_scopes),
                ),
                Power {
                    owner,
                    scopes: self.user_scopes,
                    cap: None,
                    key: None,
                },
            ))),
            Actor::Key(_) if self.keys.is_empty() => Ok(None),
            Actor::Key(i) => {
                let i = i % self.keys.len();
                let k = &self.keys[i];
                let result = self.auth.authenticate(k.text.expose()).await;
                prop_assert_eq!(
                    result.is_ok(),
                    self.alive(k),
                    "key {} authenticates iff alive",
                    i
                );
                let Ok(principal) = result else {
                    return Ok(None);
                };
                prop_assert_eq!(bits(principal.scopes()), k.scopes & self.user_scopes);
                prop_assert_eq!(principal.key_id(), Some(k.id));
                Ok(Some((
                    principal,
                    Power {
                        owner: k.owner,
                        scopes: k.scopes & self.user_scopes,
                        cap: k.expires_at,
                        key: Some(i),
                    },
                )))
            }
        }
    }

    /// The model's reach: same owner, not revoked, scopes within, lifetime within.
    /// The model's reach: same owner, not revoked, scopes within, lifetime within. A session
    /// judges a key by what it can do now (`lenient`, for list and revoke); rotation, and every
    /// key principal, by the scopes the key stores.
    fn within_reach(&self, power: &Power, k: &ModelKey, lenient: bool) -> bool {
        let lifetime_ok = match (k.expires_at, power.cap) {
            (_, None) => true,
            (None, Some(_)) => false,
            (Some(e), Some(c)) => e <= c,
        };
        let judged = if lenient && power.key.is_none() {
            k.scopes & self.user_scopes
        } else {
            k.scopes
        };
        k.owner == power.owner && !k.revoked && judged & !power.scopes == 0 && lifetime_ok
    }

    /// A credential the principal obtained: never broader or longer-lived than the principal.
    fn check_obtained(
        &self,
        power: &Power,
        scopes: u8,
        expires_at: Option<i64>,
    ) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            scopes & !power.scopes,
            0,
            "obtained a scope the principal lacks"
        );
        if let Some(cap) = power.cap {
            prop_assert!(
                expires_at.is_some_and(|e| e <= cap),
                "obtained a credential outliving the principal"
            );
        }
        Ok(())
    }

    fn descendants(&self, root: usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut frontier = vec![root];
        while let Some(parent) = frontier.pop() {
            for (i, k) in self.keys.iter().enumerate() {
                if k.created_by == Some(parent) && !out.contains(&i) {
                    out.push(i);
                    frontier.push(i);
                }
            }
        }
        out
    }

    async fn apply(&mut self, op: Op) -> Result<(), TestCaseError> {
        match op {
            Op::Wait { secs } => {
                self.clock.advance(time::Duration::seconds(secs));
            }
            Op::SetUserScopes { bits } => {
                for id in &self.user_ids {
                    let changed = self
                        .auth
                        .set_user_scopes(
                            id,
                            &scopes(bits),
                            &nexora_auth::audit::Actor::system("proptest"),
                        )
                        .await
                        .map_err(|e| TestCaseError::fail(format!("set scopes: {e:?}")))?;
                    prop_assert!(changed);
                }
                self.user_scopes = bits;
            }
            Op::Create {
                by,
                scopes: requested,
                expires_in,
            } => {
                let Some((principal, power)) = self.principal(&by).await? else {
                    return Ok(());
                };
                let mut request = NewKey::named("k");
                if let Some(bits) = requested {
                    request = request.with_scopes(scopes(bits));
                }
                if let Some(secs) = expires_in {
                    request =
                        request.expiring_at(self.clock.now() + Duration::from_secs(secs as u64));
                }
                let result = self.auth.create_key(&principal, request).await;
                if requested.is_some_and(|b| b & !power.scopes != 0) {
                    prop_assert!(
                        matches!(result, Err(AuthError::ScopeNotHeld)),
                        "{:?}",
                        result
                    );
                    return Ok(());
                }
                let created = result.map_err(|e| TestCaseError::fail(format!("create: {e:?}")))?;
                let got_scopes = bits(&created.info.scopes);
                let got_expiry = created.info.expires_at.map(|t| t.unix_timestamp());
                prop_assert_eq!(got_scopes, requested.unwrap_or(power.scopes));
                let wanted = expires_in.map(|s| self.now() + s);
                let expected_expiry = match (wanted, power.cap) {
                    (w, None) => w,
                    (None, Some(c)) => Some(c),
                    (Some(w), Some(c)) => Some(w.min(c)),
                };
                prop_assert_eq!(got_expiry, expected_expiry);
                prop_assert_eq!(created.info.created_by, power.key.map(|i| self.keys[i].id));
                self.check_obtained(&power, got_scopes, got_expiry)?;
                self.keys.push(ModelKey {
                    id: created.info.id,
                    owner: power.owner,
                    scopes: got_scopes,
                    expires_at: got_expiry,
                    created_by: power.key,
                    revoked: false,
                    text: created.key,
                });
            }
            Op::Rotate { by, target } => {
                if self.keys.is_empty() {
                    return Ok(());
                }
                let Some((principal, power)) = self.principal(&by).await? else {
                    return Ok(());
                };
                let t = target % self.keys.len();
                let result = self
                    .auth
                    .rotate_key(&principal, self.keys[t].id, RotateOptions::immediate())
                    .await;
                let k = &self.keys[t];
                if !self.within_reach(&power, k, false) {
                    prop_assert!(
                        matches!(result, Err(AuthError::KeyNotFound)),
                        "rotate out of reach: {:?}",
                        result
                    );
                } else if !self.alive(k) {
                    prop_assert!(
                        matches!(result, Err(AuthError::KeyExpired)),
                        "rotate expired: {:?}",
                        result
                    );
                } else {
                    let rotated =
                        result.map_err(|e| TestCaseError::fail(format!("rotate: {e:?}")))?;
                    self.check_obtained(
                        &power,
                        bits(&rotated.info.scopes),
                        rotated.info.expires_at.map(|t| t.unix_timestamp()),
                    )?;
                    let old = std::mem::replace(&mut self.keys[t].text, rotated.key);
                    prop_assert!(
                        matches!(
                            self.auth.authenticate(old.expose()).await,
                            Err(AuthError::InvalidToken(_))
                        ),
                        "the old secret died"
                    );
                }
            }
            Op::Revoke {
                by,
                target,
                cascade,
            } => {
                if self.keys.is_empty() {
                    return Ok(());
                }
                let Some((principal, power)) = self.principal(&by).await? else {
                    return Ok(());
                };
                let t = target % self.keys.len();
                let options = if cascade {
                    RevokeOptions::cascade()
                } else {
                    RevokeOptions::key_only()
                };
                let result = self
                    .auth
                    .revoke_key(&principal, self.keys[t].id, options)
                    .await;
                if !self.within_reach(&power, &self.keys[t], true) {
                    prop_assert!(
                        matches!(result, Err(AuthError::KeyNotFound)),
                        "revoke out of reach: {:?}",
                        result
                    );
                    return Ok(());
                }
                let revoked = result.map_err(|e| TestCaseError::fail(format!("revoke: {e:?}")))?;
                let mut expected = vec![self.keys[t].id];
                self.keys[t].revoked = true;
                if cascade {
                    for d in self.descendants(t) {
                        if !self.keys[d].revoked {
                            self.keys[d].revoked = true;
                            expected.push(self.keys[d].id);
                        }
                    }
                }
                let (mut got, mut want) = (revoked, expected);
                got.sort();
                want.sort();
                prop_assert_eq!(got, want, "revoked ids");
            }
            Op::List { by } => {
                let Some((principal, power)) = self.principal(&by).await? else {
                    return Ok(());
                };
                let mut listed: Vec<KeyId> = self
                    .auth
                    .list_keys(&principal)
                    .await
                    .map_err(|e| TestCaseError::fail(format!("list: {e:?}")))?
                    .iter()
                    .map(|k| k.id)
                    .collect();
                let mut reach: Vec<KeyId> = self
                    .keys
                    .iter()
                    .filter(|k| self.within_reach(&power, k, true))
                    .map(|k| k.id)
                    .collect();
                listed.sort();
                reach.sort();
                prop_assert_eq!(listed, reach, "list is exactly the keys within reach");
            }
        }
        // Every key authenticates exactly while it is alive.
        for (i, k) in self.keys.iter().enumerate() {
            let result = self.auth.authenticate(k.text.expose()).await;
            prop_assert_eq!(result.is_ok(), self.alive(k), "key {} alive", i);
            if let Err(e) = result {
                prop_assert!(
                    matches!(
                        e,
                        AuthError::InvalidToken(InvalidReason::Revoked | InvalidReason::Expired)
                    ),
                    "{:?}",
                    e
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn no_principal_escapes_the_policy(ops in proptest::collection::vec(op(), 1..48)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let mut world = World::new().await;
            for op in ops {
                world.apply(op).await?;
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}
