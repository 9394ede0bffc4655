//! Leaked keys: `Authenticator::revoke_leaked` (secret scanning) and
//! `Authenticator::revoke_by_possession`, over the in-memory stores.

use std::{net::IpAddr, sync::Arc, time::Duration};

use nexora_auth::{
    AuthError, Authenticator, Clock, KeyParseError, LeakOutcome, LeakPolicy, LeakReport,
    MemoryAuditStore, MemoryKeyStore, NewKey, NotLive, OwnerId, PossessionLimit, RevokeOptions,
    RotateOptions,
    audit::{Actor, AuditAction, AuditEvent, AuditQuery, AuditStore, DetailValue},
};
use nexora_auth_testkit::{
    ManualClock, acting_as, authenticator_builder,
    failure::{FlakyStore, StoreMethod},
    scopes,
};

struct Fixture {
    auth: Authenticator,
    store: Arc<FlakyStore<MemoryKeyStore>>,
    clock: Arc<ManualClock>,
    trail: Arc<MemoryAuditStore>,
}

impl Fixture {
    /// `text` reported by the test scanner under `policy`.
    async fn scanner_reports(&self, text: &str, policy: LeakPolicy) -> LeakOutcome {
        self.auth
            .revoke_leaked(text, &report(), policy)
            .await
            .expect("the store is up")
    }

    /// A key of Alice's, revoked by her: its text.
    async fn revoked_key(&self) -> String {
        let (text, id) = live_key(&self.auth, "revoked").await;
        self.auth
            .revoke_key(&acting_as(&alice()), id, RevokeOptions::key_only())
            .await
            .expect("revoke");
        text
    }

    /// The leak events of Alice's trail, oldest first.
    async fn leak_events(&self) -> Vec<AuditEvent> {
        let mut events = self
            .trail
            .list(&AuditQuery::for_owner(alice(), 1_000))
            .await
            .expect("the memory trail answers");
        events.retain(|e| {
            matches!(
                e.action,
                AuditAction::KeyRevokedBySecretScanning
                    | AuditAction::KeyLeakReported
                    | AuditAction::KeyRevokedByPossession
                    | AuditAction::KeyRevokedByCascade
            )
        });
        events.reverse();
        events
    }
}

fn fixture() -> Fixture {
    fixture_with(PossessionLimit::default())
}

fn fixture_with(limit: PossessionLimit) -> Fixture {
    let store = Arc::new(FlakyStore::new(MemoryKeyStore::new()));
    let clock = Arc::new(ManualClock::starting_now());
    let trail = Arc::new(MemoryAuditStore::new());
    let auth = authenticator_builder(store.clone())
        .clock(clock.clone())
        .possession_limit(limit)
        .audit(trail.clone())
        .build()
        .expect("a valid authenticator");
    Fixture {
        auth,
        store,
        clock,
        trail,
    }
}

fn alice() -> OwnerId {
    OwnerId::new("alice")
}

/// A key of Alice's with `keys:manage`, as text, and its id.
async fn live_key(auth: &Authenticator, name: &str) -> (String, nexora_auth::KeyId) {
    let created = auth
        .create_key_for(
            &alice(),
            &scopes(&["keys:manage", "agents:read"]),
            NewKey::named(name),
        )
        .await
        .expect("create key");
    (created.key.expose().to_owned(), created.info.id)
}

fn report() -> LeakReport {
    LeakReport::new(
        "a-scanner",
        "https://github.com/octo/repo/blob/main/.env",
        "content",
    )
    .from_client(Some([192, 0, 2, 30].into()))
}

fn flip_last(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let last = bytes.len() - 1;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).expect("ASCII")
}

