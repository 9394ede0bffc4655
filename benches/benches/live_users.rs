//! The cost of the live-user rule: with a `UserStore` configured, `Authenticator::authenticate`
//! checks the user on every request (the JWT's `sub`, the key's owner) — from the verification
//! cache, on by default, so a hot user costs a cache hit rather than a query. Each store is measured
//! twice in the same run, over the same data: an `Authenticator` without `.users(…)` (the
//! baseline) and one with it, authenticating the same valid JWT and the same valid API key.
//!
//! Criterion measures each case; then an interleaved pass (JWT and key, without and with users)
//! prints the medians and the with ÷ without ratios, so that drift of the machine affects both
//! sides alike. The JWT authority runs with its defaults (verified-token cache on), as the server
//! does, so the JWT baseline is a cache hit and the ratio shows the lookup itself.
//!
//! `cargo bench -p nexora-auth-benches --bench live_users -- --warm-up-time 1 --measurement-time 3`
//! (Postgres from `NEXORA_TEST_POSTGRES_URL`, in a throwaway schema; skipped when unreachable.)
//!
//! Instruction counts: the same binary, given `count <memory|sqlite> <jwt|key> <with|without> <N>`
//! instead of criterion's arguments, builds the store and authenticates `N` times, for
//! `valgrind --tool=callgrind`; `benches/callgrind_live_users.sh` runs it at two values of `N`
//! and prints the instructions per authenticate (the difference, so setup cancels out).

use std::{hint::black_box, io::Write, sync::Arc, time::Instant};

use criterion::{Criterion, criterion_group};
use nexora_auth::{
    Authenticator, JwtConfig, JwtKeys, KeyStore, MemoryKeyStore, MemoryUserStore, NewKey, OwnerId,
    SecretBytes, TokenAuthority, UserRecord, UserStore,
};
use nexora_auth_postgres::PostgresStore;
use nexora_auth_sqlite::SqliteStore;
use nexora_auth_testkit::{authenticator_builder, now, postgres::TestSchema, scopes};
use tokio::runtime::Runtime;

const JWT_SECRET: &[u8] = b"benchmark-jwt-secret-benchmark-jwt-secret";
/// Users and keys besides the measured ones, so no lookup is into a one-row table.
const NEIGHBOURS: usize = 1_000;

/// One store's four cases, as closures returning nothing (results are checked once up front,
/// then black-boxed).
struct Cases {
    name: &'static str,
    jwt_without: Box<dyn Fn()>,
    jwt_with: Box<dyn Fn()>,
    key_without: Box<dyn Fn()>,
    key_with: Box<dyn Fn()>,
}

/// An authenticator over `keys` (and `users`, if given) with an HS256 authority under the
/// defaults the server uses.
fn authenticator(keys: Arc<dyn KeyStore>, users: Option<Arc<dyn UserStore>>) -> Authenticator {
    let tokens = TokenAuthority::new(
        JwtKeys::hs256(&SecretBytes::new(JWT_SECRET.to_vec())).expect("valid secret"),
        JwtConfig::new("nexora", "nexora-api"),
    )
    .expect("valid JWT config");
    let mut builder = authenticator_builder(keys).tokens(tokens);
    if let Some(users) = users {
        builder = builder.users(users);
    }
    builder.build().expect("valid authenticator")
}

fn user(id: &str, scope_list: &[&str]) -> UserRecord {
    UserRecord {
        id: OwnerId::new(id),
        email: format!("{id}@bench.test"),
        // Never verified here: the live-user rule reads only existence, state and scopes.
        password_hash: "$argon2id$v=19$m=256,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into(),
        scopes: scopes(scope_list),
        created_at: now(),
        disabled: false,
        rate_limit: None,
    }
}

/// The same data seen by two authenticators, one without and one with the user store.
struct Pair {
    without: Authenticator,
    with: Authenticator,
    jwt: String,
    key: String,
}

