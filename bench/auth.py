"""Authenticated REST: GET /api/native/me with a native token, in the two places it is served;
and logging in (POST token) with a registered key against logging in with a certificate.

- WSGI, the production HTTP layout: ``gunicorn -w 2 config.wsgi:application`` against the
  smallest possible Django JSON view under the same gunicorn (``bench/minimal_wsgi.py``: no
  apps, no middleware, no database). Target: ≥ 0.35×.
- ASGI, one daphne process: this tree against the tree before issue 13 (``BEFORE_REF``),
  exported with ``git archive`` and run side by side on the same data. Target: ≥ 2×.

- Login, under gunicorn (2 workers): POST token signed by a registered Ed25519 key, and by an
  Ed25519 key holding a certificate from a trusted CA (no key registered: the CA's signature is
  checked, the principal mapped to the user, the certificate recorded). Target: certificate
  login p99 ≤ 1.5× plain-key login p99. Each round fetches fresh challenges (they live 60 s),
  signs them in the client (bench.login_keys), and sends each once.

Rounds alternate between the two sides of each ratio; medians of 3.
"""

import json
import os
from pathlib import Path

from bench.harness import Context, expect_ok, med
from bench.httpload import get, http_load, request_once
from bench.login_keys import make_identities
from bench.report import Target, ratio
from bench.servers import ROOT

WSGI_TARGET = Target(">=", 0.35)
ASGI_TARGET = Target(">=", 2.0)
LOGIN_TARGET = Target("<=", 1.5)
LOGIN_ENV = {"NATIVE_RATE_CHALLENGE": "0", "NATIVE_RATE_TOKEN_IP": "0", "NATIVE_RATE_TOKEN_KEY": "0"}
NAMESPACE = "native-api-login"
# The commit this round started from: daphne served everything, through the old middleware path.
BEFORE_REF = os.environ.get("BENCH_BEFORE_REF", "3baeaf6")


def run(ctx: Context) -> None:
    count, duration, rounds = (1500, 2.5, 3) if ctx.quick else (6000, 6.0, 3)
    database_url, seed = ctx.prepare(users=8)
    tokens = [u["token"] for u in seed["users"]]

    specs = (("ours", "gunicorn", ROOT), ("minimal", "gunicorn-minimal", ROOT))
    with ctx.servers_of(database_url, *specs) as (ours, minimal):
        me = [get("/api/native/me", ours.port, token) for token in tokens]
        plain = [get("/bench/plain", minimal.port)]
        runs = alternate(rounds, count, duration, (ours, me, "me"), (minimal, plain, "plain"))
    report(ctx, "wsgi", runs)
    ctx.ratio("wsgi_me_vs_minimal_rps", ratio(med(runs["me"], "rps"), med(runs["plain"], "rps")), WSGI_TARGET)

    specs = (("ours", "daphne", ROOT), ("before", "daphne", ctx.tree_at(BEFORE_REF)))
    with ctx.servers_of(database_url, *specs) as (ours, before):
        runs = alternate(
            rounds,
            count,
            duration,
            (ours, [get("/api/native/me", ours.port, t) for t in tokens], "me"),
            (before, [get("/api/native/me", before.port, t) for t in tokens], "me_before"),
            (ours, [get("/bench/plain", ours.port)], "plain"),
            (before, [get("/bench/plain", before.port)], "plain_before"),
        )
    report(ctx, "asgi", runs)
    me_vs_before = ratio(med(runs["me"], "rps"), med(runs["me_before"], "rps"))
    ctx.ratio("asgi_me_vs_before_rps", me_vs_before, ASGI_TARGET)
    ctx.ratio("asgi_me_vs_plain_rps", ratio(med(runs["me"], "rps"), med(runs["plain"], "rps")))
    run_login(ctx, database_url, seed)


def run_login(ctx: Context, database_url: str, seed: dict) -> None:
    count, rounds = (300, 3) if ctx.quick else (800, 3)
    key_user, certificate_user = seed["users"][0]["username"], seed["users"][1]["username"]
    identities = make_identities(
        Path(ctx.backend.workdir) / "login-keys", key_user=key_user, certificate_user=certificate_user
    )
    ctx.backend.manage(database_url, "add_ssh_key", key_user, identities["key_line"])
    ctx.backend.manage(database_url, "add_ssh_ca", "bench-ca", identities["ca_line"])
    with ctx.servers_of(database_url, ("login", "gunicorn", ROOT), **LOGIN_ENV) as (server,):
        for side in ("key", "certificate"):  # warm up: imports, connections, the first certificate row
            expect_ok(login_load(server, identities[side], 50), f"login warm-up ({side})", status=201)
        runs = {"key": [], "certificate": []}
        for _ in range(rounds):
            for side in runs:
                result = login_load(server, identities[side], count)
                expect_ok(result, f"login with a {side}", status=201)
                runs[side].append(result)
    report(ctx, "login", runs)
    ctx.ratio(
        "login_certificate_vs_key_p99",
        ratio(med(runs["certificate"], "p99_ms"), med(runs["key"], "p99_ms")),
        LOGIN_TARGET,
    )
    ctx.ratio(
        "login_certificate_vs_key_p50", ratio(med(runs["certificate"], "p50_ms"), med(runs["key"], "p50_ms"))
    )


def login_load(server, signer, count: int) -> dict:
    """``count`` logins, each with its own fresh challenge, each sent once."""
    import asyncio

    async def challenges():
        nonces = []
        for _ in range(count):
            status, body = await request_once(server.port, get("/api/native/challenge", server.port))
            if status != 200:
                raise RuntimeError(f"challenge answered {status}")
            nonces.append(json.loads(body)["nonce"])
        return nonces

    requests = [login_request(server.port, signer, nonce) for nonce in asyncio.run(challenges())]
    return http_load(server, requests, count=count, duration=50, once=True)


def login_request(port: int, signer, nonce: str) -> bytes:
    body = json.dumps(
        {"public_key": signer.public_key, "nonce": nonce, "signature": signer.sign(nonce, NAMESPACE)}
    ).encode()
    head = (
        f"POST /api/native/token HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def alternate(rounds, count, duration, *sides):
    """Warm each side up, then measure them in turn, ``rounds`` times; {label: [results]}."""
    for server, requests, _ in sides:
        http_load(server, requests, count=150, duration=5)  # imports, connections, caches
    runs = {label: [] for _, _, label in sides}
    for _ in range(rounds):
        for server, requests, label in sides:
            result = http_load(server, requests, count=count, duration=duration)
            expect_ok(result, label)
            runs[label].append(result)
    return runs


def report(ctx: Context, layout: str, runs: dict) -> None:
    for label, results in runs.items():
        name = f"{layout}_{label}"
        ctx.figure(f"{name}_rps", med(results, "rps"), "req/s")
        ctx.figure(f"{name}_p50", med(results, "p50_ms"), "ms")
        ctx.figure(f"{name}_p99", med(results, "p99_ms"), "ms")
        ctx.figure(f"{name}_server_cpu_per_req", med([cpu_per_request(r) for r in results], "v"), "us")
        ctx.figure(f"{name}_client_cpu_share", med([client_share(r) for r in results], "v"), "cpu/s")


def cpu_per_request(result: dict) -> dict:
    return {"v": result["server_cpu"] / result["requests"] * 1e6}


def client_share(result: dict) -> dict:
    """Client CPU seconds per wall second: near the number of cores means the client saturated."""
    return {"v": result["client_cpu"] / result["elapsed"]}