#[tokio::test]
async fn a_reported_live_key_is_revoked_with_every_key_it_created() {
    let f = fixture();
    let (parent, parent_id) = live_key(&f.auth, "parent").await;
    let as_parent = f.auth.authenticate(&parent).await.expect("live");
    let child = f
        .auth
        .create_key(&as_parent, NewKey::named("child"))
        .await
        .expect("a key creates a key");
    let (other, _) = live_key(&f.auth, "unrelated").await;

    let outcome = f.scanner_reports(&parent, LeakPolicy::Revoke).await;
    assert_eq!(
        outcome,
        LeakOutcome::Revoked {
            key: parent_id,
            owner: alice(),
            descendants: vec![child.info.id],
        }
    );
    assert!(outcome.was_live());
    assert!(f.auth.authenticate(&parent).await.is_err());
    assert!(f.auth.authenticate(child.key.expose()).await.is_err());
    assert!(
        f.auth.authenticate(&other).await.is_ok(),
        "others keep working"
    );

    // One event per key revoked, by the scanner, from the report's client, never the key.
    let events = f.leak_events().await;
    assert_eq!(events.len(), 2, "{events:#?}");
    let (root, cascade) = (&events[0], &events[1]);
    assert_eq!(root.action, AuditAction::KeyRevokedBySecretScanning);
    assert_eq!(root.actor, Actor::system("a-scanner"));
    assert_eq!(root.target, Some(parent_id.to_string()));
    assert_eq!(root.client, Some([192, 0, 2, 30].into()));
    assert_eq!(
        root.detail.get("url"),
        Some(&DetailValue::Text(
            "https://github.com/octo/repo/blob/main/.env".into()
        ))
    );
    assert_eq!(
        root.detail.get("source"),
        Some(&DetailValue::Text("content".into()))
    );
    assert_eq!(root.detail.get("cascaded"), Some(&DetailValue::Count(1)));
    assert_eq!(cascade.action, AuditAction::KeyRevokedByCascade);
    assert_eq!(cascade.target, Some(child.info.id.to_string()));
    assert_eq!(
        cascade.detail.get("cascade_root"),
        Some(&DetailValue::Text(parent_id.to_string()))
    );
    for event in &events {
        assert!(
            !event.to_json().contains(&parent[4..]),
            "a key in the trail"
        );
    }

    // Reported again (a retried batch): nothing left to do.
    let again = f.scanner_reports(&parent, LeakPolicy::Revoke).await;
    assert_eq!(again, LeakOutcome::NotLive(NotLive::Revoked));
    assert!(!again.was_live());
    assert_eq!(
        f.leak_events().await.len(),
        2,
        "nothing changed, nothing recorded"
    );
}

#[tokio::test]
async fn notify_only_leaves_the_key_working() {
    let f = fixture();
    let (key, id) = live_key(&f.auth, "ci").await;
    let outcome = f.scanner_reports(&key, LeakPolicy::NotifyOnly).await;
    assert_eq!(
        outcome,
        LeakOutcome::Reported {
            key: id,
            owner: alice()
        }
    );
    assert!(outcome.was_live());
    assert!(f.auth.authenticate(&key).await.is_ok());
    assert_eq!(f.store.calls().of(StoreMethod::RevokeTree), 0);
    let events = f.leak_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].action, AuditAction::KeyLeakReported);
    assert_eq!(events[0].target, Some(id.to_string()));
    assert_eq!(events[0].actor, Actor::system("a-scanner"));
}

#[tokio::test]
async fn what_is_not_a_live_key_changes_nothing() {
    let f = fixture();
    let (live, _) = live_key(&f.auth, "live").await;
    let revoked = f.revoked_key().await;
    let expiring = f
        .auth
        .create_key_for(
            &alice(),
            &scopes(&["agents:read"]),
            NewKey::named("expiring").expiring_at(f.clock.now() + Duration::from_secs(60)),
        )
        .await
        .expect("create");
    let (rotated_out, rotated_id) = live_key(&f.auth, "rotated").await;
    f.auth
        .rotate_key(&acting_as(&alice()), rotated_id, RotateOptions::immediate())
        .await
        .expect("rotate");
    f.clock.advance(time::Duration::minutes(2));
    let unknown = nexora_auth::ApiKey::generate().expect("OS randomness");

    let cases = [
        (
            flip_last(&live),
            NotLive::Malformed(KeyParseError::BadChecksum),
        ),
        (
            "nxr_short".to_owned(),
            NotLive::Malformed(KeyParseError::WrongLength),
        ),
        (
            "ghp_notours".to_owned(),
            NotLive::Malformed(KeyParseError::WrongPrefix),
        ),
        (unknown.expose().to_owned(), NotLive::Unknown),
        (rotated_out, NotLive::Unknown),
        (revoked, NotLive::Revoked),
        (expiring.key.expose().to_owned(), NotLive::Expired),
    ];
    for (text, want) in cases {
        let before = f.store.calls().of(StoreMethod::RevokeTree);
        let outcome = f.scanner_reports(&text, LeakPolicy::Revoke).await;
        assert_eq!(outcome, LeakOutcome::NotLive(want), "{want:?}");
        assert_eq!(
            f.store.calls().of(StoreMethod::RevokeTree),
            before,
            "{want:?}: no write"
        );
    }
    assert!(f.auth.authenticate(&live).await.is_ok());
    assert_eq!(
        f.leak_events().await,
        vec![],
        "nothing changed, nothing recorded"
    );
}

