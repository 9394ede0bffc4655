//! The properties the fuzz targets assert. Shared verbatim by the cargo-fuzz targets (nightly)
//! and by `crates/nexora-auth-http-tests/tests/fuzz_corpus.rs`, which replays the committed corpora on
//! stable so CI catches regressions without nightly.

use std::sync::{Arc, OnceLock};

use nexora_auth::{
    ApiKey, Authenticator, Credential, JwtConfig, JwtKeys, MemoryKeyStore, NewKey, OwnerId,
    PasswordPolicy, PepperRing, Principal, Scopes, SecretBytes, TokenAuthority,
};
use nexora_auth_http::{QueryToken, extract_credential};

/// The credential cap the parser is given (the default JWT size cap).
const MAX_CREDENTIAL_LEN: usize = 8 * 1024;

/// `parse` is total; what parses re-formats to exactly the input; and the id survives a
/// generate → format → parse round trip for ids taken from the input.
pub fn key_parse(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(key) = ApiKey::parse(text)
    {
        assert_eq!(key.expose(), text, "parse must not normalise");
        assert_eq!(text.len(), nexora_auth::KEY_LEN);
    }
    if data.len() >= 16 {
        let mut id = [0u8; 16];
        id.copy_from_slice(&data[..16]);
        let id = nexora_auth::KeyId::from_bytes(id);
        let key = ApiKey::generate_for(id).expect("OS randomness");
        let parsed = ApiKey::parse(key.expose()).expect("generated keys parse");
        assert_eq!(parsed.id(), id);
        assert!(parsed == key);
    }
}

struct World {
    rt: tokio::runtime::Runtime,
    auth: Authenticator,
    key: String,
    jwt: String,
}

const JWT_SECRET: &[u8] = b"fuzz-jwt-secret-fuzz-jwt-secret-0123456789";

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let tokens = TokenAuthority::new(
            JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("secret"),
            JwtConfig::new("nexora", "nexora-api"),
        )
        .expect("authority");
        let auth = Authenticator::builder(
            Arc::new(MemoryKeyStore::new()),
            PepperRing::new(1, SecretBytes::new(vec![42; 32])).expect("pepper"),
        )
        .tokens(tokens)
        .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1))
        .build()
        .expect("authenticator");
        let owner = Principal::new(
            OwnerId::new("fuzz-user"),
            Credential::Internal,
            Scopes::empty(),
        );
        let key = rt
            .block_on(auth.create_key(&owner, NewKey::named("fuzz")))
            .expect("create")
            .key
            .expose()
            .to_owned();
        let jwt = auth
            .issue_token(&OwnerId::new("fuzz-user"), &Scopes::empty())
            .expect("issue")
            .token
            .expose()
            .to_owned();
        World { rt, auth, key, jwt }
    })
}

/// Only the one real key and the one real JWT authenticate; everything else is refused
/// without a panic.
pub fn authenticate(data: &[u8]) {
    let w = world();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Also try the input spliced onto the real credentials, to reach deep paths.
    for token in [
        text.to_owned(),
        format!("{}{}", &w.key[..w.key.len().min(text.len())], text),
        format!("{}{text}", w.jwt),
    ] {
        let result = w.rt.block_on(w.auth.authenticate(&token));
        if let Ok(principal) = result {
            assert!(
                token == w.key || token == w.jwt || jwt_equivalent(&token, &w.jwt),
                "accepted a forged credential"
            );
            assert_eq!(principal.owner().as_str(), "fuzz-user");
        }
    }
}

/// Base64url allows non-canonical trailing bits in the last character; such a variant of the
/// real JWT carries the same bytes and the same signature, so accepting it is not a forgery.
fn jwt_equivalent(candidate: &str, real: &str) -> bool {
    candidate.len() == real.len()
        && candidate.split('.').count() == 3
        && {
            let (c, r) = (candidate.rsplit_once('.'), real.rsplit_once('.'));
            matches!((c, r), (Some((cm, cs)), Some((rm, rs))) if cm == rm && cs.len() == rs.len() && cs[..cs.len() - 1] == rs[..rs.len() - 1])
        }
}

/// `verify` never panics, and accepts only tokens that say what the real one says.
pub fn jwt_verify(data: &[u8]) {
    let w = world();
    let Some(tokens) = w.auth.tokens() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for token in [
        text.to_owned(),
        format!("{}{text}", w.jwt),
        w.jwt.replacen('.', &format!(".{text}"), 1),
    ] {
        if let Ok(verified) = tokens.verify(&token) {
            assert_eq!(
                verified.subject.as_str(),
                "fuzz-user",
                "accepted a forged subject"
            );
            assert!(
                token == w.jwt || jwt_equivalent(&token, &w.jwt),
                "accepted a modified token"
            );
        }
    }
}