/// Fills the stores (the measured user and key, and their neighbours), issues the token, and
/// checks that both authenticators accept both credentials and that only the live one looks
/// the user up (it refuses a token whose user does not exist).
async fn prepare(keys: Arc<dyn KeyStore>, users: Arc<dyn UserStore>) -> Pair {
    let without = authenticator(keys.clone(), None);
    let with = authenticator(keys, Some(users.clone()));
    let held = ["agents:read", "keys:manage"];
    let bench_user = user("bench-user", &held);
    users.insert_user(&bench_user).await.expect("insert a user");
    let key = with
        .create_key_for(&bench_user.id, &scopes(&held), NewKey::named("bench key"))
        .await
        .expect("create a key");
    for i in 0..NEIGHBOURS {
        let neighbour = user(&format!("user-{i}"), &["a"]);
        users
            .insert_user(&neighbour)
            .await
            .expect("insert a neighbour");
        with.create_key_for(&neighbour.id, &scopes(&["a"]), NewKey::named("n"))
            .await
            .expect("create a neighbour's key");
    }
    let jwt = with
        .issue_token(&bench_user.id, &scopes(&held))
        .expect("issue a token");
    let pair = Pair {
        without,
        with,
        jwt: jwt.token.expose().to_owned(),
        key: key.key.expose().to_owned(),
    };
    for auth in [&pair.without, &pair.with] {
        for credential in [&pair.jwt, &pair.key] {
            let principal = auth.authenticate(credential).await.expect("authenticates");
            assert_eq!(principal.scopes(), &scopes(&held));
        }
    }
    let ghost = pair
        .with
        .issue_token(&OwnerId::new("no-such-user"), &scopes(&held))
        .expect("issue a token");
    assert!(
        pair.without
            .authenticate(ghost.token.expose())
            .await
            .is_ok(),
        "without users, any signed token is accepted"
    );
    assert!(
        pair.with.authenticate(ghost.token.expose()).await.is_err(),
        "with users, a token whose user does not exist is refused"
    );
    pair
}

fn cases(name: &'static str, rt: &Arc<Runtime>, pair: Pair) -> Cases {
    let Pair {
        without,
        with,
        jwt,
        key,
    } = pair;
    let case = |auth: &Authenticator, credential: &String| -> Box<dyn Fn()> {
        let (rt, auth, credential) = (rt.clone(), auth.clone(), credential.clone());
        Box::new(move || {
            black_box(
                rt.block_on(auth.authenticate(black_box(&credential)))
                    .expect("valid"),
            );
        })
    };
    Cases {
        name,
        jwt_without: case(&without, &jwt),
        jwt_with: case(&with, &jwt),
        key_without: case(&without, &key),
        key_with: case(&with, &key),
    }
}

fn memory_pair() -> (Arc<dyn KeyStore>, Arc<dyn UserStore>) {
    (
        Arc::new(MemoryKeyStore::new()),
        Arc::new(MemoryUserStore::new()),
    )
}

async fn sqlite_pair(dir: &tempfile::TempDir) -> (Arc<dyn KeyStore>, Arc<dyn UserStore>) {
    let pool = nexora_auth_sqlite::connect(dir.path().join("bench.db"))
        .await
        .expect("open");
    let store = Arc::new(SqliteStore::new(pool).await.expect("migrate"));
    (store.clone(), store)
}

async fn postgres_pair(schema: &TestSchema) -> (Arc<dyn KeyStore>, Arc<dyn UserStore>) {
    let store = Arc::new(
        PostgresStore::new(schema.pool().clone())
            .await
            .expect("migrate"),
    );
    (store.clone(), store)
}

fn measure(cases: &Cases, c: &mut Criterion) {
    let mut group = c.benchmark_group(format!("live_users/{}", cases.name));
    group.bench_function("jwt_without_users", |b| b.iter(|| (cases.jwt_without)()));
    group.bench_function("jwt_with_users", |b| b.iter(|| (cases.jwt_with)()));
    group.bench_function("key_without_users", |b| b.iter(|| (cases.key_without)()));
    group.bench_function("key_with_users", |b| b.iter(|| (cases.key_with)()));
    group.finish();
}

