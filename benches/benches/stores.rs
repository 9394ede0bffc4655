//! `Authenticator::authenticate` on the SQLite and Postgres stores, against a same-run
//! baseline: a bare `SELECT * … WHERE id = ?` by primary key on the same pool, the least any
//! store could do per request. Target: authenticate ≤ 1.2× the baseline.
//!
//! Criterion measures each case; then an interleaved pass (baseline, valid, unknown, repeated)
//! prints the ratios, so that drift of the machine affects all three alike.
//!
//! With the verification cache (on by default), a hot valid key is answered from memory on
//! every store: the last line compares `authenticate` of a hot key on SQLite and Postgres with
//! the in-memory store, interleaved. Target: Postgres ≤ 2× the in-memory store.
//!
//! `cargo bench -p nexora-auth-benches --bench stores -- --warm-up-time 1 --measurement-time 3`
//! (Postgres from `NEXORA_TEST_POSTGRES_URL`, in a throwaway schema; skipped when unreachable.)

use std::{hint::black_box, io::Write, sync::Arc, time::Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use nexora_auth::{Authenticator, KeyStore, MemoryKeyStore, NewKey, OwnerId};
use nexora_auth_postgres::PostgresStore;
use nexora_auth_sqlite::SqliteStore;
use nexora_auth_testkit::{authenticator, new_record, now, postgres::TestSchema, scopes};
use tokio::runtime::Runtime;

/// One backend's three cases, as closures returning nothing (results are checked once up
/// front, then black-boxed).
struct Cases {
    name: &'static str,
    baseline: Box<dyn Fn()>,
    valid: Box<dyn Fn()>,
    unknown: Box<dyn Fn()>,
}

async fn setup(auth: &Authenticator) -> (String, String) {
    let owner = OwnerId::new("bench");
    let created = auth
        .create_key_for(
            &owner,
            &scopes(&["agents:read", "keys:manage"]),
            NewKey::named("bench key"),
        )
        .await
        .expect("create a key");
    // Some neighbours, so the lookup is not in a one-row table.
    for i in 0..1_000 {
        auth.create_key_for(
            &OwnerId::new(format!("owner-{i}")),
            &scopes(&["a"]),
            NewKey::named("n"),
        )
        .await
        .expect("create a neighbour");
    }
    let (unknown, _) = new_record("nobody", "never stored", now());
    auth.authenticate(created.key.expose())
        .await
        .expect("the valid key authenticates");
    assert!(
        auth.authenticate(unknown.expose()).await.is_err(),
        "the unknown key is refused"
    );
    (created.key.expose().to_owned(), unknown.expose().to_owned())
}

fn sqlite_cases(rt: &Arc<Runtime>, dir: &tempfile::TempDir) -> Cases {
    let (pool, auth, valid, unknown, id) = rt.block_on(async {
        let pool = nexora_auth_sqlite::connect(dir.path().join("bench.db"))
            .await
            .expect("open");
        let store = SqliteStore::new(pool.clone()).await.expect("migrate");
        let auth = authenticator(Arc::new(store) as Arc<dyn KeyStore>);
        let (valid, unknown) = setup(&auth).await;
        let id = nexora_auth::ApiKey::parse(&valid).expect("valid key").id();
        (pool, auth, valid, unknown, id)
    });
    let id_bytes = id.as_uuid().as_bytes().to_vec();
    let (rt1, rt2, rt3) = (rt.clone(), rt.clone(), rt.clone());
    let auth2 = auth.clone();
    Cases {
        name: "sqlite",
        baseline: Box::new(move || {
            let row = rt1.block_on(
                sqlx::query("SELECT * FROM nexora_api_keys WHERE id = ?")
                    .bind(id_bytes.as_slice())
                    .fetch_optional(&pool),
            );
            black_box(row.expect("baseline select").expect("row"));
        }),
        valid: Box::new(move || {
            black_box(rt2.block_on(auth.authenticate(&valid)).expect("valid"));
        }),
        unknown: Box::new(move || {
            black_box(
                rt3.block_on(auth2.authenticate(&unknown))
                    .expect_err("unknown"),
            );
        }),
    }
}

fn postgres_cases(rt: &Arc<Runtime>, schema: &TestSchema) -> Cases {
    let pool = schema.pool().clone();
    let (auth, valid, unknown, id) = rt.block_on(async {
        let store = PostgresStore::new(pool.clone()).await.expect("migrate");
        let auth = authenticator(Arc::new(store) as Arc<dyn KeyStore>);
        let (valid, unknown) = setup(&auth).await;
        let id = nexora_auth::ApiKey::parse(&valid).expect("valid key").id();
        (auth, valid, unknown, id)
    });
    let uuid = *id.as_uuid();
    let (rt1, rt2, rt3) = (rt.clone(), rt.clone(), rt.clone());
    let auth2 = auth.clone();
    Cases {
        name: "postgres",
        baseline: Box::new(move || {
            let row = rt1.block_on(
                sqlx::query("SELECT * FROM nexora_api_keys WHERE id = $1")
                    .bind(uuid)
                    .fetch_optional(&pool),
            );
            black_box(row.expect("baseline select").expect("row"));
        }),
        valid: Box::new(move || {
            black_box(rt2.block_on(auth.authenticate(&valid)).expect("valid"));
        }),
        unknown: Box::new(move || {
            black_box(
                rt3.block_on(auth2.authenticate(&unknown))
                    .expect_err("unknown"),
            );
        }),
    }
}

/// `authenticate` of a hot valid key on the in-memory store (the other cases' yardstick).
fn memory_valid(rt: &Arc<Runtime>) -> Box<dyn Fn()> {
    let (auth, valid) = rt.block_on(async {
        let auth = authenticator(Arc::new(MemoryKeyStore::new()) as Arc<dyn KeyStore>);
        let (valid, _) = setup(&auth).await;
        (auth, valid)
    });
    let rt = rt.clone();
    Box::new(move || {
        black_box(rt.block_on(auth.authenticate(&valid)).expect("valid"));
    })
}

/// Median time per call, in microseconds, of each function over interleaved rounds.
fn interleaved_medians(cases: &[&dyn Fn()]) -> Vec<f64> {
    const ROUNDS: usize = 15;
    const CALLS: u32 = 300;
    let mut samples = vec![Vec::new(); cases.len()];
    for _ in 0..ROUNDS {
        for (i, case) in cases.iter().enumerate() {
            let start = Instant::now();
            for _ in 0..CALLS {
                case();
            }
            samples[i].push(start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS));
        }
    }
    samples
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect()
}

