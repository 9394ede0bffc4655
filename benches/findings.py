#!/usr/bin/env python3
"""Checks the key-management and live-user findings over real HTTP against a running server.

Each finding is tried as an attacker (or an ordinary client) would, with plain HTTP requests,
and printed as one PASS/FAIL row: PASS means the server behaves as the key-management policy and
the live-user rule require, FAIL shows what it answered instead.

  1    a key holding only `keys:manage` rotates a sibling holding `agents:read keys:manage`
       -> 404 (the sibling is out of its reach), not the sibling's new secret
  2    a key expiring in one hour creates a key without expiry
       -> the new key's `expires_at` equals its creator's
  2b   the owner's key list names the new key's creator (`created_by`)
  6a   an HS256 token signed with the server's secret whose `sub` names no user
       -> 401 on `GET /api/users/me`
  6b   a standard token {sub, exp, iat, iss, aud} (no `scope` claim) for a real user
       -> 200 on `GET /api/users/me`, and the user's scopes (listing keys works)
  6c   `user disable` -> the user's token and key answer 401; `user enable` -> they work again
  6d   `user set-scopes` narrows the user's token from the next request on (403 on key listing)
  7a   `DELETE` of an already revoked key -> 404
  7b   key A creates key B (A as bearer); `DELETE A?cascade=true` -> B answers 401

Python 3 standard library only. Two ways to run it:

  # 1. Let the script start the server on a free port, in a fresh data directory (SQLite):
  python3 benches/findings.py --server target/debug/nexora-server --spawn

  # 2. Against a server you started; the script runs the same binary's CLI (`user create`,
  #    `key create`, `user disable`, ...), which must reach the same database, so export the
  #    same NEXORA_DATA_DIR / NEXORA_DATABASE_URL and NEXORA_JWT_SECRET (32+ bytes) to both:
  export NEXORA_DATA_DIR=$(mktemp -d)/data NEXORA_JWT_SECRET=$(openssl rand -hex 32)
  target/debug/nexora-server serve --bind 127.0.0.1:18080 &
  python3 benches/findings.py --server target/debug/nexora-server --base-url http://127.0.0.1:18080

  #    On Postgres, give server and CLI a fresh schema (`CREATE SCHEMA findings` first):
  export NEXORA_DATABASE_URL='postgres://postgres@127.0.0.1:5432/test?options=-csearch_path%3Dfindings'

The exit status is 0 when every row passes, 1 otherwise.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

SCOPES = ["agents:read", "keys:manage"]
PASSWORD = "findings-password-0123456789"


class Api:
    """A tiny HTTP client: one request per connection, JSON in and out."""

    def __init__(self, base_url):
        parsed = urllib.parse.urlsplit(base_url)
        self.host = parsed.hostname
        self.port = parsed.port or 80
        self.prefix = parsed.path.rstrip("/")

    def request(self, method, path, bearer=None, body=None):
        headers = {}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        finally:
            conn.close()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode(errors="replace")
        return response.status, payload


class Cli:
    """The server binary's command line, on the same database as the server."""

    def __init__(self, binary, env):
        self.binary = binary
        self.env = env

    def run(self, *args, stdin=None, check=True):
        done = subprocess.run(
            [self.binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"`{' '.join(args)}` failed: {done.stderr.strip()}")
        return done

    def create_user(self, email, scopes):
        out = self.run(
            "user", "create", "--email", email, "--password-stdin",
            "--scopes", ",".join(scopes), stdin=PASSWORD + "\n",
        )
        return out.stdout.strip().splitlines()[-1]

    def create_key(self, email, name, scopes):
        out = self.run(
            "key", "create", "--email", email, "--name", name, "--scopes", ",".join(scopes)
        )
        return out.stdout.strip().splitlines()[-1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret, claims):
    """A compact JWS signed with HMAC-SHA256, as any JWT library makes it."""
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{b64url(signature)}"


def standard_claims(sub, issuer, audience):
    now = int(time.time())
    return {"sub": sub, "exp": now + 600, "iat": now, "iss": issuer, "aud": audience}


def parse_time(text):
    if text is None:
        return None
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def rfc3339(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Findings:
    def __init__(self, api, cli, secret, issuer, audience):
        self.api = api
        self.cli = cli
        self.secret = secret
        self.issuer = issuer
        self.audience = audience
        self.rows = []
        self.run_id = uuid.uuid4().hex[:8]

    def record(self, finding, expected, passed, observed):
        self.rows.append((finding, expected, "PASS" if passed else "FAIL", observed))

    def user(self, label, scopes=SCOPES):
        """A fresh user, its id and a login token."""
        email = f"{label}-{self.run_id}@findings.test"
        user_id = self.cli.create_user(email, scopes)
        status, body = self.api.request(
            "POST", "/api/auth/login", body={"email": email, "password": PASSWORD}
        )
        if status != 200:
            raise RuntimeError(f"login of {email}: {status} {body}")
        return email, user_id, body["access_token"]

    def key_id(self, session, name):
        status, keys = self.api.request("GET", "/api/users/me/api-keys", bearer=session)
        if status != 200:
            raise RuntimeError(f"listing keys: {status} {keys}")
        return next(k["id"] for k in keys if k["name"] == name)

    def create_key(self, bearer, name, scopes=None, expires_at=None):
        body = {"name": name}
        if scopes is not None:
            body["scopes"] = scopes
        if expires_at is not None:
            body["expires_at"] = expires_at
        return self.api.request("POST", "/api/users/me/api-keys", bearer=bearer, body=body)

    def check(self, finding, expected, test):
        """Runs one check; an exception is a FAIL with its message."""
        try:
            test(finding, expected)
        except Exception as error:  # noqa: BLE001 - every failure becomes a row
            self.record(finding, expected, False, f"error: {error}")

    # ----- the findings -------------------------------------------------------------------

    def rotate_escalation(self, finding, expected):
        email, _, session = self.user("rotate")
        narrow = self.cli.create_key(email, "narrow", ["keys:manage"])
        self.cli.create_key(email, "sibling", SCOPES)
        sibling = self.key_id(session, "sibling")
        agents, _ = self.api.request("GET", "/api/agents", bearer=narrow)
        status, body = self.api.request(
            "POST", f"/api/users/me/api-keys/{sibling}/rotate", bearer=narrow
        )
        observed = f"narrow key: /api/agents {agents}; rotate sibling {status}"
        if status in (200, 201) and isinstance(body, dict) and "key" in body:
            stolen, _ = self.api.request("GET", "/api/agents", bearer=body["key"])
            observed += f"; stolen secret on /api/agents {stolen}"
        self.record(finding, expected, agents == 403 and status == 404, observed)

    def lifetime_escalation(self, finding, expected):
        _, _, session = self.user("lifetime")
        hour = rfc3339(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=1))
        status, parent = self.create_key(session, "one hour", SCOPES, expires_at=hour)
        if status != 201:
            raise RuntimeError(f"creating the one-hour key: {status} {parent}")
        status, child = self.create_key(parent["key"], "child, no expiry asked")
        if status != 201:
            self.record(finding, expected, False, f"child creation answered {status} {child}")
            return
        parent_at, child_at = parse_time(parent["expires_at"]), parse_time(child["expires_at"])
        self.record(
            finding, expected, child_at is not None and child_at == parent_at,
            f"creator expires_at {parent['expires_at']}; new key expires_at {child['expires_at']}",
        )
        # The owner can tell which keys a key minted: the list names each key's creator.
        status, keys = self.api.request("GET", "/api/users/me/api-keys", bearer=session)
        listed = next((k for k in keys if k["id"] == child["id"]), {}) if status == 200 else {}
        self.record(
            "2b lineage in the list", "created_by = creator's id",
            listed.get("created_by", "absent") == {"kind": "key", "key_id": parent["id"]},
            f"list {status}; new key's created_by {json.dumps(listed.get('created_by', 'absent'))}",
        )

    def ghost_token(self, finding, expected):
        token = hs256(self.secret, standard_claims(str(uuid.uuid4()), self.issuer, self.audience))
        me, body = self.api.request("GET", "/api/users/me", bearer=token)
        agents, _ = self.api.request("GET", "/api/agents", bearer=token)
        self.record(
            finding, expected, me == 401 and agents == 401,
            f"/api/users/me {me} {json.dumps(body)}; /api/agents {agents}",
        )

    def standard_token(self, finding, expected):
        _, user_id, _ = self.user("standard")
        token = hs256(self.secret, standard_claims(user_id, self.issuer, self.audience))
        me, body = self.api.request("GET", "/api/users/me", bearer=token)
        keys, _ = self.api.request("GET", "/api/users/me/api-keys", bearer=token)
        agents, _ = self.api.request("GET", "/api/agents", bearer=token)
        self.record(
            finding, expected, me == 200 and keys == 200 and agents == 200,
            f"/api/users/me {me}; list keys {keys}; /api/agents {agents}",
        )

    def disable_user(self, finding, expected):
        email, _, session = self.user("disable")
        key = self.cli.create_key(email, "of a user to disable", SCOPES)
        before = (self.api.request("GET", "/api/users/me", bearer=session)[0],
                  self.api.request("GET", "/api/users/me", bearer=key)[0])
        disabled = self.cli.run("user", "disable", "--email", email, check=False)
        if disabled.returncode != 0:
            self.record(finding, expected, False,
                        f"`user disable` exited {disabled.returncode}: "
                        f"{disabled.stderr.strip().splitlines()[0] if disabled.stderr else ''}")
            return
        during = (self.api.request("GET", "/api/users/me", bearer=session)[0],
                  self.api.request("GET", "/api/users/me", bearer=key)[0])
        self.cli.run("user", "enable", "--email", email)
        after = (self.api.request("GET", "/api/users/me", bearer=session)[0],
                 self.api.request("GET", "/api/users/me", bearer=key)[0])
        self.record(
            finding, expected,
            before == (200, 200) and during == (401, 401) and after == (200, 200),
            f"(token, key): enabled {before}, disabled {during}, enabled again {after}",
        )

    def set_scopes(self, finding, expected):
        email, _, session = self.user("narrow")
        before, _ = self.api.request("GET", "/api/users/me/api-keys", bearer=session)
        narrowed = self.cli.run("user", "set-scopes", "--email", email, "--scopes", "agents:read",
                                check=False)
        if narrowed.returncode != 0:
            self.record(finding, expected, False,
                        f"`user set-scopes` exited {narrowed.returncode}: "
                        f"{narrowed.stderr.strip().splitlines()[0] if narrowed.stderr else ''}")
            return
        after, _ = self.api.request("GET", "/api/users/me/api-keys", bearer=session)
        agents, _ = self.api.request("GET", "/api/agents", bearer=session)
        self.record(
            finding, expected, before == 200 and after == 403 and agents == 200,
            f"list keys {before} -> {after} after set-scopes; /api/agents {agents}",
        )

    def revoke_revoked(self, finding, expected):
        _, _, session = self.user("revoke")
        status, key = self.create_key(session, "to revoke twice")
        if status != 201:
            raise RuntimeError(f"creating the key: {status} {key}")
        first, _ = self.api.request("DELETE", f"/api/users/me/api-keys/{key['id']}", bearer=session)
        second, body = self.api.request(
            "DELETE", f"/api/users/me/api-keys/{key['id']}", bearer=session
        )
        self.record(finding, expected, first == 204 and second == 404,
                    f"first DELETE {first}; second DELETE {second} {json.dumps(body)}")

    def cascade(self, finding, expected):
        _, _, session = self.user("cascade")
        status, parent = self.create_key(session, "A", SCOPES)
        if status != 201:
            raise RuntimeError(f"creating A: {status} {parent}")
        status, child = self.create_key(parent["key"], "B, created by A")
        if status != 201:
            raise RuntimeError(f"creating B with A: {status} {child}")
        before, _ = self.api.request("GET", "/api/users/me", bearer=child["key"])
        deleted, _ = self.api.request(
            "DELETE", f"/api/users/me/api-keys/{parent['id']}?cascade=true", bearer=session
        )
        after_a, _ = self.api.request("GET", "/api/users/me", bearer=parent["key"])
        after_b, _ = self.api.request("GET", "/api/users/me", bearer=child["key"])
        self.record(
            finding, expected,
            before == 200 and deleted == 204 and after_a == 401 and after_b == 401,
            f"B before {before}; DELETE A?cascade=true {deleted}; then A {after_a}, B {after_b}",
        )

    def run(self):
        checks = [
            ("1 rotate escalation", "404", self.rotate_escalation),
            ("2 lifetime escalation", "child expires_at == creator's", self.lifetime_escalation),
            ("6a token for no user", "401", self.ghost_token),
            ("6b standard token, no scope", "200 + user's scopes", self.standard_token),
            ("6c user disable/enable", "401 while disabled", self.disable_user),
            ("6d user set-scopes", "403 on next request", self.set_scopes),
            ("7a revoke a revoked key", "404", self.revoke_revoked),
            ("7b cascade revoke", "B gets 401", self.cascade),
        ]
        for finding, expected, test in checks:
            self.check(finding, expected, test)
        return self.rows


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(api, server, deadline=60):
    start = time.monotonic()
    while time.monotonic() - start < deadline:
        if server is not None and server.poll() is not None:
            raise RuntimeError(f"the server exited with status {server.returncode}")
        try:
            if api.request("GET", "/healthz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not answer /healthz in time")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", required=True, help="the nexora-server binary (for its CLI)")
    parser.add_argument("--base-url", help="the running server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--spawn", action="store_true",
                        help="start the server on a free port in a fresh data directory")
    parser.add_argument("--issuer", default=os.environ.get("NEXORA_JWT_ISSUER", "nexora"))
    parser.add_argument("--audience", default=os.environ.get("NEXORA_JWT_AUDIENCE", "nexora-api"))
    args = parser.parse_args()
    if args.spawn == bool(args.base_url):
        parser.error("give exactly one of --base-url and --spawn")

    env = dict(os.environ)
    env.setdefault("NEXORA_LOG", "warn")
    server = None
    scratch = None
    if args.spawn:
        scratch = tempfile.TemporaryDirectory(prefix="nexora-findings-")
        env["NEXORA_DATA_DIR"] = os.path.join(scratch.name, "data")
        env.pop("NEXORA_DATABASE_URL", None)
        env.setdefault("NEXORA_JWT_SECRET", secrets.token_urlsafe(48))
        base_url = f"http://127.0.0.1:{free_port()}"
        log = open(os.path.join(scratch.name, "server.log"), "w")
        server = subprocess.Popen(
            [args.server, "serve", "--bind", base_url.removeprefix("http://")],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    else:
        base_url = args.base_url
    if "NEXORA_JWT_SECRET" not in env:
        parser.error("NEXORA_JWT_SECRET must be set (the server's HS256 secret) to sign tokens")

    api = Api(base_url)
    try:
        wait_until_up(api, server)
        findings = Findings(api, Cli(args.server, env), env["NEXORA_JWT_SECRET"].encode(),
                            args.issuer, args.audience)
        rows = findings.run()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if scratch is not None:
            scratch.cleanup()

    print(f"server: {args.server} at {base_url}")
    width = max(len(r[0]) for r in rows)
    exp_width = max(len(r[1]) for r in rows)
    for finding, expected, verdict, observed in rows:
        print(f"{verdict}  {finding:<{width}}  expected {expected:<{exp_width}}  observed: {observed}")
    failed = sum(1 for r in rows if r[2] == "FAIL")
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
