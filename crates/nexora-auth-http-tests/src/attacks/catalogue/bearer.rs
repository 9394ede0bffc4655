//! The `Authorization` header's grammar: schemes, separators, bytes outside `b64token`,
//! repeated headers, sizes, and the WebSocket route's header-or-`?token=` rule.

use super::{Catalogue, Cred, Route, Want};
use crate::attacks::{vocabulary::query_escape, wire::RawRequest};

impl Catalogue<'_> {
    pub(super) fn bearer_rows(&mut self) {
        let key = self.f.alice_key.clone();
        let jwt = self.f.alice_jwt.clone();
        let k = key.as_str();
        let auth = |v: &[u8]| -> (&'static str, Vec<u8>) { ("authorization", v.to_vec()) };

        self.headers(
            "no Authorization header",
            vec![],
            Want::Missing,
            Cred::Free,
            &[],
        );
        self.header(
            "Basic scheme",
            b"Basic YWxpY2U6cHc=",
            Want::Missing,
            Cred::Free,
            &[],
        );
        for (what, value, cred) in [
            ("scheme bearer", format!("bearer {k}"), Cred::Key),
            ("scheme BEARER", format!("BEARER {k}"), Cred::Key),
            ("scheme bEaReR, a JWT", format!("bEaReR {jwt}"), Cred::Free),
            ("two spaces after Bearer", format!("Bearer  {k}"), Cred::Key),
        ] {
            let name = format!("{what} (accepted)");
            self.header(&name, value.as_bytes(), Want::Accept, cred, &[]);
        }
        for (what, value) in [
            ("Bearer alone", "Bearer"),
            ("Bearer and a space", "Bearer "),
            ("Bearer and spaces", "Bearer    "),
        ] {
            self.header(
                what,
                value.as_bytes(),
                Want::InvalidRequest,
                Cred::Free,
                &[],
            );
        }
        for (what, value) in [
            ("Bearer<token> without a space", format!("Bearer{k}")),
            ("tab separator", format!("Bearer\t{k}")),
            ("Token scheme", format!("Token {k}")),
        ] {
            self.header(what, value.as_bytes(), Want::Missing, Cred::Free, &[k]);
        }
        for (what, value) in [
            ("outside b64token: !", format!("Bearer {k}!")),
            ("outside b64token: comma", format!("Bearer {k},x")),
            ("outside b64token: inner space", format!("Bearer {k} x")),
            ("outside b64token: quotes", format!("Bearer \"{k}\"")),
            ("outside b64token: semicolon", format!("Bearer {k};")),
            ("outside b64token: percent", format!("Bearer {k}%00")),
            ("outside b64token: leading =", format!("Bearer ={k}")),
            (
                "outside b64token: = inside",
                format!("Bearer {}={}", &k[..30], &k[30..]),
            ),
        ] {
            self.header(
                what,
                value.as_bytes(),
                Want::InvalidRequest,
                Cred::Free,
                &[k],
            );
        }
        let mut high = b"Bearer ".to_vec();
        high.extend(0x80..=0xFF_u8);
        self.header(
            "bytes 0x80-0xFF",
            &high,
            Want::InvalidRequest,
            Cred::Free,
            &[],
        );
        let mut trailing = format!("Bearer {k}").into_bytes();
        trailing.push(0xFF);
        self.header(
            "a valid key and 0xFF",
            &trailing,
            Want::InvalidRequest,
            Cred::Free,
            &[k],
        );
        let mut bom = b"Bearer \xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(k.as_bytes());
        self.header(
            "BOM before a valid key",
            &bom,
            Want::InvalidRequest,
            Cred::Free,
            &[k],
        );
        for (what, byte) in [("DEL", 0x7F_u8), ("NUL", 0x00), ("CR", b'\r')] {
            let mut value = format!("Bearer {k}").into_bytes();
            value.push(byte);
            value.extend_from_slice(b"x");
            let name = format!("control byte {what} in the header");
            self.header(&name, &value, Want::RefusedOrClosed, Cred::Free, &[k]);
        }
        let basic = b"Basic YWxpY2U6cHc=".as_slice();
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        for (what, first, second) in [
            ("two headers: key then Basic", bearer(k), basic.to_vec()),
            ("two headers: Basic then key", basic.to_vec(), bearer(k)),
            ("two headers: key then JWT", bearer(k), bearer(&jwt)),
            ("two headers: JWT then key", bearer(&jwt), bearer(k)),
            (
                "two headers: garbage then key",
                bearer("garbage"),
                bearer(k),
            ),
            (
                "two headers: key then garbage",
                bearer(k),
                bearer("garbage"),
            ),
            ("two headers: the same key twice", bearer(k), bearer(k)),
        ] {
            let headers = vec![auth(&first), auth(&second)];
            self.headers(what, headers, Want::InvalidRequest, Cred::Free, &[k]);
        }
        for (what, size) in [
            ("16 KB", 16 * 1024),
            ("64 KB", 64 * 1024),
            ("1 MB", 1 << 20),
        ] {
            let value = format!("Bearer nxr_{}", "a".repeat(size));
            let name = format!("{what} Authorization header");
            self.header(
                &name,
                value.as_bytes(),
                Want::RefusedOrClosed,
                Cred::Free,
                &[],
            );
        }

        // The WebSocket route: a header and a different ?token= is ambiguous.
        let bob = self.f.bob_key.clone();
        for (what, header, query) in [
            ("WS: key header, JWT ?token=", k, jwt.as_str()),
            ("WS: JWT header, key ?token=", jwt.as_str(), k),
            ("WS: key header, Bob's key ?token=", k, bob.as_str()),
            ("WS: key header, garbage ?token=", k, "garbage"),
            ("WS: garbage header, key ?token=", "garbage", k),
        ] {
            let mut request = RawRequest::get(
                format!("{}?token={}", Route::Ws.path(), query_escape(query)),
                vec![auth(&bearer(header))],
            );
            request.websocket = true;
            self.push(
                what,
                (Route::Ws, request),
                (Want::InvalidRequest, Cred::Free),
                &[header, query],
            );
        }
        let mut twice =
            RawRequest::get(format!("{}?token={k}&token={k}", Route::Ws.path()), vec![]);
        twice.websocket = true;
        self.push(
            "WS: two token parameters",
            (Route::Ws, twice),
            (Want::InvalidRequest, Cred::Free),
            &[k],
        );
        // ?token= on REST routes is not a credential.
        for route in Route::REST {
            for (what, param, t) in [
                ("?token= key on a REST route", "token", k),
                ("?token= JWT on a REST route", "token", jwt.as_str()),
                ("?access_token= key on a REST route", "access_token", k),
            ] {
                let request = RawRequest::get(format!("{}?{param}={t}", route.path()), vec![]);
                self.push(what, (route, request), (Want::Missing, Cred::Free), &[t]);
            }
            let request = RawRequest::get(
                format!("{}?token=garbage", route.path()),
                vec![auth(&bearer(k))],
            );
            self.push(
                "?token= garbage beside a valid header on a REST route (accepted)",
                (route, request),
                (Want::Accept, Cred::Key),
                &[],
            );
        }
    }
}