#[tokio::test]
async fn the_old_secret_in_its_grace_period_is_live() {
    let f = fixture();
    let (old, id) = live_key(&f.auth, "rotating").await;
    let rotated = f
        .auth
        .rotate_key(
            &acting_as(&alice()),
            id,
            RotateOptions::with_grace(Duration::from_secs(3600)),
        )
        .await
        .expect("rotate");
    let outcome = f
        .auth
        .revoke_by_possession(&old, None)
        .await
        .expect("the store is up");
    assert!(outcome.was_live(), "{outcome:?}");
    assert!(f.auth.authenticate(rotated.key.expose()).await.is_err());
}

/// Every well-formed key costs one store read, whatever its state; a malformed one none.
#[tokio::test]
async fn possession_reads_the_store_once_for_every_well_formed_key() {
    let f = fixture_with(PossessionLimit::default().per_client(100));
    let (live, _) = live_key(&f.auth, "live").await;
    let revoked = f.revoked_key().await;
    let unknown = nexora_auth::ApiKey::generate().expect("OS randomness");
    for (text, reads) in [
        (unknown.expose().to_owned(), 1),
        (revoked.clone(), 1),
        (live.clone(), 1),
        (flip_last(&live), 0),
        ("not a key at all".to_owned(), 0),
    ] {
        let before = f.store.calls().of(StoreMethod::FindCredentials);
        f.auth
            .revoke_by_possession(&text, None)
            .await
            .expect("the store is up");
        assert_eq!(
            f.store.calls().of(StoreMethod::FindCredentials) - before,
            reads,
            "{text:?}"
        );
    }
    assert!(f.auth.authenticate(&live).await.is_err(), "revoked");
}

#[tokio::test]
async fn possession_is_limited_per_client() {
    let f = fixture_with(PossessionLimit::default().per_client(2));
    let here: IpAddr = "198.51.100.7".parse().expect("an address");
    let there: IpAddr = "198.51.100.8".parse().expect("an address");
    let (key, _) = live_key(&f.auth, "target").await;
    for _ in 0..2 {
        f.auth
            .revoke_by_possession("nxr_junk", Some(here))
            .await
            .expect("within the limit");
    }
    let reads = f.store.calls().of(StoreMethod::FindCredentials);
    match f.auth.revoke_by_possession(&key, Some(here)).await {
        Err(AuthError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
        other => panic!("want 429, got {other:?}"),
    }
    assert_eq!(
        f.store.calls().of(StoreMethod::FindCredentials),
        reads,
        "refused before any read"
    );
    assert!(f.auth.authenticate(&key).await.is_ok(), "not revoked");
    assert!(
        f.auth
            .revoke_by_possession(&key, Some(there))
            .await
            .expect("another client")
            .was_live()
    );
    let events = f.leak_events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].action, AuditAction::KeyRevokedByPossession);
    assert_eq!(events[0].actor, Actor::system("revoke-by-possession"));
    assert_eq!(events[0].client, Some(there));
    f.clock.advance(time::Duration::minutes(1));
    assert!(f.auth.revoke_by_possession("x", Some(here)).await.is_ok());
}

#[tokio::test]
async fn a_store_outage_is_an_error_not_an_outcome() {
    let f = fixture();
    let (key, _) = live_key(&f.auth, "live").await;
    f.store.set_failing(true);
    assert!(matches!(
        f.auth
            .revoke_leaked(&key, &report(), LeakPolicy::Revoke)
            .await,
        Err(AuthError::StoreUnavailable(_))
    ));
    f.store.set_failing(false);
    assert!(f.auth.authenticate(&key).await.is_ok());
}
