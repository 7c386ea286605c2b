"""Settings come from the environment and fail loudly on bad values."""

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from foundation import env
from live.layer_link import GROUP_REFRESH
from tests.server import ROOT

STRONG_KEY = "k" * 20 + "0123456789abcdefghijABCDEFGHIJ-_"


@pytest.fixture
def environ(monkeypatch):
    def set_(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_


def test_booleans_accept_the_usual_spellings_and_nothing_else(environ):
    environ(A="yes", B="Off", C="ture")
    assert env.env_bool("A", False) is True and env.env_bool("B", True) is False
    assert env.env_bool("UNSET_VAR", True) is True
    with pytest.raises(ImproperlyConfigured, match="C must be true or false"):
        env.env_bool("C", False)


def test_integers_are_checked_for_shape_and_range(environ):
    environ(N="30d", M="-5", K="42")
    with pytest.raises(ImproperlyConfigured, match="N must be an integer"):
        env.env_int("N", 1)
    with pytest.raises(ImproperlyConfigured, match="M must be >= 0"):
        env.env_int("M", 1)
    assert env.env_int("K", 1) == 42


def test_rates_parse_and_zero_turns_a_limit_off(environ):
    environ(R1="20/m", R2="0", R3="5/10s", R4="lots")
    assert env.env_rate("R1", "1/s") == "20/m" and env.env_rate("R2", "1/s") is None
    assert env.parse_rate("5/10s") == (5, 10)
    with pytest.raises(ImproperlyConfigured, match="R4 must look like 20/m"):
        env.env_rate("R4", "1/s")


def test_trusted_proxies_must_be_cidrs(environ):
    environ(P="10.0.0.0/8, 2001:db8::/32", Q="10.0.0.0/8,not-a-net")
    assert [str(n) for n in env.env_networks("P")] == ["10.0.0.0/8", "2001:db8::/32"]
    with pytest.raises(ImproperlyConfigured, match="'not-a-net' is not an IP network"):
        env.env_networks("Q")


def boot(**overrides) -> subprocess.CompletedProcess:
    """Load the settings in a fresh interpreter with exactly this environment."""
    ours = ("NATIVE_", "DATABASE_URL", "DATABASE_DIRECT_URL", "REDIS_URL", "REDIS_LAYER_URLS")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    clean.update({"DJANGO_SETTINGS_MODULE": "config.settings", **overrides})
    for name in ("DEBUG", "SECRET_KEY"):
        if name not in overrides:
            clean.pop(name, None)
    code = (
        "import django; django.setup(); from django.conf import settings;"
        "print(settings.DATABASES['default']['ENGINE'])"
    )
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=clean, capture_output=True, text=True)


def test_with_no_environment_it_runs_embedded_on_sqlite():
    result = boot()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"DEBUG": "false"}, "SECRET_KEY must be set"),
        ({"DEBUG": "false", "SECRET_KEY": "short"}, "SECRET_KEY is too weak"),
        ({"DEBUG": "false", "SECRET_KEY": "django-insecure-" + "x" * 60}, "SECRET_KEY is too weak"),
        ({"DEBUG": "maybe"}, "DEBUG must be true or false"),
        ({"NATIVE_TOKEN_TTL": "30 days"}, "NATIVE_TOKEN_TTL must be an integer"),
        (
            {"NATIVE_SERVICE_TOKEN_MAX_TTL": str(366 * 86400)},
            "NATIVE_SERVICE_TOKEN_MAX_TTL must be <= 31536000",
        ),
        ({"NATIVE_RATE_CHALLENGE": "twenty"}, "NATIVE_RATE_CHALLENGE must look like"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL must start with"),
        # Every other malformed Redis URL: tests/test_redis_urls.py, without a process each.
        ({"REDIS_URL": "redis+sentinel://10.0.0.1:26379"}, "the master name is missing"),
        ({"REDIS_LAYER_URLS": "redis://127.0.0.1:6379/1"}, "REDIS_LAYER_URLS is set without REDIS_URL"),
        ({"DATABASE_URL": "nosuchdb://x"}, "DATABASE_URL is not a usable database URL"),
        ({"DATABASE_DIRECT_URL": "postgres://db.internal/native"}, "DATABASE_DIRECT_URL is for PostgreSQL"),
        (
            {
                "DATABASE_URL": "postgres://pgbouncer.internal:6432/native",
                "DATABASE_DIRECT_URL": "nosuchdb://x",
            },
            "DATABASE_DIRECT_URL is not a usable database URL",
        ),
    ],
)
def test_bad_values_stop_the_process_with_a_message_naming_the_setting(overrides, message):
    result = boot(**overrides)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and message in result.stderr


