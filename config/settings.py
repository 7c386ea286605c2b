"""Settings, read from the environment (see README's settings table and docs/operations.md).

With no environment at all the project runs embedded: SQLite file, in-memory channel layer,
local-memory cache, DEBUG on. ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and
Redis, which is what production and CI use.
"""

import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from foundation.env import env_bool, env_float, env_int, env_list, env_networks, env_rate, env_str
from foundation.redis_urls import layer_host
from foundation.redis_urls import parse as parse_redis_url
from foundation.redis_urls import parse_list as parse_redis_urls

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DEBUG", True)

_DEV_SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"
SECRET_KEY = env_str("SECRET_KEY") or (_DEV_SECRET_KEY if DEBUG else None)
if SECRET_KEY is None:
    raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
if not DEBUG and (
    len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5 or SECRET_KEY.startswith("django-insecure-")
):
    raise ImproperlyConfigured(
        "SECRET_KEY is too weak for DEBUG=false: use at least 50 random characters, "
        'e.g. python -c "import secrets; print(secrets.token_urlsafe(64))"'
    )
# Old keys still accepted for signatures (service tokens) during a key rotation.
SECRET_KEY_FALLBACKS = env_list("SECRET_KEY_FALLBACKS", [])

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "tokens",
    "rooms",
    "native_api",
    "live",
    "foundation",
]

# Django's list, for the admin and everything outside /api/ (and what check --deploy reads).
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "native_api.static_files.StaticFilesMiddleware",  # WhiteNoise, hop-free for non-static paths
    "native_api.middleware.ApiErrorMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# The bearer API's chain (config/handlers.py picks it for /api/ under config.wsgi and config.asgi):
# no sessions, CSRF, auth or messages, and every entry async-capable without thread hops.
NATIVE_API_MIDDLEWARE = [
    "config.lean_middleware.SecurityMiddleware",
    "native_api.middleware.ApiErrorMiddleware",
    "config.lean_middleware.CommonMiddleware",
    "config.lean_middleware.XFrameOptionsMiddleware",
]
# Under ASGI: long-lived threads that run HTTP requests' sync code (one request per thread at a
# time), each keeping its own persistent database connection. See config/handlers.py.
NATIVE_HTTP_THREADS = env_int("NATIVE_HTTP_THREADS", 8, minimum=1)
# SIGTERM / SIGINT under daphne and uvicorn (config/shutdown.py): in-flight HTTP requests get
# DRAIN seconds to finish; the process is gone DEADLINE seconds after the signal at the latest.
NATIVE_SHUTDOWN_DRAIN = env_float("NATIVE_SHUTDOWN_DRAIN", 5.0)
NATIVE_SHUTDOWN_DEADLINE = env_float("NATIVE_SHUTDOWN_DEADLINE", 9.0, minimum=1.0)

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    try:
        _database = dj_database_url.parse(DATABASE_URL)
    except Exception as exc:  # dj-database-url raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
