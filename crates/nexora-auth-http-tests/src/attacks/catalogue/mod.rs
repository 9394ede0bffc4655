//! Builds the rows for one fixture: [`Catalogue`] turns a request and its expected answer into
//! rows on every route, and one module per subject writes the rows.

mod bearer;
mod jwt_once;
mod jwt_per_signer;
mod keys;
mod leaks;
mod login;

use std::ops::RangeInclusive;

use nexora_auth_testkit::jwt::Signer;
use serde_json::json;

use super::{
    Attack, Outcome,
    forge::{Legit, object, q},
    vocabulary::*,
    wire::RawRequest,
};
use crate::{ALICE_EMAIL, Fixture, JWT_SECRET, SIGNING_KID, Signing};

/// Builds the rows for one fixture.
struct Catalogue<'a> {
    f: &'a Fixture,
    ring: &'static str,
    rows: Vec<Attack>,
    now: u64,
}

impl Catalogue<'_> {
    fn outcome(&self, want: Want, route: Route) -> Outcome {
        let rejected = |detail, challenge| Outcome::Rejected {
            status: 401,
            detail,
            challenge,
        };
        match (want, route) {
            (Want::Accept, Route::Agents) => Outcome::Accepted(json!({"owner": self.f.alice_id})),
            (Want::Accept, Route::Me) => {
                Outcome::Accepted(json!({"id": self.f.alice_id, "email": ALICE_EMAIL}))
            }
            (Want::Accept, Route::Ws) => Outcome::Upgraded,
            (Want::Missing, _) => rejected(NOT_AUTHENTICATED, CHALLENGE),
            (Want::InvalidRequest, _) => rejected(INVALID_AUTH_REQUEST, CHALLENGE_INVALID_REQUEST),
            (Want::InvalidToken, _) => rejected(INVALID_CREDENTIALS, CHALLENGE_INVALID_TOKEN),
            (Want::RefusedOrClosed, _) => Outcome::RefusedOrClosed,
        }
    }

    /// Key lookups for a key; once the credential checks out, the live-user lookup of its
    /// owner, and one more user lookup for `/api/users/me`. An upgraded WebSocket checks its
    /// credential again as its watch starts (the fixture's stores report no changes, so the
    /// verification cache vouches for nothing and the recheck reads them); the client closes
    /// the socket at once, which may cut that recheck short, so it costs from nothing to a
    /// full second check.
    fn calls(want: Want, cred: Cred, route: Route) -> Option<RangeInclusive<u64>> {
        let lookup = u64::from(cred == Cred::Key);
        let exactly = |n| Some(n..=n);
        match want {
            Want::Accept if route == Route::Ws => Some(lookup + 1..=2 * (lookup + 1)),
            Want::Accept => exactly(lookup + 1 + u64::from(route == Route::Me)),
            Want::InvalidToken => exactly(lookup),
            Want::Missing | Want::InvalidRequest => exactly(0),
            Want::RefusedOrClosed => None,
        }
    }

    fn push(
        &mut self,
        name: &str,
        (route, request): (Route, RawRequest),
        (want, cred): (Want, Cred),
        echo: &[&str],
    ) {
        self.rows.push(Attack {
            name: format!(
                "[{}/{}] {name} @ {}",
                self.f.stores,
                self.ring,
                route.path()
            ),
            request,
            expect: self.outcome(want, route),
            store_calls: Self::calls(want, cred, route),
            must_not_echo: secrets_of(echo),
        });
    }

    /// The `Authorization` header value on both REST routes and the WebSocket route.
    fn header(&mut self, name: &str, value: &[u8], want: Want, cred: Cred, echo: &[&str]) {
        self.headers(
            name,
            vec![("authorization", value.to_vec())],
            want,
            cred,
            echo,
        );
    }

    /// These headers on both REST routes and the WebSocket route.
    fn headers(
        &mut self,
        name: &str,
        headers: Vec<(&'static str, Vec<u8>)>,
        want: Want,
        cred: Cred,
        echo: &[&str],
    ) {
        for route in Route::REST {
            let request = RawRequest::get(route.path(), headers.clone());
            self.push(name, (route, request), (want, cred), echo);
        }
        let mut ws = RawRequest::get(Route::Ws.path(), headers);
        ws.websocket = true;
        self.push(
            &format!("{name} (header)"),
            (Route::Ws, ws),
            (want, cred),
            echo,
        );
    }

    /// `token` as `?token=` on the WebSocket route.
    fn query(&mut self, name: &str, token: &str, want: Want, cred: Cred) {
        let mut ws = RawRequest::get(
            format!("{}?token={}", Route::Ws.path(), query_escape(token)),
            vec![],
        );
        ws.websocket = true;
        self.push(
            &format!("{name} (?token=)"),
            (Route::Ws, ws),
            (want, cred),
            &[token],
        );
    }

    /// `Bearer <token>` on every route, and `?token=<token>` on the WebSocket route.
    fn token(&mut self, name: &str, token: &str, want: Want, cred: Cred) {
        self.token_split(name, token, want, want, cred);
    }

    /// As [`Self::token`], with a different expectation for `?token=` (which is not held to
    /// the header's `b64token` grammar: it is URL-decoded text).
    fn token_split(&mut self, name: &str, token: &str, header: Want, query: Want, cred: Cred) {
        let value = format!("Bearer {token}").into_bytes();
        self.header(name, &value, header, cred, &[token]);
        self.query(name, token, query, cred);
    }

    fn legit_signers(&self) -> Vec<Legit> {
        let mut signers = vec![Legit {
            label: "HS256 shared secret",
            signer: Signer::Hmac("HS256", JWT_SECRET.to_vec()),
            kid: None,
        }];
        if let Signing::Asymmetric(alg) = self.f.signing {
            signers.push(Legit {
                label: "ring signing key",
                signer: Signer::Pem(
                    alg,
                    self.f
                        .signing
                        .private_pem()
                        .expect("asymmetric rings have one"),
                ),
                kid: Some(SIGNING_KID),
            });
        }
        signers
    }

    fn base_claims(&self) -> Vec<(&'static str, String)> {
        vec![
            ("sub", q(&self.f.alice_id)),
            ("iss", q("nexora")),
            ("aud", q("nexora-api")),
            ("iat", self.now.to_string()),
            ("exp", (self.now + 600).to_string()),
            ("scope", q("agents:read keys:manage")),
        ]
    }

    /// The base claims with `name` set to `value` (raw JSON), or removed (`None`).
    fn claims_with(&self, name: &'static str, value: Option<String>) -> String {
        let mut fields = self.base_claims();
        fields.retain(|(n, _)| *n != name);
        if let Some(value) = value {
            fields.push((name, value));
        }
        object(&fields)
    }
}

