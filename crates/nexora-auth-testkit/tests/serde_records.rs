//! With `nexora-auth`'s `serde` feature, every record a store persists round-trips through a
//! document format exactly, and a malformed digest is refused.

use nexora_auth::{
    OwnerId, UserRecord,
    limits::{Credits, RateLimit, Refill},
    store::{KeyRecord, PreviousDigest},
};
use nexora_auth_testkit::{new_record, now, scopes};

fn round_trip<T>(value: &T) -> T
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let json = serde_json::to_string(value).expect("serialize");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("deserialize {json}: {e}"))
}

#[test]
fn key_records_round_trip_every_field() {
    let t0 = now()
        .replace_microsecond(123_457)
        .expect("valid microsecond");
    let (_, plain) = new_record("alice", "plain", t0);
    assert_eq!(round_trip(&plain), plain, "a record with no optional field");

    let (_, old) = new_record("alice", "old", t0);
    let (_, parent) = new_record("alice", "parent", t0);
    let full = KeyRecord {
        last_used_at: Some(t0 + time::Duration::SECOND),
        expires_at: Some(t0 + time::Duration::HOUR),
        revoked_at: Some(t0 + time::Duration::MINUTE),
        previous: Some(PreviousDigest {
            digest: old.digest,
            valid_until: t0 + time::Duration::MINUTE,
        }),
        created_by: Some(parent.id),
        rate_limit: RateLimit::new(100, 60),
        credits: Some(Credits {
            remaining: 42,
            refill: Refill::new(1_000, 3_600),
            refilled_at: t0 - time::Duration::MINUTE,
        }),
        scopes: scopes(&["agents:read", "it's;--"]),
        name: "Ünïcödé \"quoted\" 🔑".to_owned(),
        ..plain
    };
    assert_eq!(round_trip(&full), full, "a record with every field set");
}

#[test]
fn user_records_round_trip() {
    let user = UserRecord {
        id: OwnerId::new("u-alice"),
        email: "alice@example.com".into(),
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaA".into(),
        scopes: scopes(&["a", "b"]),
        created_at: now(),
        disabled: true,
        rate_limit: None,
    };
    assert_eq!(round_trip(&user), user);
}

#[test]
fn a_malformed_digest_is_refused() {
    let (_, record) = new_record("alice", "k", now());
    let json = serde_json::to_value(&record).expect("serialize");
    let digest = json["digest"]["digest"]
        .as_str()
        .expect("a base64 string")
        .to_owned();
    for bad in [&digest[..digest.len() - 1], "not base64!", ""] {
        let mut broken = json.clone();
        broken["digest"]["digest"] = serde_json::Value::from(bad);
        assert!(
            serde_json::from_value::<KeyRecord>(broken).is_err(),
            "digest {bad:?} accepted"
        );
    }
}