else:
    _database = {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
# A PostgreSQL that hangs must fail requests (503) in bounded time, never hang workers:
# - DB_CONNECT_TIMEOUT: a server that accepts TCP but never answers the handshake;
# - TCP keepalives: a connection whose peer vanished (host down, partition) while idle;
# - DB_STATEMENT_TIMEOUT (server side) and DB_QUERY_DEADLINE (client side, a little later,
#   config/db_deadline.py): a query that runs or waits too long, or a server that stops answering
#   a connection already in use; DB_IDLE_IN_TRANSACTION_TIMEOUT: a transaction left open.
# Seconds; 0 turns one off. Long maintenance (a migration on a big table) can raise them per
# command: DB_STATEMENT_TIMEOUT=0 DB_QUERY_DEADLINE=0 python manage.py migrate.
DB_STATEMENT_TIMEOUT = env_float("DB_STATEMENT_TIMEOUT", 10.0)
DB_QUERY_DEADLINE = env_float("DB_QUERY_DEADLINE", DB_STATEMENT_TIMEOUT + 5 if DB_STATEMENT_TIMEOUT else 0)
DB_IDLE_IN_TRANSACTION_TIMEOUT = env_float("DB_IDLE_IN_TRANSACTION_TIMEOUT", 60.0)
# Seconds between two health checks (SELECT 1) of one connection; sooner when the server has
# sent it something (it ended the session). 0: before every request and thread hop, as Django
# does. foundation/db_health.py says what the interval costs and saves.
DB_HEALTH_CHECK_INTERVAL = env_float("DB_HEALTH_CHECK_INTERVAL", 1.0, minimum=0.0)
if _database["ENGINE"] == "django.db.backends.postgresql":
    # A connection that died with the server is replaced before use, not after a 500.
    _database["CONN_HEALTH_CHECKS"] = True
    _options = _database.setdefault("OPTIONS", {})
    _options["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
    _options.update(
        keepalives=1,
        keepalives_idle=env_int("DB_KEEPALIVES_IDLE", 30, minimum=1),
        keepalives_interval=env_int("DB_KEEPALIVES_INTERVAL", 10, minimum=1),
        keepalives_count=env_int("DB_KEEPALIVES_COUNT", 3, minimum=1),
    )
    _server_options = " ".join(
        f"-c {name}={int(seconds * 1000)}"
        for name, seconds in (
            ("statement_timeout", DB_STATEMENT_TIMEOUT),
            ("idle_in_transaction_session_timeout", DB_IDLE_IN_TRANSACTION_TIMEOUT),
        )
    )
    _options["options"] = " ".join(filter(None, [_options.get("options"), _server_options]))
    if env_bool("DB_POOL", False):
        # psycopg's pool, shared by the process's threads. Off by default: with one thread per
        # gunicorn worker and a fixed set of request threads under ASGI (config/handlers.py),
        # persistent connections are reused without a checkout; see docs/benchmarks.md.
        _database["CONN_MAX_AGE"] = 0
        _options["pool"] = {
            "min_size": 1,
            "max_size": env_int("DB_POOL_SIZE", 10, minimum=1),
            "timeout": env_int("DB_CONNECT_TIMEOUT", 5),
        }
    else:
        # One connection per thread, kept for DB_CONN_MAX_AGE seconds (None: forever) and
        # checked before reuse (CONN_HEALTH_CHECKS). Threads are few and long-lived: one per
        # gunicorn worker, NATIVE_HTTP_THREADS + 1 per ASGI process, plus the purge thread.
        _database["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600)
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the websocket threads and HTTP requests share one file. Kept
    # open per thread like PostgreSQL's: opening one costs more than the query (PRAGMAs,
    # Django's function registrations).
    _database["CONN_MAX_AGE"] = env_int("DB_CONN_MAX_AGE", 600)
    _database.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
_database["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
DATABASES = {"default": _database}
# PgBouncer in transaction mode cannot carry what needs a server session of its own: the change
# log's LISTEN (live/pg_listen.py) and the purge's advisory lock (tokens/purge_lock.py). With
# DATABASE_URL at the pooler, DATABASE_DIRECT_URL names the same database directly, and those
# two connections use it (foundation/direct_db.py); unset, they use DATABASE_URL like the rest.
# Setting it also turns off server-side cursors (QuerySet.iterator()): a cursor lives in one
# server session, which transaction pooling does not keep (Django's docs, "Transaction pooling
# and server-side cursors").
DATABASE_DIRECT_URL = env_str("DATABASE_DIRECT_URL")
if DATABASE_DIRECT_URL:
    try:
        _direct_engine = dj_database_url.parse(DATABASE_DIRECT_URL)["ENGINE"]
    except Exception as exc:
        raise ImproperlyConfigured(f"DATABASE_DIRECT_URL is not a usable database URL: {exc}") from None
    if not (_direct_engine == _database["ENGINE"] == "django.db.backends.postgresql"):
        raise ImproperlyConfigured(
            "DATABASE_DIRECT_URL is for PostgreSQL behind a pooler: it and DATABASE_URL must both be postgres://"
        )
    _database["DISABLE_SERVER_SIDE_CURSORS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache ---------------------------------------------------------
# REDIS_URL: one Redis (redis://, rediss://, unix://) or the primary of a Sentinel group
# (redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT…]/MASTER_NAME[/DB]): the cache, rate limits,
# live-connection registry, purge lock and, unless REDIS_LAYER_URLS says otherwise, the channel
# layer. REDIS_LAYER_URLS: the channel layer sharded over these (each plain or Sentinel). Read by
# foundation/redis_urls.py; see docs/operations-scaling.md.
REDIS_URL = env_str("REDIS_URL")
REDIS_PREFIX = env_str("REDIS_PREFIX", "native")
REDIS_LAYER_URLS = env_str("REDIS_LAYER_URLS")
if REDIS_LAYER_URLS and not REDIS_URL:
    raise ImproperlyConfigured(
        "REDIS_LAYER_URLS is set without REDIS_URL: the cache, rate limits and live-connection "
        "registry need REDIS_URL, the layer shards only add to it"
    )
if REDIS_URL:
    _cache_address = parse_redis_url(REDIS_URL, setting="REDIS_URL")
    _layer_addresses = (
        parse_redis_urls(REDIS_LAYER_URLS, setting="REDIS_LAYER_URLS")
        if REDIS_LAYER_URLS
        else [_cache_address]
    )
    CHANNEL_LAYERS = {
        "default": {
            # channels-redis's layer, with one shard-routing fix (foundation/channel_layer.py).
            "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "foundation.channel_layer.RedisChannelLayer"),
            # capacity: events queued per socket before the layer drops them; a subscriber
            # that falls behind recovers dropped room messages through seq gap-filling.
            # Timeouts: a Redis that hangs (frozen, partitioned) must fail calls, not block them
            # forever; reads wait longer than channels_redis's 5-second BRPOP (resilience.md).
            "CONFIG": {
                "hosts": [
                    layer_host(address, socket_connect_timeout=2, socket_timeout=10)
                    for address in _layer_addresses
                ],
                "prefix": f"{REDIS_PREFIX}:layer",
                "capacity": 1000,
                # A process's local channels share one inbox in Redis ("specific.<process>!"),
                # and the hub's channel (live.hub) takes every room event of the process there.
                "channel_capacity": {"specific.*": 100_000},
                # A group membership not renewed for this long is dropped: the hub renews its
                # own every 10 minutes (live.layer_link.GROUP_REFRESH), so what expires is a process
                # that is gone (a restart, a new REDIS_LAYER_URLS), not one channels-redis's
                # default of a day would keep writing every room event to.
                "group_expiry": 1800,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # A list: Django splits a LOCATION string at commas (read replicas), and a
            # Sentinel URL has commas of its own.
            "LOCATION": [REDIS_URL],
            "KEY_PREFIX": f"{REDIS_PREFIX}:cache",
            "OPTIONS": {
                "socket_connect_timeout": 2,
                "socket_timeout": 2,
                "pool_class": "config.redis_pool.SharedConnectionPool",  # see that module
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "channels.layers.InMemoryChannelLayer"),
            # channels 4.3 does not compile channel_capacity for this layer: give it compiled.
            "CONFIG": {"capacity": 1000, "channel_capacity": [(re.compile(r"specific\."), 100_000)]},
        }
    }
    # Room for the rate-limit counters of many clients (the default 300 would evict them).
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 10000},
        }
    }

# --- Security -------------------------------------------------------------------------------
# Behind a TLS-terminating proxy, set SECURE_PROXY_SSL_HEADER=true so Django trusts
# X-Forwarded-Proto, and SECURE_SSL_REDIRECT=false if the proxy already redirects.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# The health probe must answer plain HTTP from a load balancer on the private network.
SECURE_REDIRECT_EXEMPT = [r"^api/native/health$", r"^metrics$"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files (the admin's CSS and JS), served by WhiteNoise -----------------------------
# See docs/operations-admin.md. DEBUG (the embedded default) serves straight from the apps'
# static folders; production serves what ``collectstatic`` put in STATIC_ROOT, under hashed,
# compressed names that may be cached forever.
STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "native_api.static_files.ManifestStorage"
    },
}

# --- The native API (NATIVE_*) --------------------------------------------------------------
# Read where they are used (django.conf.settings.NATIVE_...), so tests can override them.
NATIVE_TOKEN_TTL = env_int("NATIVE_TOKEN_TTL", 30 * 86400, minimum=60)
NATIVE_SERVICE_TOKEN_TTL = env_int("NATIVE_SERVICE_TOKEN_TTL", 2 * 3600, minimum=1)
# No service token may live longer than the ceiling, whatever NATIVE_SERVICE_TOKEN_MAX_TTL was when
# it was minted: purge_tokens keeps per-user floors and deny-list entries that long (tokens.purge),
# so raising the maximum again after lowering it cannot bring a revoked token back.
NATIVE_SERVICE_TOKEN_LIFETIME_CEILING = 365 * 86400
NATIVE_SERVICE_TOKEN_MAX_TTL = env_int(
    "NATIVE_SERVICE_TOKEN_MAX_TTL", 30 * 86400, minimum=1, maximum=NATIVE_SERVICE_TOKEN_LIFETIME_CEILING
)
NATIVE_CHALLENGE_TTL = 60
NATIVE_TICKET_TTL = 30
NATIVE_SIGNATURE_NAMESPACE = env_str("NATIVE_SIGNATURE_NAMESPACE", "native-api-login")
NATIVE_AUTO_REGISTER = env_bool("NATIVE_AUTO_REGISTER", False)
NATIVE_WS_ALLOW_QUERY_TOKEN = env_bool("NATIVE_WS_ALLOW_QUERY_TOKEN", True)
NATIVE_WS_AUTH_TIMEOUT = env_float("NATIVE_WS_AUTH_TIMEOUT", 5.0, minimum=0.1)
NATIVE_WS_MAX_ROOMS = env_int("NATIVE_WS_MAX_ROOMS", 100, minimum=1)
NATIVE_WS_MAX_BAD_FRAMES = env_int("NATIVE_WS_MAX_BAD_FRAMES", 10, minimum=1)
# A socket whose client stops reading: bytes allowed to wait for it, and for how long, before it is
# closed 4429 slow_consumer (16x the bytes closes it at once). See config/daphne_compat.py.
NATIVE_WS_SEND_BUFFER = env_int("NATIVE_WS_SEND_BUFFER", 1024 * 1024, minimum=64 * 1024)
NATIVE_WS_SEND_GRACE = env_float("NATIVE_WS_SEND_GRACE", 5.0, minimum=0.0)
# Frames that may wait in one socket's outbox (live/outbox.py), beside the byte bound above.
NATIVE_WS_SEND_QUEUE = env_int("NATIVE_WS_SEND_QUEUE", 2000, minimum=100)
# Seconds between two reads of the change log by each server process: the floor of the
# enforcement guarantee when a push is lost (live/poller.py): API.md promises 2 s at worst.
NATIVE_LIVE_POLL_INTERVAL = env_float("NATIVE_LIVE_POLL_INTERVAL", 0.5, minimum=0.05, maximum=1.0)
# On PostgreSQL, also LISTEN for the NOTIFY each change sends at commit (milliseconds, even from a
# process without Redis); false leaves the poll alone (the tests of the floor do that).
NATIVE_LIVE_PG_LISTEN = env_bool("NATIVE_LIVE_PG_LISTEN", True)
# Freeze long-lived objects out of the garbage collector's walk, so that a full collection of a
# process holding tens of thousands of sockets cannot stop it for longer than the enforcement
# bound (live/heap.py; on under daphne, whose finished connections leave no cycles).
NATIVE_GC_FREEZE = env_bool("NATIVE_GC_FREEZE", True)
# How long purge_tokens keeps change-log rows (and what each process did with them).
NATIVE_LIVE_CHANGE_RETENTION = env_int("NATIVE_LIVE_CHANGE_RETENTION", 3600, minimum=60)
NATIVE_TRUSTED_PROXIES = env_networks("NATIVE_TRUSTED_PROXIES")
NATIVE_IP_RETENTION_DAYS = env_int("NATIVE_IP_RETENTION_DAYS", 30)
NATIVE_PURGE_INTERVAL = env_int("NATIVE_PURGE_INTERVAL", 3600)
NATIVE_PURGE_GRACE = env_int("NATIVE_PURGE_GRACE", 3600)
NATIVE_RATE_CHALLENGE = env_rate("NATIVE_RATE_CHALLENGE", "20/m")
NATIVE_RATE_TOKEN_IP = env_rate("NATIVE_RATE_TOKEN_IP", "10/m")
NATIVE_RATE_TOKEN_KEY = env_rate("NATIVE_RATE_TOKEN_KEY", "5/m")
NATIVE_RATE_AUTH_FAILURES = env_rate("NATIVE_RATE_AUTH_FAILURES", "20/m")
NATIVE_RATE_WS_TICKET = env_rate("NATIVE_RATE_WS_TICKET", "30/m")
NATIVE_RATE_WS_CONNECT = env_rate("NATIVE_RATE_WS_CONNECT", "30/m")
NATIVE_RATE_WS_FRAMES = env_rate("NATIVE_RATE_WS_FRAMES", "20/s")
NATIVE_WS_FRAME_BURST = env_int("NATIVE_WS_FRAME_BURST", 40, minimum=1)
# --- Metrics (/metrics, docs/operations-metrics.md) -----------------------------------------
# Loopback callers may always scrape; anyone else must present this secret as a bearer token.
NATIVE_METRICS_TOKEN = env_str("NATIVE_METRICS_TOKEN")
RATELIMIT_USE_CACHE = "default"
RATELIMIT_ENABLE = True

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "native_api.logging.RedactSecretsFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # Django's default configuration gives "django" (request warnings such as "Not Found:
        # /path", with DEBUG) and "django.server" handlers of their own, without our filter:
        # send them through the root's redacting handler only.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"handlers": [], "level": "INFO", "propagate": True},
        # Keep third-party chatter at INFO even when our own code logs at DEBUG.
        "daphne": {"level": "INFO"},
        "asyncio": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
        # uvicorn installs handlers of its own before it imports us, and logs websocket paths
        # with their query strings (?ticket=…): route its loggers through our redacting handler.
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"handlers": [], "level": "INFO", "propagate": True},
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}
