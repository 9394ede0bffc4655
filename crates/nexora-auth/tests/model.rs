//! A random sequence of create / rotate / revoke / authenticate agrees with a simple model.

use std::{collections::HashMap, sync::Arc};

use nexora_auth::{
    ApiKey, AuthError, Credential, KeyId, MemoryKeyStore, NewKey, OwnerId, Principal,
    RevokeOptions, RotateOptions, Scopes,
};
use nexora_auth_testkit::authenticator_builder;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Create { owner: u8 },
    Rotate { owner: u8, key: u8 },
    Revoke { owner: u8, key: u8 },
    AuthCurrent { key: u8 },
    AuthStale { key: u8 },
    List { owner: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0u8..3).prop_map(|owner| Op::Create { owner }),
        (0u8..3, any::<u8>()).prop_map(|(owner, key)| Op::Rotate { owner, key }),
        (0u8..3, any::<u8>()).prop_map(|(owner, key)| Op::Revoke { owner, key }),
        any::<u8>().prop_map(|key| Op::AuthCurrent { key }),
        any::<u8>().prop_map(|key| Op::AuthStale { key }),
        (0u8..3).prop_map(|owner| Op::List { owner }),
    ]
}

/// What the model knows of a key.
struct ModelKey {
    id: KeyId,
    owner: u8,
    current: ApiKey,
    stale: Vec<ApiKey>,
    revoked: bool,
}

fn owner_id(n: u8) -> OwnerId {
    OwnerId::new(format!("owner-{n}"))
}

/// The application acting for owner `n` (every key here has empty scopes and no expiry, so
/// all of the owner's live keys are within its reach).
fn acting(n: u8) -> Principal {
    Principal::new(owner_id(n), Credential::Internal, Scopes::empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn operations_agree_with_the_model(ops in proptest::collection::vec(op(), 1..40)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
                .build()
                .unwrap();
            let mut keys: Vec<ModelKey> = Vec::new();
            for op in ops {
                match op {
                    Op::Create { owner } => {
                        let p = Principal::new(owner_id(owner), Credential::Internal, Scopes::empty());
                        let created = auth.create_key(&p, NewKey::named("k")).await.unwrap();
                        keys.push(ModelKey { id: created.info.id, owner, current: created.key, stale: vec![], revoked: false });
                    }
                    Op::Rotate { owner, key } if !keys.is_empty() => {
                        let n = keys.len();
                        let k = &mut keys[usize::from(key) % n];
                        let result = auth.rotate_key(&acting(owner), k.id, RotateOptions::default()).await;
                        if k.owner == owner && !k.revoked {
                            let rotated = result.unwrap();
                            prop_assert_eq!(rotated.info.id, k.id);
                            let old = std::mem::replace(&mut k.current, rotated.key);
                            k.stale.push(old);
                        } else {
                            prop_assert!(matches!(result, Err(AuthError::KeyNotFound)));
                        }
                    }
                    Op::Revoke { owner, key } if !keys.is_empty() => {
                        let n = keys.len();
                        let k = &mut keys[usize::from(key) % n];
                        let result = auth.revoke_key(&acting(owner), k.id, RevokeOptions::default()).await;
                        if k.owner == owner && !k.revoked {
                            prop_assert!(result.is_ok());
                            k.revoked = true;
                        } else {
                            prop_assert!(matches!(result, Err(AuthError::KeyNotFound)));
                        }
                    }
                    Op::AuthCurrent { key } if !keys.is_empty() => {
                        let k = &keys[usize::from(key) % keys.len()];
                        let result = auth.authenticate(k.current.expose()).await;
                        prop_assert_eq!(result.is_ok(), !k.revoked);
                        if let Ok(p) = result {
                            prop_assert_eq!(p.owner(), &owner_id(k.owner));
                        }
                    }
                    Op::AuthStale { key } if !keys.is_empty() => {
                        let k = &keys[usize::from(key) % keys.len()];
                        for old in &k.stale {
                            prop_assert!(auth.authenticate(old.expose()).await.is_err());
                        }
                    }
                    Op::List { owner } => {
                        let listed: HashMap<KeyId, String> = auth
                            .list_keys(&acting(owner))
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|k| (k.id, k.display))
                            .collect();
                        let expected: Vec<&ModelKey> = keys.iter().filter(|k| k.owner == owner && !k.revoked).collect();
                        prop_assert_eq!(listed.len(), expected.len());
                        for k in expected {
                            prop_assert_eq!(listed.get(&k.id), Some(&k.current.display_fragment()));
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn any_single_character_change_fails_authenticate(pos in 4usize..64, c in "[0-9A-Za-z]") {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let auth = authenticator_builder(Arc::new(MemoryKeyStore::new()))
                .build()
                .unwrap();
            let p = Principal::new(owner_id(0), Credential::Internal, Scopes::empty());
            let created = auth.create_key(&p, NewKey::named("k")).await.unwrap();
            let mut text = created.key.expose().as_bytes().to_vec();
            prop_assume!(text[pos] != c.as_bytes()[0]);
            text[pos] = c.as_bytes()[0];
            prop_assert!(auth.authenticate(std::str::from_utf8(&text).unwrap()).await.is_err());
            Ok(())
        })?;
    }
}
