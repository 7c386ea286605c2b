"""GET /metrics: who may read it, and that the figures move when the events happen.

Counters live in the process for the whole test session, so each test reads them before and
after what it does and asserts the difference.
"""

import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from foundation import metrics
from native_api import metrics_view
from tests.comm import closed_with, hello, open_socket
from tests.conftest import auth_header, bearer
from tests.server import ROOT
from tokens.models import NativeToken

SECRET = "metrics-secret-0123456789abcdefghijklmnopqrstuvwxyz"


def scrape(client, **extra) -> dict[tuple, float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


def parse(text: str) -> dict[tuple, float]:
    """{(sample name, frozenset of labels): value} for every sample."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples, name, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# --- access ---------------------------------------------------------------------------------------


def test_loopback_reads_every_declared_metric(client):
    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    text = response.content.decode()

    assert response.status_code == 200
    for name in [
        "native_live_sockets",
        "native_subscriptions",
        "native_messages_posted_total",
        "native_deliveries_total",
        "native_control_events_total",
        "native_control_event_lag_seconds",
        "native_authentications_total",
        "native_rate_limit_refusals_total",
        "native_purge_runs_total",
        "native_purge_rows_total",
        "native_purge_last_success_timestamp_seconds",
        "native_dependency_up",
    ]:
        assert f"# HELP {name.removesuffix('_total')}" in text or f"# HELP {name}" in text, name


def test_ipv6_loopback_is_loopback_too(client):
    assert client.get("/metrics", REMOTE_ADDR="::1").status_code == 200


def test_outside_loopback_without_a_configured_secret_it_is_forbidden(client, settings):
    settings.NATIVE_METRICS_TOKEN = None

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert b"native_" not in response.content


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer " + SECRET[:-1], "Basic " + SECRET])
def test_outside_loopback_it_needs_the_exact_secret(client, settings, header):
    settings.NATIVE_METRICS_TOKEN = SECRET
    extra = {"HTTP_AUTHORIZATION": header} if header else {}

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", **extra)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"] == "Bearer"


def test_the_secret_opens_it_from_anywhere(client, settings):
    settings.NATIVE_METRICS_TOKEN = SECRET

    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {SECRET}")

    assert response.status_code == 200 and b"native_authentications_total" in response.content


def test_a_wrong_secret_is_refused_even_from_loopback(client, settings):
    settings.NATIVE_METRICS_TOKEN = SECRET

    response = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer guess")

    assert response.status_code == 401


def test_a_request_relayed_by_an_untrusted_local_proxy_is_not_loopback(client, settings):
    settings.NATIVE_TRUSTED_PROXIES = []

    relayed = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9")
    spoofed = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert relayed.status_code == 403
    assert spoofed.status_code == 403


def test_behind_a_trusted_proxy_the_real_client_address_decides(client, settings):
    import ipaddress

    settings.NATIVE_TRUSTED_PROXIES = [ipaddress.ip_network("10.0.0.0/8")]

    outside = client.get("/metrics", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="198.51.100.4")
    local = client.get("/metrics", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="127.0.0.1")

    assert outside.status_code == 403
    assert local.status_code == 200


def test_only_get_is_allowed(client):
    response = client.post("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


# --- the figures move -----------------------------------------------------------------------------

AUTH = "native_authentications_total"


@pytest.mark.django_db
def test_bearer_authentications_are_counted_by_outcome_and_reason(client, alice):
    good = bearer(alice)
    revoked = bearer(alice)
    expired = bearer(alice)
    from tokens.verifier import verify_bearer

    NativeToken.objects.filter(public_id=verify_bearer(revoked).id).update(revoked_at=timezone.now())
    NativeToken.objects.filter(public_id=verify_bearer(expired).id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    from tokens.denylist import denylist

    denylist.forget()
    before = scrape(client)

    client.get("/api/native/me", **auth_header(good))
    client.get("/api/native/me")
    client.get("/api/native/me", HTTP_AUTHORIZATION="Bearer nat_x")
    client.get("/api/native/me", **auth_header(revoked))
    client.get("/api/native/me", **auth_header(expired))
    after = scrape(client)

    def delta(outcome, reason):
        labels = {"transport": "http", "outcome": outcome, "reason": reason}
        return value(after, AUTH, **labels) - value(before, AUTH, **labels)

    assert delta("accepted", "none") == 1
    assert delta("refused", "missing") == 1
    assert delta("refused", "malformed") == 1
    assert delta("refused", "revoked") == 1
    assert delta("refused", "expired") == 1


@pytest.mark.django_db
def test_rate_limit_refusals_are_counted_by_limit(client, settings):
    settings.NATIVE_RATE_CHALLENGE = "1/m"
    before = scrape(client)

    statuses = [client.get("/api/native/challenge").status_code for _ in range(3)]
    after = scrape(client)

    assert statuses == [200, 429, 429]
    name = "native_rate_limit_refusals_total"
    assert value(after, name, limit="challenge") - value(before, name, limit="challenge") == 2


@pytest.mark.django_db
def test_a_failed_auth_lockout_counts_as_a_refusal(client, settings):
    settings.NATIVE_RATE_AUTH_FAILURES = "2/m"
    before = scrape(client)

    statuses = [client.get("/api/native/me", HTTP_AUTHORIZATION="Bearer nat_x").status_code for _ in range(3)]
    after = scrape(client)

    assert statuses == [401, 401, 429]
    name = "native_rate_limit_refusals_total"
    assert value(after, name, limit="auth-failures") - value(before, name, limit="auth-failures") == 1


@pytest.mark.django_db
def test_posted_messages_are_counted_and_a_repeated_client_id_is_not(client, general, alice, bob):
    headers = auth_header(bearer(alice))
    before = scrape(client)
    url = "/api/native/rooms/general/messages"

    bodies = [
        {"body": "hi", "client_id": "c1"},
        {"body": "hi", "client_id": "c1"},
        {"body": "x"},
        {"body": "psst", "target_user_ids": [bob.pk]},
    ]
    for body in bodies:
        client.post(url, body, content_type="application/json", **headers)
    after = scrape(client)

    name = "native_messages_posted_total"
    assert value(after, name, targeted="false") - value(before, name, targeted="false") == 2
    assert value(after, name, targeted="true") - value(before, name, targeted="true") == 1


@pytest.mark.django_db
def test_purge_runs_and_rows_are_counted(client, alice, settings):
    from tokens.purge import purge

    settings.NATIVE_PURGE_GRACE = 0
    for _ in range(3):
        bearer(alice)
    NativeToken.objects.update(expires_at=timezone.now() - timedelta(days=1))
    before = scrape(client)

    purge()
    after = scrape(client)

    runs, rows = "native_purge_runs_total", "native_purge_rows_total"
    assert value(after, runs, outcome="ok") - value(before, runs, outcome="ok") == 1
    assert value(after, rows, kind="tokens") - value(before, rows, kind="tokens") == 3
    last = value(after, "native_purge_last_success_timestamp_seconds")
    assert abs(last - timezone.now().timestamp()) < 60


@pytest.mark.django_db
def test_a_failing_purge_counts_as_failed(client, monkeypatch):
    from tokens import purge as purge_module

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(purge_module, "_in_batches", broken)
    before = scrape(client)

    with pytest.raises(RuntimeError):
        purge_module.purge()
    after = scrape(client)

    runs = "native_purge_runs_total"
    assert value(after, runs, outcome="failed") - value(before, runs, outcome="failed") == 1


@pytest.mark.django_db
def test_dependency_health_is_probed_at_scrape_time(client, monkeypatch):
    healthy = scrape(client)
    for part in ("database", "cache", "channel_layer"):
        assert value(healthy, "native_dependency_up", dependency=part) == 1, part

    def cache_down():
        raise ConnectionError("cache unreachable")

    monkeypatch.setitem(metrics_view.PROBES, "cache", cache_down)
    broken = scrape(client)

    assert value(broken, "native_dependency_up", dependency="cache") == 0
    assert value(broken, "native_dependency_up", dependency="database") == 1


@pytest.mark.django_db
def test_a_hung_dependency_costs_the_scrape_at_most_the_probe_timeout(client, monkeypatch):
    import threading
    import time

    release = threading.Event()
    monkeypatch.setitem(metrics_view.PROBES, "channel_layer", lambda: release.wait(10))
    monkeypatch.setattr(metrics_view, "PROBE_TIMEOUT", 0.3)
    try:
        started = time.monotonic()
        samples = scrape(client)
        took = time.monotonic() - started
    finally:
        release.set()

    assert value(samples, "native_dependency_up", dependency="channel_layer") == 0
    assert took < 2.0


@pytest.mark.django_db(transaction=True)
async def test_websocket_authentications_and_live_sockets_move(alice):
    from django.test import AsyncClient

    client = AsyncClient()

    async def read():
        response = await client.get("/metrics")
        return parse(response.content.decode())

    raw = await database_sync_to_async(bearer)(alice)
    before = await read()
    communicator, _ = await hello(f"token={raw}")
    during = await read()
    refused = await open_socket("token=nat_bogus")
    await closed_with(refused)
    await communicator.disconnect()
    after = await read()

    labels = {"transport": "websocket"}
    accepted = value(after, AUTH, **labels, outcome="accepted", reason="none")
    assert accepted - value(before, AUTH, **labels, outcome="accepted", reason="none") == 1
    malformed = value(after, AUTH, **labels, outcome="refused", reason="malformed")
    assert malformed - value(before, AUTH, **labels, outcome="refused", reason="malformed") == 1
    assert value(during, "native_live_sockets") - value(before, "native_live_sockets") == 1
    assert value(after, "native_live_sockets") == value(before, "native_live_sockets")


def test_the_hub_calls_move_their_metrics(client):
    before = scrape(client)

    metrics.subscription_added()
    metrics.subscription_added()
    metrics.subscription_removed()
    metrics.delivered(40)
    metrics.control_event("credential_revoked", lag_seconds=0.03)
    metrics.control_event("no-such-kind")
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("native_subscriptions") == 1
    assert delta("native_deliveries_total") == 40
    assert delta("native_control_events_total", kind="credential_revoked") == 1
    assert delta("native_control_events_total", kind="other") == 1
    assert delta("native_control_event_lag_seconds_bucket", kind="credential_revoked", le="0.05") == 1
    assert delta("native_control_event_lag_seconds_bucket", kind="credential_revoked", le="0.025") == 0


# --- several processes ------------------------------------------------------------------------------

WORKER = textwrap.dedent(
    """
    import sys, time
    from foundation import metrics
    for _ in range(int(sys.argv[1])):
        metrics.socket_opened()
    metrics.rate_limited("challenge")
    print("ready", flush=True)
    time.sleep(60)
    """
)
SCRAPE = textwrap.dedent(
    """
    import django
    django.setup()
    from native_api.metrics_view import exposition
    print(exposition().decode())
    """
)


def test_in_multiprocess_mode_one_scrape_answers_for_every_process_and_forgets_dead_ones(tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(sockets)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
        )
        for sockets in (3, 5)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline().strip() == "ready"

        def scrape_all():
            done = subprocess.run(
                [sys.executable, "-c", SCRAPE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
            )
            assert done.returncode == 0, done.stderr
            return parse(done.stdout)

        both = scrape_all()
        workers[1].kill()
        workers[1].wait()
        one_left = scrape_all()
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()

    assert value(both, "native_live_sockets") == 8
    assert value(both, "native_rate_limit_refusals_total", limit="challenge") == 2
    assert value(one_left, "native_live_sockets") == 3  # the dead process's sockets are gone
    assert value(one_left, "native_rate_limit_refusals_total", limit="challenge") == 2  # its counts stay


# --- logins and the KRL in force (issue 22) ------------------------------------------------------


def test_logins_are_counted_by_what_signed_and_outcome(client, alice, keys):
    from tests.ssh_helpers import public_key_line, sign

    def attempt(key_path):
        nonce = client.get("/api/native/challenge").json()["nonce"]
        body = {
            "public_key": public_key_line(keys["alice"]),
            "nonce": nonce,
            "signature": sign(key_path, nonce.encode(), "native-api-login"),
        }
        return client.post("/api/native/token", body, content_type="application/json").status_code

    before = scrape(client)
    assert (attempt(keys["alice"]), attempt(keys["bob"])) == (201, 401)
    after = scrape(client)
    for outcome in ("accepted", "refused"):
        labels = {"method": "key", "outcome": outcome}
        assert (
            value(after, "native_logins_total", **labels) - value(before, "native_logins_total", **labels)
            == 1
        )


@pytest.mark.django_db(transaction=True)
def test_the_krl_in_force_is_in_metrics_with_who_loaded_it(client, tmp_path):
    from tests.ssh_helpers import make_key, pub_path
    from tokens.krl_store import load

    assert value(scrape(client), "native_krl_loaded") == 0
    key = make_key(tmp_path, "ed25519")
    spec, krl = tmp_path / "spec", tmp_path / "k.krl"
    spec.write_text(f"sha256: {pub_path(key).read_text()}")
    subprocess.run(
        ["ssh-keygen", "-k", "-z", "12", "-f", str(krl), str(spec)], check=True, capture_output=True
    )
    row = load(krl.read_bytes(), source="/etc/ssh/revoked.krl", loaded_by="manage.py (root)").row

    samples = scrape(client)
    assert value(samples, "native_krl_loaded") == 1
    assert value(samples, "native_krl_version") == 12
    assert value(samples, "native_krl_loaded_timestamp_seconds") == pytest.approx(row.loaded_at.timestamp())
    assert value(samples, "native_krl_info", loaded_by="manage.py (root)", source="/etc/ssh/revoked.krl") == 1
    assert value(samples, "native_krl_revoked_entries", kind="sha256_hashes") == 1
