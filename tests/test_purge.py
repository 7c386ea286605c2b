"""``manage.py purge_tokens`` (one shot): what goes, what stays, batches, the single-runner lock.

alice owns every credential here; "live" rows must survive every purge untouched.
"""

import os
import secrets
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from unittest import mock

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import OperationalError, connection, transaction
from django.db.models.signals import post_delete
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from tests.server import QUIET_ENV, ROOT, database_url_for_tests
from tokens import crypto, tickets
from tokens.login import issue_token
from tokens.models import LoginNonce, NativeToken, RevokedToken, UsedTicket
from tokens.purge import purge
from tokens.purge_lock import ADVISORY_KEY, BUSY_MESSAGE, purge_lock
from tokens.verifier import consume_ticket, verify_bearer

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def ago(delta: timedelta):
    return timezone.now() - delta


def make_token(user, *, ip="203.0.113.7", user_agent="client/1.0", **fields):
    """A token of ``user``; ``fields`` override columns (expires_at, revoked_at, created_at)."""
    token = issue_token(user, client_ip=ip, user_agent=user_agent).token
    if fields:
        NativeToken.objects.filter(pk=token.pk).update(**fields)
        token.refresh_from_db()
    return token


def make_claim(user, expires_at):
    """The claim of a ticket of ``user`` expiring at ``expires_at``, as consume_ticket records it."""
    credential = verify_bearer(issue_token(user).raw)
    with mock.patch("django.utils.timezone.now", return_value=expires_at - timedelta(seconds=30)):
        key = tickets.read(tickets.mint(credential)).claim_key
    return UsedTicket.objects.create(key=key)


def make_nonce(**fields):
    values = {
        "digest": crypto.digest(secrets.token_urlsafe(32)),
        "expires_at": timezone.now() + timedelta(seconds=60),
    }
    return LoginNonce.objects.create(**{**values, **fields})


def bulk_expired_tokens(user, count: int) -> None:
    """``count`` tokens expired a day ago."""
    now = timezone.now()
    NativeToken.objects.bulk_create(
        NativeToken(
            public_id=f"bulk{i}",
            digest=crypto.digest(f"bulk{i}"),
            user=user,
            created_at=now - 2 * DAY,
            expires_at=now - DAY,
        )
        for i in range(count)
    )


def run_command(*args) -> str:
    out = StringIO()
    call_command("purge_tokens", *args, stdout=out)
    return out.getvalue()


# --- what goes, what stays --------------------------------------------------------------------


def test_it_deletes_tokens_expired_or_revoked_longer_ago_than_the_grace_period(alice, settings):
    settings.NATIVE_PURGE_GRACE = 3600
    live = make_token(alice)
    expired_long_ago = make_token(alice, expires_at=ago(2 * HOUR))
    revoked_long_ago = make_token(alice, revoked_at=ago(2 * HOUR))
    expired_recently = make_token(alice, expires_at=ago(timedelta(minutes=10)))
    revoked_recently = make_token(alice, revoked_at=ago(timedelta(minutes=10)))

    report = purge()

    assert report.rows("tokens") == 2
    remaining = set(NativeToken.objects.values_list("pk", flat=True))
    assert remaining == {live.pk, expired_recently.pk, revoked_recently.pk}
    assert not {expired_long_ago.pk, revoked_long_ago.pk} & remaining


def test_certificate_records_go_once_expired_past_the_grace_period_and_without_tokens(alice, settings):
    from tokens.models import SshCertificate

    settings.NATIVE_PURGE_GRACE = 3600

    def record(name, valid_before):
        return SshCertificate.objects.create(
            identity=f"SHA256:{name}",
            authority_fingerprint="SHA256:ca",
            serial="1",
            key_type="ssh-ed25519-cert-v01@openssh.com",
            key_fingerprint="SHA256:k",
            valid_after=ago(10 * HOUR),
            valid_before=valid_before,
            certificate="ssh-ed25519-cert-v01@openssh.com AAAA",
        )

    spent = record("spent", ago(2 * HOUR))
    with_a_token = record("token", ago(2 * HOUR))
    make_token(alice, certificate=with_a_token, revoked_at=ago(timedelta(minutes=5)))
    recent = record("recent", ago(timedelta(minutes=5)))
    still_valid = record("valid", timezone.now() + HOUR)
    forever = record("forever", None)

    report = purge()

    assert report.rows("certificate records") == 1
    remaining = set(SshCertificate.objects.values_list("pk", flat=True))
    assert remaining == {with_a_token.pk, recent.pk, still_valid.pk, forever.pk} and spent.pk not in remaining


