"""Settings, read from the environment (see README's settings table and docs/operations.md).

With no environment at all the project runs embedded: SQLite file, in-memory channel layer,
local-memory cache, DEBUG on. ``DATABASE_URL`` and ``REDIS_URL`` switch to PostgreSQL and
Redis, which is what production and CI use.
"""

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_networks, env_rate, env_str

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
]

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

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

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
        _database = dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 60))
    except Exception as exc:  # dj-database-url raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL is not a usable database URL: {exc}") from None
else:
    _database = {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
if _database["ENGINE"] == "django.db.backends.postgresql":
    # A pooled connection that died with the server is replaced before use, not after a 500.
    _database["CONN_HEALTH_CHECKS"] = True
    _database.setdefault("OPTIONS", {})["connect_timeout"] = env_int("DB_CONNECT_TIMEOUT", 5)
    if env_bool("DB_POOL", True):
        # Under ASGI each request runs its sync code in a new thread, so a per-thread persistent
        # connection (CONN_MAX_AGE) is never reused: every request connected anew and the old
        # connections piled up until max_connections (503s under load). A pool shares them
        # (CONN_HEALTH_CHECKS above makes the pool check a connection before handing it out).
        _database["CONN_MAX_AGE"] = 0
        _database["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": env_int("DB_POOL_SIZE", 10, minimum=1),
            "timeout": env_int("DB_CONNECT_TIMEOUT", 5),
        }
if _database["ENGINE"] == "django.db.backends.sqlite3":
    # WAL + a busy timeout let the websocket threads and HTTP requests share one file.
    _database.setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
_database["TEST"] = {"NAME": env_str("TEST_DATABASE_NAME")}
DATABASES = {"default": _database}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer and cache ---------------------------------------------------------
REDIS_URL = env_str("REDIS_URL")
REDIS_PREFIX = env_str("REDIS_PREFIX", "native")
if REDIS_URL:
    if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
        raise ImproperlyConfigured("REDIS_URL must start with redis://, rediss:// or unix://")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": env_str("CHANNEL_LAYER_BACKEND", "channels_redis.core.RedisChannelLayer"),
            # capacity: events queued per socket before the layer drops them; a subscriber
            # that falls behind recovers dropped room messages through seq gap-filling.
            # Timeouts: a Redis that hangs (frozen, partitioned) must fail calls, not block them
            # forever; reads wait longer than channels_redis's 5-second BRPOP (resilience.md).
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_connect_timeout": 2, "socket_timeout": 10}],
                "prefix": f"{REDIS_PREFIX}:layer",
                "capacity": 1000,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
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
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer", "CONFIG": {"capacity": 1000}}
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
NATIVE_SERVICE_TOKEN_MAX_TTL = env_int("NATIVE_SERVICE_TOKEN_MAX_TTL", 30 * 86400, minimum=1)
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
NATIVE_TRUSTED_PROXIES = env_networks("NATIVE_TRUSTED_PROXIES")
NATIVE_IP_RETENTION_DAYS = env_int("NATIVE_IP_RETENTION_DAYS", 30)
NATIVE_PURGE_INTERVAL = env_int("NATIVE_PURGE_INTERVAL", 3600)
NATIVE_PURGE_GRACE = env_int("NATIVE_PURGE_GRACE", 3600)
NATIVE_MAX_PENDING_NONCES = env_int("NATIVE_MAX_PENDING_NONCES", 100_000, minimum=1)
NATIVE_MAX_PENDING_TICKETS_PER_USER = env_int("NATIVE_MAX_PENDING_TICKETS_PER_USER", 100, minimum=1)
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
