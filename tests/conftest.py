"""Shared fixtures.

The cast (who may see what):
- alice and bob are both members of room "general"; alice alone is in "alice-only".
- mallory is a user with a valid key and token but belongs to no room: everything room-related
  must refuse her, and nothing targeted at others may ever reach her.
Keys are real ssh-keygen keys: alice ed25519, bob ecdsa (P-256), mallory rsa 2048.
"""

import os

import pytest
from django.core.cache import cache

from native_api.ratelimits import SETTINGS as _RATE_SETTINGS_BY_LIMIT
from tests.server import start_server
from tests.ssh_helpers import make_key, public_key_line

RATE_SETTINGS = tuple(_RATE_SETTINGS_BY_LIMIT.values())  # every NATIVE_RATE_* counter limit
ON_POSTGRES = (os.environ.get("DATABASE_URL") or "").startswith(("postgres://", "postgresql://"))
ON_REDIS = bool(os.environ.get("REDIS_URL"))


def pytest_sessionstart(session):
    """With DATABASE_URL / REDIS_URL set, an unreachable service fails the run (never a skip)."""
    if ON_REDIS:
        import redis

        from foundation import redis_urls

        try:
            redis_urls.client(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
        except redis.RedisError as exc:
            pytest.exit(f"REDIS_URL is set but Redis is unreachable: {exc}", returncode=3)
    if ON_POSTGRES:
        import psycopg

        try:
            psycopg.connect(
                os.environ["DATABASE_URL"].replace("/" + _db_name(), "/postgres"), connect_timeout=3
            ).close()
        except psycopg.Error as exc:
            pytest.exit(f"DATABASE_URL is set but PostgreSQL is unreachable: {exc}", returncode=3)


def _db_name() -> str:
    return os.environ["DATABASE_URL"].rsplit("/", 1)[-1].split("?")[0]


def pytest_collection_modifyitems(config, items):
    """Tests for a backend that this run does not use are deselected (they run in the other
    configuration of .ci/run), so that a skip never hides a check that should have run."""
    keep, drop = [], []
    for item in items:
        if (item.get_closest_marker("postgres") and not ON_POSTGRES) or (
            item.get_closest_marker("redis") and not ON_REDIS
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
    config.stash[_BACKEND_DESELECTED] = len(drop)


_BACKEND_DESELECTED = pytest.StashKey[int]()


def pytest_report_header(config):
    database = "PostgreSQL" if ON_POSTGRES else "SQLite"
    layer = "Redis" if ON_REDIS else "in-memory channel layer and local cache"
    return f"backends: {database}, {layer}"


def pytest_terminal_summary(terminalreporter, config):
    """Say why tests were deselected, so that "23 deselected" does not read as tests lost."""
    count = config.stash.get(_BACKEND_DESELECTED, 0)
    if count:
        missing = " and ".join(
            name
            for name, on in (("DATABASE_URL=postgres://…", ON_POSTGRES), ("REDIS_URL", ON_REDIS))
            if not on
        )
        terminalreporter.write_line(
            f"{count} {'test' if count == 1 else 'tests'} marked postgres/redis "
            f"{'was' if count == 1 else 'were'} deselected: they need {missing}. "
            ".ci/run runs them in its second pass, against PostgreSQL + Redis."
        )


@pytest.fixture(scope="session", autouse=True)
def _no_heap_freezing_in_the_test_process():
    """Hubs run inside this process too; freezing its heap (live.heap) would keep every test's
    cyclic garbage. Server processes the tests start freeze as in production."""
    from django.conf import settings

    settings.NATIVE_GC_FREEZE = False


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker):
    """Before the test database is dropped, end sessions that server processes or worker
    threads left open, so PostgreSQL lets pytest-django drop it."""
    yield
    if not ON_POSTGRES:
        return
    from django.db import connection

    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix, tmp_path_factory):
    """SQLite tests use a file (not :memory:) so that a server process can open the same database."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        db["TEST"]["NAME"] = str(tmp_path_factory.mktemp("db") / "test.sqlite3")


def clear_shared_cache():
    """Forget rate-limit counters (and the lockouts this process saw) and the deny-list version
    between tests (Redis: our prefix only)."""
    from django.conf import settings

    from native_api import ratelimits

    ratelimits.reset_cache_state()

    if settings.REDIS_URL:
        from foundation import redis_urls

        client = redis_urls.client(settings.REDIS_URL)
        for key in client.scan_iter(f"{settings.REDIS_PREFIX}:cache*", count=1000):
            client.delete(key)
    else:
        cache.clear()


REAL_SERVER_FIXTURES = {"server", "server_factory", "live_server_process"}


@pytest.fixture(autouse=True)
def _isolated(request, settings):
    """Each test starts with empty counters, a cold deny-list and no rate limits (tests about
    limits switch on the ones they exercise).

    In-process websocket tests get the in-memory channel layer even on a Redis run: channels_redis
    keeps receive state per layer object, and pytest-asyncio gives every test a new event loop,
    so a consumer left over from one test can stall the next loop's shutdown. Redis fan-out is
    proven where it matters, between real server processes (tests that use a server keep it)."""
    from tokens.denylist import denylist

    if not REAL_SERVER_FIXTURES & set(request.fixturenames):
        settings.CHANNEL_LAYERS = {
            "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
        }

    clear_shared_cache()
    denylist.forget()
    from live import presence

    presence.use_registry(None)  # no live-socket entries carried over from another test
    for name in RATE_SETTINGS:
        setattr(settings, name, None)
    yield
    denylist.forget()
    from live.hub import current_hub

    hub = current_hub()
    if hub is not None:
        hub.stop()  # its event loop ends with the test; so does its change-log poller


# --- keys and users ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def key_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("keys")


@pytest.fixture(scope="session")
def keys(key_dir):
    """Real private keys on disk, by person."""
    return {
        "alice": make_key(key_dir, "ed25519", comment="alice@laptop"),
        "bob": make_key(key_dir, "ecdsa256", comment="bob@phone"),
        "mallory": make_key(key_dir, "rsa2048", comment="mallory@box"),
    }


def _user_with_key(django_user_model, name, key_path):
    from tokens.login import register_key
    from tokens.ssh_signatures import parse_public_key

    user = django_user_model.objects.create_user(username=name)
    register_key(user, parse_public_key(public_key_line(key_path)), name=f"{name}'s key")
    return user


@pytest.fixture
def alice(db, django_user_model, keys):
    return _user_with_key(django_user_model, "alice", keys["alice"])


@pytest.fixture
def bob(db, django_user_model, keys):
    return _user_with_key(django_user_model, "bob", keys["bob"])


@pytest.fixture
def mallory(db, django_user_model, keys):
    return _user_with_key(django_user_model, "mallory", keys["mallory"])


@pytest.fixture
def general(alice, bob):
    from rooms.membership import create_room

    return create_room("general", "General", members=[alice, bob])


@pytest.fixture
def alice_only(alice):
    from rooms.membership import create_room

    return create_room("alice-only", "Alice only", members=[alice])


def bearer(user, **kwargs) -> str:
    """A fresh raw native token for ``user`` (skips the SSH dance for tests not about login)."""
    from tokens.login import issue_token

    return issue_token(user, **kwargs).raw


def auth_header(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- real server processes --------------------------------------------------------------------


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory):
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def live_server_process(django_db_setup, django_db_blocker, server_logs):
    """One daphne process shared by the end-to-end tests that need no special settings."""
    proc = start_server(server_logs, name="shared")
    yield proc
    proc.stop()


@pytest.fixture
def server(request, live_server_process, transactional_db):
    """The shared daphne server, with the test's data committed so the server can see it."""
    yield live_server_process
    _print_logs_on_failure(request, [live_server_process])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.failed_call = report.failed
    return report


def _print_logs_on_failure(request, servers):
    if getattr(request.node, "failed_call", False):
        for proc in servers:
            print(f"\n--- server log {proc.log_path.name} (last 60 lines) ---")
            print("\n".join(proc.log().splitlines()[-60:]))


@pytest.fixture
def server_factory(request, django_db_setup, server_logs, transactional_db):
    """Start extra servers with their own settings (env); all are stopped after the test."""
    started = []

    def start(env=None, **kwargs):
        proc = start_server(server_logs, env=env, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
    _print_logs_on_failure(request, started)