def test_a_revoked_token_stays_visible_for_the_grace_period_then_goes(alice, settings):
    settings.NATIVE_PURGE_GRACE = 600
    token = make_token(alice, revoked_at=ago(timedelta(minutes=9)))

    purge()
    assert NativeToken.objects.get(pk=token.pk).status == "revoked"

    purge(now=timezone.now() + timedelta(minutes=2))
    assert not NativeToken.objects.filter(pk=token.pk).exists()


def test_a_live_token_keeps_working_after_a_purge(alice, settings):
    raw = issue_token(alice).raw
    make_token(alice, expires_at=ago(DAY))

    purge()

    assert verify_bearer(raw).user == alice


def test_it_deletes_ticket_claims_only_once_their_ticket_could_no_longer_be_accepted(alice, settings):
    assert settings.NATIVE_TICKET_TTL == 30
    unexpired = make_claim(alice, timezone.now() + timedelta(seconds=20))
    within_margin = make_claim(alice, ago(timedelta(seconds=20)))  # one lifetime for clock skew
    make_claim(alice, ago(timedelta(seconds=40)))
    make_claim(alice, ago(2 * DAY))

    report = purge()

    assert report.rows("tickets") == 2
    assert set(UsedTicket.objects.values_list("pk", flat=True)) == {unexpired.pk, within_margin.pk}


def test_a_used_ticket_stays_refused_after_a_purge(alice):
    from tokens.exceptions import ReplayedCredential

    ticket = tickets.mint(verify_bearer(issue_token(alice).raw))
    consume_ticket(ticket)

    purge()

    with pytest.raises(ReplayedCredential):
        consume_ticket(ticket)


def test_it_keeps_the_record_of_a_used_nonce_until_the_nonce_could_no_longer_be_accepted(db):
    """The record is what makes the nonce single-use (tokens.challenges): it stays while the
    nonce lives, and one more lifetime for clock skew between processes."""
    used = make_nonce(used_at=timezone.now())
    just_expired = make_nonce(used_at=ago(HOUR), expires_at=ago(timedelta(seconds=30)))
    make_nonce(used_at=ago(HOUR), expires_at=ago(timedelta(seconds=61)))
    make_nonce(expires_at=ago(HOUR))  # stored unused by an earlier version

    report = purge()

    assert report.rows("nonces") == 2
    assert set(LoginNonce.objects.values_list("pk", flat=True)) == {used.pk, just_expired.pk}


def test_it_deletes_deny_list_entries_only_once_their_token_could_no_longer_be_valid(alice, settings):
    settings.NATIVE_PURGE_GRACE = 3600
    still_valid = RevokedToken.objects.create(jti="still-valid", expires_at=timezone.now() + DAY)
    within_grace = RevokedToken.objects.create(jti="within-grace", expires_at=ago(timedelta(minutes=5)))
    RevokedToken.objects.create(jti="long-expired", expires_at=ago(2 * HOUR))

    report = purge()

    assert report.rows("revocations") == 1
    assert set(RevokedToken.objects.values_list("jti", flat=True)) == {still_valid.jti, within_grace.jti}


def test_a_still_valid_service_token_stays_refused_after_a_purge(alice):
    from tokens import service_tokens
    from tokens.exceptions import RevokedCredential
    from tokens.revocation import revoke_jti

    raw, claims = service_tokens.mint(alice, ttl=3600)
    revoke_jti(claims.jti, expires_at=claims.expires_at)

    purge()

    with pytest.raises(RevokedCredential):
        verify_bearer(raw)


def test_it_clears_ip_and_user_agent_older_than_the_retention_and_keeps_newer(alice, settings):
    settings.NATIVE_IP_RETENTION_DAYS = 30
    old = make_token(alice, created_at=ago(31 * DAY), expires_at=timezone.now() + DAY)
    recent = make_token(alice, created_at=ago(29 * DAY))

    report = purge()

    assert report.rows("client IP/user agent") == 1
    old.refresh_from_db()
    recent.refresh_from_db()
    assert (old.created_ip, old.user_agent) == (None, "")
    assert (recent.created_ip, recent.user_agent) == ("203.0.113.7", "client/1.0")
    assert old.is_live  # the token itself is untouched and still works


def test_the_retention_setting_decides_which_ips_are_old(alice, settings):
    settings.NATIVE_IP_RETENTION_DAYS = 7
    token = make_token(alice, created_at=ago(8 * DAY))

    purge()

    token.refresh_from_db()
    assert token.created_ip is None


# --- dry run, repeat, batches ----------------------------------------------------------------


def _one_of_each(user):
    make_token(user)
    make_token(user, expires_at=ago(DAY))
    make_token(user, revoked_at=ago(DAY))
    make_token(user, created_at=ago(40 * DAY))
    make_claim(user, ago(2 * DAY))
    make_nonce(expires_at=ago(HOUR))
    RevokedToken.objects.create(jti="gone", expires_at=ago(DAY))