/// Medians of time per call over interleaved rounds, and the with ÷ without ratios.
fn ratios(cases: &Cases) {
    const ROUNDS: usize = 15;
    // Enough calls per round to dwarf the timer on the in-memory store, few enough for Postgres.
    let calls: u32 = if cases.name == "memory" { 20_000 } else { 300 };
    let mut samples: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        for (i, case) in [
            &cases.jwt_without,
            &cases.jwt_with,
            &cases.key_without,
            &cases.key_with,
        ]
        .into_iter()
        .enumerate()
        {
            let start = Instant::now();
            for _ in 0..calls {
                case();
            }
            samples[i].push(start.elapsed().as_secs_f64() * 1e6 / f64::from(calls));
        }
    }
    let [jwt_without, jwt_with, key_without, key_with] = samples.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    });
    let _ = writeln!(
        std::io::stdout(),
        "{:<8} JWT: without users {jwt_without:8.2} µs | with users {jwt_with:8.2} µs = {:5.2}x (+{:.2} µs)\n\
         {:<8} key: without users {key_without:8.2} µs | with users {key_with:8.2} µs = {:5.2}x (+{:.2} µs)",
        cases.name,
        jwt_with / jwt_without,
        jwt_with - jwt_without,
        "",
        key_with / key_without,
        key_with - key_without,
    );
}

fn live_users(c: &mut Criterion) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let (keys, users) = memory_pair();
    let memory = cases("memory", &rt, rt.block_on(prepare(keys, users)));
    measure(&memory, c);

    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = rt.block_on(async {
        let (keys, users) = sqlite_pair(&dir).await;
        prepare(keys, users).await
    });
    let sqlite = cases("sqlite", &rt, sqlite);
    measure(&sqlite, c);

    let schema = rt.block_on(TestSchema::create());
    let postgres = schema.as_ref().map(|schema| {
        let pair = rt.block_on(async {
            let (keys, users) = postgres_pair(schema).await;
            prepare(keys, users).await
        });
        cases("postgres", &rt, pair)
    });
    if let Some(postgres) = &postgres {
        measure(postgres, c);
    }

    let _ = writeln!(
        std::io::stdout(),
        "\n== live-user lookup: medians of interleaved rounds (same run, same data) =="
    );
    ratios(&memory);
    ratios(&sqlite);
    if let Some(postgres) = &postgres {
        ratios(postgres);
    }
    // The schema is dropped here, after the pools' last use.
    drop(postgres);
    drop(schema);
}

/// `count <memory|sqlite> <jwt|key> <with|without> <N>`: authenticate `N` times, for callgrind.
fn count(args: &[String]) {
    let usage = "usage: live_users count <memory|sqlite> <jwt|key> <with|without> <N>";
    let [store, credential, users, n] = args else {
        panic!("{usage}");
    };
    let n: u64 = n.parse().expect(usage);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary directory");
    rt.block_on(async {
        let (keys, user_store) = match store.as_str() {
            "memory" => memory_pair(),
            "sqlite" => sqlite_pair(&dir).await,
            _ => panic!("{usage}"),
        };
        let pair = prepare(keys, user_store).await;
        let auth = match users.as_str() {
            "with" => &pair.with,
            "without" => &pair.without,
            _ => panic!("{usage}"),
        };
        let credential = match credential.as_str() {
            "jwt" => &pair.jwt,
            "key" => &pair.key,
            _ => panic!("{usage}"),
        };
        for _ in 0..n {
            black_box(
                auth.authenticate(black_box(credential))
                    .await
                    .expect("valid"),
            );
        }
    });
}

criterion_group!(benches, live_users);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "count") {
        count(&args[1..]);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