/// A hot key on each SQL store against the in-memory store, interleaved.
fn hot_key_ratios(memory: &dyn Fn(), stores: &[&Cases]) {
    let mut cases: Vec<&dyn Fn()> = vec![memory];
    cases.extend(stores.iter().map(|c| &*c.valid));
    let medians = interleaved_medians(&cases);
    for (store, valid) in stores.iter().zip(&medians[1..]) {
        let _ = writeln!(
            std::io::stdout(),
            "hot key: {} {valid:.2} µs / memory {:.2} µs = {:.2}x (target <= 2x)",
            store.name,
            medians[0],
            valid / medians[0],
        );
    }
}

fn measure(cases: &Cases, c: &mut Criterion) {
    let mut group = c.benchmark_group(cases.name);
    group.bench_function("baseline_select_by_pk", |b| b.iter(|| (cases.baseline)()));
    group.bench_function("authenticate_valid", |b| b.iter(|| (cases.valid)()));
    group.bench_function("authenticate_unknown", |b| b.iter(|| (cases.unknown)()));
    group.finish();
}

/// Each case against the bare SELECT, over interleaved rounds.
fn ratios(cases: &Cases) {
    let medians = interleaved_medians(&[&*cases.baseline, &*cases.valid, &*cases.unknown]);
    let (base, valid, unknown) = (medians[0], medians[1], medians[2]);
    let _ = writeln!(
        std::io::stdout(),
        "{}: baseline SELECT by PK {base:.1} µs | authenticate valid {valid:.1} µs = {:.2}x | unknown {unknown:.1} µs = {:.2}x (target <= 1.20x)",
        cases.name,
        valid / base,
        unknown / base,
    );
}

fn stores(c: &mut Criterion) {
    let rt = Arc::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime"),
    );
    let dir = tempfile::tempdir().expect("temporary directory");
    let sqlite = sqlite_cases(&rt, &dir);
    measure(&sqlite, c);

    let schema = rt.block_on(TestSchema::create());
    let postgres = schema.as_ref().map(|schema| postgres_cases(&rt, schema));
    if let Some(postgres) = &postgres {
        measure(postgres, c);
    }

    ratios(&sqlite);
    if let Some(postgres) = &postgres {
        ratios(postgres);
    }
    let memory = memory_valid(&rt);
    let mut sql: Vec<&Cases> = vec![&sqlite];
    sql.extend(postgres.as_ref());
    hot_key_ratios(&*memory, &sql);
    // The schema is dropped here, after the pools' last use.
    drop(postgres);
    drop(schema);
}

criterion_group!(benches, stores);
criterion_main!(benches);