def _row_counts():
    return [m.objects.count() for m in (NativeToken, UsedTicket, LoginNonce, RevokedToken)]


def test_a_dry_run_changes_nothing_and_counts_what_a_real_run_then_does(alice):
    _one_of_each(alice)
    before = _row_counts()

    dry = run_command("--dry-run")

    assert _row_counts() == before
    assert NativeToken.objects.filter(created_ip__isnull=False).count() == 4
    real = run_command()
    assert "dry run, nothing changed: 5 rows would be deleted" in dry
    assert "purge_tokens: 5 rows deleted, IP and user agent cleared on 1 token" in real
    for kind, count in [("tokens", 2), ("tickets", 1), ("nonces", 1), ("revocations", 1)]:
        assert f"{kind}: {count} would be deleted" in dry
        assert f"{kind}: {count} deleted in 1 batch" in real
    assert "client IP/user agent: 1 would be cleared" in dry
    assert "client IP/user agent: 1 cleared in 1 batch" in real


def test_a_second_run_finds_nothing_to_do(alice):
    _one_of_each(alice)
    run_command()

    second = run_command()

    assert "purge_tokens: 0 rows deleted, IP and user agent cleared on 0 tokens" in second
    deleted_kinds = [line for line in second.splitlines() if " deleted in " in line]
    assert len(deleted_kinds) == 9 and all(": 0 deleted in 0 batches" in line for line in deleted_kinds)
    assert ": 0 cleared in 0 batches" in second


def test_the_batch_size_is_honoured_with_a_constant_number_of_queries_per_batch(alice):
    bulk_expired_tokens(alice, 2500)
    with CaptureQueriesContext(connection) as many:
        report = purge(batch_size=1000)
    assert report.rows("tokens") == 2500
    assert next(r.batches for r in report.results if r.kind == "tokens") == 3
    assert not NativeToken.objects.exists()

    # Three batches of 2, 2 and 1 rows cost exactly as many queries as 1,000, 1,000 and 500.
    bulk_expired_tokens(alice, 5)
    with CaptureQueriesContext(connection) as few:
        purge(batch_size=2)
    assert len(many.captured_queries) == len(few.captured_queries)
    token_queries = [  # the certificate step's query joins tokens too, to find certificates without any
        q["sql"]
        for q in many.captured_queries
        if "tokens_nativetoken" in q["sql"] and "tokens_sshcertificate" not in q["sql"]
    ]
    # Per batch: its bounds and one DELETE of its tokens. Then one query of the client-data
    # step, which finds nothing left.
    assert len(token_queries) == 3 * 2 + 1, token_queries


def test_a_delete_signal_on_tokens_is_still_honoured(alice):
    """If someone later listens for token deletes, purge falls back to Django's Collector."""
    make_token(alice, expires_at=ago(DAY))
    make_token(alice, expires_at=ago(DAY))
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance.pk)

    post_delete.connect(receiver, sender=NativeToken)
    try:
        report = purge()
    finally:
        post_delete.disconnect(receiver, sender=NativeToken)

    assert report.rows("tokens") == 2 and len(seen) == 2
    assert not NativeToken.objects.exists()


def test_a_stop_request_ends_the_run_after_the_current_batch(alice):
    bulk_expired_tokens(alice, 30)
    batches = []

    report = purge(batch_size=10, keep_going=lambda: len(batches) < 2, after_batch=lambda: batches.append(1))

    assert report.stopped and report.rows("tokens") == 20
    assert NativeToken.objects.count() == 10


# --- the command -----------------------------------------------------------------------------


def test_the_command_fails_with_a_non_zero_exit_when_the_database_does(alice):
    failing = mock.patch(
        "tokens.management.commands.purge_tokens.purge", side_effect=OperationalError("db down")
    )
    with failing, pytest.raises(CommandError, match="OperationalError: db down"):
        run_command()


@pytest.mark.parametrize(
    "args",
    [["--dry-run", "--loop"], ["--interval", "5"], ["--batch-size", "0"], ["--loop", "--interval", "-1"]],
)
def test_the_command_refuses_contradictory_or_invalid_options(db, args):
    with pytest.raises(CommandError):
        run_command(*args)


def test_the_command_skips_and_exits_zero_while_another_purger_holds_the_lock(alice):
    make_token(alice, expires_at=ago(DAY))

    with purge_lock() as held:
        assert held is not None
        out = run_command()

    assert out.strip() == BUSY_MESSAGE
    assert NativeToken.objects.count() == 1
    assert "tokens: 1 deleted" in run_command()  # once the lock is free again


# --- PostgreSQL: one purger across processes ---------------------------------------------------


