#!/usr/bin/env python3
"""Login abuse against a running nexora-server: memory under a spray, and the race.

Standard library only (asyncio streams, raw HTTP/1.1), so it runs anywhere Python 3.9+ does.
Traffic goes to the server given (loopback only), bounded in count, and stops by itself.

    # a release server on a fresh SQLite data directory, trusting the loopback proxy:
    cargo build --release -p nexora-server
    export NEXORA_JWT_SECRET=$(head -c 48 /dev/urandom | base64) \
           NEXORA_KEY_PEPPER=$(head -c 48 /dev/urandom | base64)
    target/release/nexora-server --data-dir "$(mktemp -d)" --bind 127.0.0.1:8099 \
        --trusted-proxies 127.0.0.1/32 &
    python3 benches/login_abuse.py --url http://127.0.0.1:8099 --pid $! spray --logins 100000
    python3 benches/login_abuse.py --url http://127.0.0.1:8099 race --logins 200

spray: N failed logins, each with a unique email (60 KB by default) from a unique X-Forwarded-For
address, over --connections keep-alive connections; prints the answers by status and the
server's RSS (from /proc/PID/status) before, at its peak, and after.

race: N concurrent wrong-password logins for one email, each from another address; prints
the answers by status (the throttle's policy allows exactly 5 verifications: 5 x 401).
"""

import argparse
import asyncio
import collections
import json
import sys
import time
import urllib.parse


def rss_kib(pid):
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def post(self, path, body, headers):
        for attempt in (1, 2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            head = [f"POST {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                    "Content-Type: application/json", f"Content-Length: {len(body)}"]
            head += [f"{name}: {value}" for name, value in headers]
            self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
            try:
                await self.writer.drain()
                return await self.read_response()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")

    async def read_response(self):
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value.strip())
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


def address(i):
    """A distinct IPv4 address per i (198.18.0.0/15, the benchmarking range)."""
    return f"198.{18 + (i >> 16) % 2}.{(i >> 8) & 255}.{i & 255}"


async def spray(url, pid, logins, connections, email_bytes):
    parsed = urllib.parse.urlparse(url)
    counts = collections.Counter()
    before = peak = rss_kib(pid)
    padding = "a" * max(email_bytes - 20, 1)
    next_index = iter(range(logins))
    started = time.monotonic()

    async def worker():
        nonlocal peak
        connection = Connection(parsed.hostname, parsed.port)
        for i in next_index:
            body = json.dumps({"email": f"{padding}{i}@example.com",
                               "password": "a wrong password"}).encode()
            status = await connection.post("/api/auth/login", body,
                                           [("X-Forwarded-For", address(i))])
            counts[status] += 1
            if i % 1000 == 0:
                now = rss_kib(pid)
                if now is not None:
                    peak = max(peak, now)
                print(f"  {i:>7} sent, {dict(counts)}, rss {now} KiB", file=sys.stderr)
        connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    after = rss_kib(pid)
    elapsed = time.monotonic() - started
    print(json.dumps({
        "logins": logins, "email_bytes": len(padding) + 20, "seconds": round(elapsed, 1),
        "answers": {str(k): v for k, v in sorted(counts.items())},
        "rss_kib": {"before": before, "peak": max(peak or 0, after or 0), "after": after},
        "rss_growth_mib": None if before is None else round((max(peak or 0, after or 0) - before) / 1024, 1),
    }, indent=2))


async def race(url, logins, email):
    parsed = urllib.parse.urlparse(url)
    body = json.dumps({"email": email, "password": "a wrong password"}).encode()

    async def one(i):
        connection = Connection(parsed.hostname, parsed.port)
        try:
            return await connection.post("/api/auth/login", body,
                                         [("X-Forwarded-For", address(i))])
        finally:
            connection.close()

    statuses = await asyncio.gather(*(one(i) for i in range(logins)))
    counts = collections.Counter(statuses)
    print(json.dumps({"logins": logins, "email": email,
                      "answers": {str(k): v for k, v in sorted(counts.items())}}, indent=2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--pid", type=int, help="the server's pid, for its RSS")
    commands = parser.add_subparsers(dest="command", required=True)
    s = commands.add_parser("spray")
    s.add_argument("--logins", type=int, default=100_000)
    s.add_argument("--connections", type=int, default=32)
    s.add_argument("--email-bytes", type=int, default=60 * 1024,
                   help="length of each email (default 60 KB; 254 is the longest accepted)")
    r = commands.add_parser("race")
    r.add_argument("--logins", type=int, default=200)
    r.add_argument("--email", default="race-victim@example.com")
    args = parser.parse_args()
    if not urllib.parse.urlparse(args.url).hostname in ("127.0.0.1", "localhost", "::1"):
        sys.exit("loopback servers only")
    if args.command == "spray":
        asyncio.run(spray(args.url, args.pid, args.logins, args.connections, args.email_bytes))
    else:
        asyncio.run(race(args.url, args.logins, args.email))


if __name__ == "__main__":
    main()