/// The request-credential parser is total on arbitrary header bytes and query strings, and
/// whatever it returns is non-empty, bounded, and present in the input.
pub fn credentials(data: &[u8]) {
    // Layout: [n_headers % 3] then segments split by 0xFF: headers..., query.
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.split(|&b| b == 0xFF);
    let headers: Vec<&[u8]> = (0..count % 3).filter_map(|_| parts.next()).collect();
    let query = parts.next().and_then(|q| std::str::from_utf8(q).ok());
    for policy in [QueryToken::Ignore, QueryToken::Accept] {
        match extract_credential(headers.iter().copied(), query, policy, MAX_CREDENTIAL_LEN) {
            Ok(token) => {
                assert!(!token.is_empty());
                assert!(token.len() <= MAX_CREDENTIAL_LEN);
                let in_header = headers
                    .iter()
                    .any(|h| h.windows(token.len()).any(|w| w == token.as_bytes()));
                assert!(
                    in_header || policy == QueryToken::Accept,
                    "query token used where not accepted"
                );
            }
            Err(e) => assert!(
                e.status() == 401,
                "credential errors are 401, got {}",
                e.status()
            ),
        }
    }
}

/// Arbitrary sequences of key operations against the in-memory store agree with a model:
/// each 3-byte chunk is (operation, owner, key index).
pub fn store_ops(data: &[u8]) {
    use nexora_auth::{AuthError, KeyId, RevokeOptions, RotateOptions};

    struct Model {
        id: KeyId,
        owner: u8,
        current: ApiKey,
        old: Vec<ApiKey>,
        revoked: bool,
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth = Authenticator::builder(
        Arc::new(MemoryKeyStore::new()),
        PepperRing::new(1, SecretBytes::new(vec![9; 32])).expect("pepper"),
    )
    .password_policy(PasswordPolicy::default().argon2_params(256, 1, 1))
    .build()
    .expect("authenticator");
    let owner = |n: u8| OwnerId::new(format!("o{}", n % 3));
    let acting = |n: u8| Principal::new(owner(n), Credential::Internal, Scopes::empty());
    let mut keys: Vec<Model> = Vec::new();
    rt.block_on(async {
        for chunk in data.chunks_exact(3).take(64) {
            let (op, who, which) = (chunk[0] % 6, chunk[1] % 3, usize::from(chunk[2]));
            let n = keys.len();
            match op {
                0 => {
                    let p = Principal::new(owner(who), Credential::Internal, Scopes::empty());
                    let created = auth
                        .create_key(&p, NewKey::named(format!("k{n}")))
                        .await
                        .expect("create");
                    keys.push(Model {
                        id: created.info.id,
                        owner: who,
                        current: created.key,
                        old: vec![],
                        revoked: false,
                    });
                }
                1 if n > 0 => {
                    let k = &mut keys[which % n];
                    let result = auth
                        .rotate_key(&acting(who), k.id, RotateOptions::default())
                        .await;
                    if k.owner == who && !k.revoked {
                        let rotated = result.expect("rotate own live key");
                        assert_eq!(rotated.info.id, k.id);
                        let previous = std::mem::replace(&mut k.current, rotated.key);
                        k.old.push(previous);
                    } else {
                        assert!(
                            matches!(result, Err(AuthError::KeyNotFound)),
                            "rotate of foreign/revoked key"
                        );
                    }
                }
                2 if n > 0 => {
                    let k = &mut keys[which % n];
                    let result = auth
                        .revoke_key(&acting(who), k.id, RevokeOptions::default())
                        .await;
                    if k.owner == who && !k.revoked {
                        assert!(result.is_ok());
                        k.revoked = true;
                    } else {
                        assert!(
                            matches!(result, Err(AuthError::KeyNotFound)),
                            "revoke of a foreign or revoked key"
                        );
                    }
                }
                3 if n > 0 => {
                    let k = &keys[which % n];
                    let result = auth.authenticate(k.current.expose()).await;
                    assert_eq!(
                        result.is_ok(),
                        !k.revoked,
                        "current key works iff not revoked"
                    );
                    for old in &k.old {
                        assert!(
                            auth.authenticate(old.expose()).await.is_err(),
                            "rotated-out key works"
                        );
                    }
                }
                4 => {
                    let listed = auth.list_keys(&acting(who)).await.expect("list");
                    let expected: Vec<KeyId> = keys
                        .iter()
                        .filter(|k| k.owner == who && !k.revoked)
                        .map(|k| k.id)
                        .collect();
                    let mut got: Vec<KeyId> = listed.iter().map(|k| k.id).collect();
                    let mut want = expected.clone();
                    got.sort();
                    want.sort();
                    assert_eq!(got, want, "list matches the model");
                }
                _ => {
                    auth.flush_last_used().await.expect("flush");
                }
            }
        }
    });
}