def _raw_pg_connection(*, autocommit: bool):
    """A psycopg connection to the test database that Django knows nothing about."""
    import psycopg

    return psycopg.connect(**connection.get_connection_params(), autocommit=autocommit)


@pytest.mark.postgres
def test_on_postgres_a_purger_holding_the_advisory_lock_elsewhere_makes_others_skip(alice):
    make_token(alice, expires_at=ago(DAY))
    other = _raw_pg_connection(autocommit=True)
    try:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_KEY]).fetchone()[0]
        assert run_command().strip() == BUSY_MESSAGE
        assert NativeToken.objects.count() == 1
    finally:
        other.close()  # the server frees a session lock with its connection
    assert "tokens: 1 deleted" in run_command()


def _insert_expired_tokens_sql(count: int, user_id: int) -> tuple[str, list]:
    """The fastest way to fill the table: one INSERT ... SELECT over generate_series."""
    return (
        "INSERT INTO tokens_nativetoken (public_id, digest, user_id, device_name, user_agent,"
        " created_at, expires_at, revoked_reason)"
        " SELECT 'x' || g, encode(sha256(('x' || g)::bytea), 'hex'), %s, '', '',"
        " now() - interval '2 days', now() - interval '1 day', ''"
        " FROM generate_series(1, %s) AS g",
        [user_id, count],
    )


@pytest.mark.postgres
def test_two_purge_commands_started_together_on_postgres_purge_exactly_once(alice, transactional_db):
    rows = 20_000
    with connection.cursor() as cursor:
        cursor.execute(*_insert_expired_tokens_sql(rows, alice.pk))
    # Hold the last row in another session, so that whichever command wins the lock cannot
    # finish before the other has tried: the overlap is certain, not a matter of timing.
    blocker = _raw_pg_connection(autocommit=False)
    blocker.execute("SELECT id FROM tokens_nativetoken ORDER BY id DESC LIMIT 1 FOR UPDATE")
    env = {**os.environ, **QUIET_ENV, "DATABASE_URL": database_url_for_tests(), "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    cmd = [sys.executable, "manage.py", "purge_tokens", "--batch-size", "200"]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        deadline = time.monotonic() + 60
        while all(proc.poll() is None for proc in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        loser = next(proc for proc in procs if proc.poll() is not None)
        winner = next(proc for proc in procs if proc is not loser)
        assert winner.poll() is None  # still purging, held up by our row lock
    finally:
        blocker.rollback()
        blocker.close()
    lost, won = loser.communicate(timeout=10), winner.communicate(timeout=60)

    assert (loser.returncode, winner.returncode) == (0, 0), (lost, won)
    assert lost[0].strip() == BUSY_MESSAGE, lost
    assert f"tokens: {rows} deleted in {rows // 200} batches" in won[0], won
    assert not NativeToken.objects.exists()


# --- Redis: the lock for SQLite deployments with several processes ------------------------------


@pytest.mark.redis
def test_the_redis_lock_admits_one_holder_and_notices_when_it_is_lost(db):
    from tokens.purge_lock import LockLost, RedisLock

    first, second = RedisLock(), RedisLock()
    assert first.acquire()
    try:
        assert not second.acquire()
        first.refresh()
        first._client.delete(first._lock.name)  # the expiry passed (a purger stalled for minutes)
        with pytest.raises(LockLost):
            first.refresh()
        third = RedisLock()
        assert third.acquire()
        third.release()
    finally:
        first.release()  # no longer ours: logs a warning, raises nothing


def test_it_purges_the_change_log_past_its_retention_and_spent_floors(alice, settings):
    from foundation.changelog import record
    from foundation.models import Change, ServerProcess
    from tokens.models import CredentialFloor

    settings.NATIVE_LIVE_CHANGE_RETENTION = 60
    with transaction.atomic():
        old, fresh = record("user_disabled", [{"user": alice.pk}, {"user": alice.pk}]).seqs
    Change.objects.filter(seq=old).update(created_at=timezone.now() - timedelta(seconds=61))
    ServerProcess.objects.create(name="gone:1", seen_at=timezone.now() - timedelta(days=2))
    ServerProcess.objects.create(name="alive:2")
    longest = timedelta(seconds=settings.NATIVE_SERVICE_TOKEN_LIFETIME_CEILING + settings.NATIVE_PURGE_GRACE)
    CredentialFloor.objects.create(user=alice, not_before=timezone.now() - longest - timedelta(seconds=5))

    report = purge()

    assert list(Change.objects.values_list("seq", flat=True)) == [fresh]
    assert list(ServerProcess.objects.values_list("name", flat=True)) == ["alive:2"]
    assert not CredentialFloor.objects.exists()
    assert report.rows("change log rows") == 1 and report.rows("user revocation floors") == 1