/// The token and, for keys and JWTs, the parts of it that are secret on their own.
fn secrets_of(tokens: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for t in tokens {
        if t.len() >= 8 {
            out.push((*t).to_owned());
        }
        if t.starts_with("nxr_") && t.len() >= 58 {
            out.push(t[26..58].to_owned());
        }
        let parts: Vec<&str> = t.split('.').collect();
        if parts.len() == 3 {
            out.extend(
                parts
                    .iter()
                    .filter(|p| p.len() >= 16)
                    .map(|p| (*p).to_owned()),
            );
        }
    }
    out
}

/// Every row of the catalogue for this fixture; `canary` is the base URL of a [`Canary`](super::Canary)
/// that `jku`/`x5u` headers point at.
pub fn attacks(f: &Fixture, canary: &str) -> Vec<Attack> {
    let mut catalogue = Catalogue {
        f,
        ring: f.signing.alg_name(),
        rows: Vec::new(),
        now: u64::try_from(nexora_auth::Clock::now(&*f.clock).unix_timestamp()).unwrap_or(0),
    };
    catalogue.jwt_rows_per_signer();
    catalogue.jwt_rows_once(canary);
    catalogue.bearer_rows();
    catalogue.key_rows();
    catalogue.login_rows();
    catalogue.leak_rows();
    catalogue.rows
}