def test_database_url_and_redis_url_switch_to_postgresql_and_redis():
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['CONN_HEALTH_CHECKS'],"
        " s.CHANNEL_LAYERS['default']['BACKEND'], s.CACHES['default']['BACKEND'],"
        " s.CHANNEL_LAYERS['default']['CONFIG']['group_expiry'])"
    )
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/whatever",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    *backends, group_expiry = result.stdout.split()
    assert backends == [
        "django.db.backends.postgresql",
        "True",
        "foundation.channel_layer.RedisChannelLayer",
        "django.core.cache.backends.redis.RedisCache",
    ]
    # A live process renews its memberships every GROUP_REFRESH: one missed renewal must not
    # drop them; a gone process's expire within the hour, not channels-redis's default day.
    assert 2 * GROUP_REFRESH < int(group_expiry) <= 3600


def test_a_sentinel_url_and_layer_shards_reach_the_cache_and_the_layer():
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.CACHES['default']['LOCATION']);"
        "hosts = s.CHANNEL_LAYERS['default']['CONFIG']['hosts'];"
        "print([h.get('address') or h['master_name'] for h in hosts])"
    )
    sentinel = "redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/native/1"
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "REDIS_URL": sentinel,
        "REDIS_LAYER_URLS": f"redis://10.0.0.9:6379/0,{sentinel.replace('native', 'layer')}",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    location, hosts = result.stdout.splitlines()
    assert location == repr([sentinel])  # one server, not three split at the commas
    assert hosts == repr(["redis://10.0.0.9:6379/0", "layer"])  # a plain shard, a Sentinel one


def test_behind_a_pooler_server_side_cursors_are_off_and_only_then():
    code = (
        "import django; django.setup(); from django.conf import settings as s;"
        "print(s.DATABASES['default'].get('DISABLE_SERVER_SIDE_CURSORS', False))"
    )
    pooled = {"DATABASE_URL": "postgres://native@pgbouncer.internal:6432/native"}
    direct = {"DATABASE_DIRECT_URL": "postgres://native@db.internal:5432/native"}
    outputs = []
    for extra in ({}, direct):
        environment = {k: v for k, v in os.environ.items() if k != "DATABASE_DIRECT_URL"}
        environment.update({"DJANGO_SETTINGS_MODULE": "config.settings", **pooled, **extra})
        result = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        outputs.append(result.stdout.strip())
    assert outputs == ["False", "True"]


def test_the_production_configuration_passes_check_deploy():
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NATIVE_")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "false",
        "SECRET_KEY": STRONG_KEY,
        "ALLOWED_HOSTS": "chat.example.com",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/whatever",
        "REDIS_URL": "redis://127.0.0.1:6379/9",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_processes_started_together_refresh_their_groups_apart():
    """Each process re-joins its groups (a round trip per room) every GROUP_REFRESH; started
    together (a deploy), they must not all do it in the same second."""
    import asyncio

    from live.layer_link import LayerLink

    loop = asyncio.new_event_loop()
    try:
        turns = {LayerLink(loop, print, print)._last_refresh for _ in range(20)}
        now = loop.time()
    finally:
        loop.close()
    assert len(turns) == 20 and all(now - GROUP_REFRESH <= turn <= now for turn in turns)
