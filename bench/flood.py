"""A flood of garbage bearer tokens: server CPU per rejected request vs per valid one.

10,000 distinct garbage tokens (--quick: 1,000), in four kinds: random strings, ``nat_`` with
a wrong checksum (refused without a query), well-formed ``nat_`` tokens with a valid checksum
that are in no database (CRC32 is public, so an attacker can make these: each costs a lookup),
and ``nst_`` with a forged signature. Measured first with the failed-auth limiter off (the
cost of the rejection itself), then with its default (20/m per IP: the flood hits 429s).
"""

import secrets
import string

from bench.harness import Context, expect_ok
from bench.httpload import get, http_load
from bench.report import Target, ratio
from tokens import crypto

TARGET = Target("<=", 1.0)


def garbage(kind: str, n: int) -> list[str]:
    alphabet = string.ascii_letters + string.digits
    if kind == "random":
        return ["".join(secrets.choice(alphabet) for _ in range(53)) for _ in range(n)]
    if kind == "bad_checksum":
        return [
            crypto.mint_secret("nat_")[:-1] + "0" if i % 2 else _flip(crypto.mint_secret("nat_"))
            for i in range(n)
        ]
    if kind == "unknown":
        return [crypto.mint_secret("nat_") for _ in range(n)]
    if kind == "bad_service":
        return ["nst_" + secrets.token_urlsafe(60) + ":" + secrets.token_urlsafe(20) for _ in range(n)]
    raise ValueError(kind)


def _flip(token: str) -> str:
    body = token[4:-6]
    return "nat_" + body[::-1] + token[-6:]


KINDS = ["random", "bad_checksum", "unknown", "bad_service"]


def per_request_us(result: dict) -> float:
    return result["server_cpu"] / result["requests"] * 1e6


def run(ctx: Context) -> None:
    per_kind = 250 if ctx.quick else 2500
    database_url, seed = ctx.prepare(users=20)
    valid_tokens = [u["token"] for u in seed["users"]]
    costs = {}
    with ctx.servers(database_url, NATIVE_RATE_AUTH_FAILURES="0") as (server,):
        valid = [get("/api/native/me", server.port, t) for t in valid_tokens]
        http_load(server, valid, count=150, duration=5)  # warm-up
        for kind in KINDS:
            requests = [get("/api/native/me", server.port, t) for t in garbage(kind, per_kind)]
            http_load(server, requests[:50], count=50, duration=5)
            result = http_load(server, requests, count=per_kind, duration=60)
            expect_ok(result, f"flood {kind}", status=401)
            costs[kind] = per_request_us(result)
        result = http_load(server, valid, count=per_kind, duration=60)
        expect_ok(result, "valid /me")
        costs["valid"] = per_request_us(result)
        result = http_load(server, [get("/bench/plain", server.port)], count=per_kind, duration=60)
        costs["plain"] = per_request_us(result)
    with ctx.servers(database_url) as (server,):
        mixed = [get("/api/native/me", server.port, t) for kind in KINDS for t in garbage(kind, per_kind)]
        result = http_load(server, mixed, count=len(mixed), duration=120)
        costs["limited"] = per_request_us(result)
        ctx.figure("limited_429_share", result["statuses"].get(429, 0) / result["requests"])
    ctx.figure("garbage_tokens", per_kind * len(KINDS))
    for kind, cost in costs.items():
        ctx.figure(f"{kind}_server_cpu_per_req", cost, "us")
    for kind in [*KINDS, "limited"]:
        ctx.ratio(f"{kind}_vs_valid_cpu", ratio(costs[kind], costs["valid"]), TARGET)
