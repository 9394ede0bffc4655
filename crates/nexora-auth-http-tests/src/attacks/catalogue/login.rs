//! Logins with emails no store can hold: a 422 naming the field, before the throttle and any
//! store call.

use serde_json::json;

use super::Catalogue;
use crate::attacks::{Attack, Outcome, forge::q, wire::RawRequest};

impl Catalogue<'_> {
    /// Logins with emails no store can hold: a 422 naming the field, before the throttle and
    /// before any store call (on Postgres a NUL byte would otherwise be a database error).
    pub(super) fn login_rows(&mut self) {
        let login = |body: Vec<u8>| RawRequest {
            method: "POST",
            target: "/api/auth/login".into(),
            headers: vec![("content-type", b"application/json".to_vec())],
            body: Some(body),
            websocket: false,
        };
        let with_email = |email_json: &str| {
            login(format!(r#"{{"email": {email_json}, "password": "a guess!"}}"#).into_bytes())
        };
        let email_loc = json!(["body", "email"]);
        let long = format!(
            "{}@example.com",
            "a".repeat(nexora_auth::MAX_EMAIL_LEN - 11)
        );
        let huge = format!("{}@example.com", "a".repeat(60 * 1024));
        let unstorable = [
            (
                "a NUL byte (\\u0000)",
                q("nul\u{0}@example.com"),
                "value_error",
            ),
            ("a NUL byte, alone", q("\u{0}"), "value_error"),
            ("a line feed", q("line\nfeed@example.com"), "value_error"),
            (
                "an escape character",
                q("esc\u{1b}@example.com"),
                "value_error",
            ),
            ("DEL", q("del\u{7f}@example.com"), "value_error"),
            (
                "a C1 control (NEL)",
                q("nel\u{85}@example.com"),
                "value_error",
            ),
            ("one byte over the limit", q(&long), "string_too_long"),
            ("60 KB", q(&huge), "string_too_long"),
        ];
        for (what, email, kind) in unstorable {
            self.rows.push(Attack {
                name: format!(
                    "[{}/{}] login: email with {what} @ /api/auth/login",
                    self.f.stores, self.ring
                ),
                request: with_email(&email),
                expect: Outcome::Invalid {
                    loc: email_loc.clone(),
                    kind,
                },
                store_calls: Some(0..=0),
                must_not_echo: vec![],
            });
        }
        // Text JSON cannot carry as a string: a lone surrogate escape, raw invalid UTF-8.
        let undecodable: [(&str, Vec<u8>); 2] = [
            (
                "a lone surrogate escape",
                br#"{"email": "a\ud800@example.com", "password": "a guess!"}"#.to_vec(),
            ),
            (
                "invalid UTF-8",
                b"{\"email\": \"a\xff\xfe@example.com\", \"password\": \"a guess!\"}".to_vec(),
            ),
        ];
        for (what, body) in undecodable {
            self.rows.push(Attack {
                name: format!(
                    "[{}/{}] login: email with {what} @ /api/auth/login",
                    self.f.stores, self.ring
                ),
                request: login(body),
                expect: Outcome::RefusedOrClosed,
                store_calls: Some(0..=0),
                must_not_echo: vec![],
            });
        }
    }
}
