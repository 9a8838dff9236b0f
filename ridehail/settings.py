"""Settings for ridehail, read from the environment (see the README's Configuration table)."""

import os
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from ridehail.database import BoundedConnection, postgresql_options
from ridehail.env import env_bool, env_float, env_int, env_list, env_rate, env_str, read_secret_file

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = env_bool("DJANGO_DEBUG", True)

# A development key is fine on a laptop; production must bring its own (checks.py warns).
DEVELOPMENT_SECRET_KEY = "django-insecure-ridehail-development-key-do-not-use-in-production"
SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY and env_str("DJANGO_SECRET_KEY_FILE", ""):
    SECRET_KEY = read_secret_file("DJANGO_SECRET_KEY_FILE")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")

# Behind HTTPS (DJANGO_HTTPS=1): redirect plain HTTP, secure cookies, HSTS. Off by default so
# that `DJANGO_DEBUG=0 runserver` still works over plain HTTP on a laptop.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", HTTPS)
# How many proxies in front of the web server append to X-Forwarded-For (and may set
# X-Forwarded-Proto). 0: clients connect directly, and those headers are never believed. The
# server itself never rewrites the client address from headers (ridehail/server.py); DRF reads
# them, this many hops from the right (NUM_PROXIES below, ridehail/web/throttling.py).
RIDEHAIL_TRUSTED_PROXIES = env_int("RIDEHAIL_TRUSTED_PROXIES", 0, minimum=0)
# A TLS-terminating proxy in front must set X-Forwarded-Proto; without a trusted proxy a client
# could send it itself, so it is believed only when RIDEHAIL_TRUSTED_PROXIES says there is one.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS and RIDEHAIL_TRUSTED_PROXIES else None

# Every page: no inline script or style, nothing from other hosts but images, never in a frame.
# The policy is django-csp's (Django 5.2 has none of its own); extend a directive here, e.g. a
# map whose tiles come from another host needs that host in img-src (https: already allows it).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "https:"],  # map tiles (RIDEHAIL_MAP_TILES) come from another host
        "connect-src": [SELF],  # the dashboard's websocket: 'self' covers ws(s):// to the page's own host
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

INSTALLED_APPS = [
    "daphne",  # makes `runserver` an ASGI server: HTTP and websockets in one process
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "ridehail",
    "ridehail.events",
    "users",
    "rides",
    "locations",
]

MIDDLEWARE = [
    "ridehail.events.tracing.TracingMiddleware",  # a span per request with OTEL_* set; else not in the chain
    "ridehail.metrics.http.request_latency",  # first: the time it measures includes every other middleware
    "ridehail.web.http.ChunkedBodyMiddleware",  # before anything reads the body (CSRF reads forms)
    "django.middleware.security.SecurityMiddleware",
    "ridehail.web.csp.CSPMiddleware",  # django-csp's, its policy built once (ridehail/web/csp.py)
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "ridehail.web.http.MethodNotAllowedMiddleware",  # before the CSRF check: a wrong method is a 405
    "ridehail.web.http.DatabaseUnavailableMiddleware",  # a view's database outage: a JSON 503
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "ridehail.urls"
# Every path matches with and without its trailing slash itself: a redirect would drop a PUT body.
APPEND_SLASH = False

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

WSGI_APPLICATION = "ridehail.wsgi.application"
ASGI_APPLICATION = "ridehail.asgi.application"


DATABASE_POOL_SIZE = env_int("DATABASE_POOL_SIZE", 20, minimum=1)  # PostgreSQL connections per process
DATABASE_POOL_TIMEOUT = env_float("DATABASE_POOL_TIMEOUT", 3.0, minimum=0.1)  # seconds to wait for one
# PostgreSQL: nothing waits long on a slow, stalled or unreachable database (ridehail/database.py).
# Seconds to connect (libpq counts whole seconds, at least 2).
RIDEHAIL_DB_CONNECT_TIMEOUT = env_int("RIDEHAIL_DB_CONNECT_TIMEOUT", 3, minimum=2)
# Seconds one statement may run; the server cancels it after that, and a client waits at most a
# second longer for any answer before it gives the connection up. Raise it for a long `migrate`.
RIDEHAIL_DB_STATEMENT_TIMEOUT = env_float("RIDEHAIL_DB_STATEMENT_TIMEOUT", 3.0, minimum=0.1)
# Seconds a session may sit idle inside a transaction (a client frozen holding row locks) before
# the server ends it and releases them.
RIDEHAIL_DB_IDLE_TRANSACTION_TIMEOUT = env_float("RIDEHAIL_DB_IDLE_TRANSACTION_TIMEOUT", 30.0, minimum=1.0)


def _database_from_url(url: str) -> dj_database_url.DBConfig:
    try:
        config = dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    except Exception as exc:  # dj-database-url raises plain exceptions for unknown schemes
        raise ImproperlyConfigured(f"DATABASE_URL={url!r} cannot be parsed: {exc}") from exc
    if config["ENGINE"] == "django.db.backends.postgresql":
        # A connection pool, not persistent connections: under ASGI each request runs its
        # sync code in a thread of its own, and persistent connections piled up one per
        # thread until PostgreSQL refused more ("too many clients", bench/put_status.py).
        config["CONN_MAX_AGE"] = 0
        # A request waits at most DATABASE_POOL_TIMEOUT for a connection and the timeouts above
        # for the server: with PostgreSQL down or stalled it fails with a 503, instead of hanging.
        pool = {
            "min_size": 2,
            "max_size": DATABASE_POOL_SIZE,
            "timeout": DATABASE_POOL_TIMEOUT,
            "connection_class": BoundedConnection,
        }
        timeouts = postgresql_options(
            connect_timeout=RIDEHAIL_DB_CONNECT_TIMEOUT,
            statement_timeout=RIDEHAIL_DB_STATEMENT_TIMEOUT,
            idle_in_transaction_timeout=RIDEHAIL_DB_IDLE_TRANSACTION_TIMEOUT,
        )
        config["OPTIONS"] = {"pool": pool, **timeouts}
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock when the transaction starts, so concurrent status
        # changes queue up instead of failing with "database is locked" halfway through.
        config["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
        config["CONN_MAX_AGE"] = 0
        # A file, not memory: worker processes started by the tests must see the same data.
        config["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}
    return config


DATABASE_URL = env_str("DATABASE_URL", "sqlite:///db.sqlite3")
DATABASES = {"default": _database_from_url(DATABASE_URL)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "users.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/dashboard/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# collectstatic's target (the Docker image sets it); without one, WhiteNoise serves straight
# from the apps' static folders, so DJANGO_DEBUG=0 needs no collectstatic step.
STATIC_ROOT = env_str("DJANGO_STATIC_ROOT", "") or None
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # Token first: its WWW-Authenticate header makes a missing credential a 401, not a 403.
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["ridehail.web.parsers.JSONParser"],  # refuses JSON nested too deep
    "EXCEPTION_HANDLER": "ridehail.web.api.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Rate limits count per client address this many hops from the right of X-Forwarded-For
    # (BaseThrottle.get_ident); 0: the TCP peer, the header never believed.
    "NUM_PROXIES": RIDEHAIL_TRUSTED_PROXIES,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "ridehail API",
    "DESCRIPTION": "Drivers go online and offline; every change is announced on Redis.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",  # served from our own static files: no CDN
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Redis: one URL for the publisher, every subscriber and (on a single Redis) the channel layer.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
if not REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(f"REDIS_URL={REDIS_URL!r} must start with redis://, rediss:// or unix://")
# On: REDIS_URL names any node of a Redis Cluster, the others are discovered
# (ridehail/events/connection.py builds every client accordingly).
REDIS_CLUSTER = env_bool("REDIS_CLUSTER", False)
if REDIS_CLUSTER and REDIS_URL.startswith("unix://"):
    raise ImproperlyConfigured("REDIS_CLUSTER=1 needs REDIS_URL=redis://host:port of a cluster node, not a socket")
# channels-redis cannot use a cluster (django/channels_redis#420): beside one, the channel layer
# needs a standalone Redis of its own.
RIDEHAIL_CHANNEL_LAYER_URL = env_str("RIDEHAIL_CHANNEL_LAYER_URL", "" if REDIS_CLUSTER else REDIS_URL)
if not RIDEHAIL_CHANNEL_LAYER_URL:
    raise ImproperlyConfigured(
        "REDIS_CLUSTER=1 needs RIDEHAIL_CHANNEL_LAYER_URL=redis://host:port/0: a standalone Redis for the "
        "channel layer (channels-redis has no cluster support)"
    )
if not RIDEHAIL_CHANNEL_LAYER_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured(
        f"RIDEHAIL_CHANNEL_LAYER_URL={RIDEHAIL_CHANNEL_LAYER_URL!r} must start with redis://, rediss:// or unix://"
    )
# How many parts the position traffic and the geo index are split into (see locations/positions.py):
# on a cluster, so that no shard carries every position.
RIDEHAIL_POSITION_PARTITIONS = env_int("RIDEHAIL_POSITION_PARTITIONS", 1, minimum=1)

# No CACHES: nothing uses Django's cache framework (sessions live in the database; throttles,
# socket leases and metrics talk to Redis through ridehail/events/connection.py). Django's default
# is a per-process memory cache; a RedisCache on REDIS_URL could not talk to a Redis Cluster.

# Request rates per scope ("N/second|minute|hour|day"); over the limit: 429 with Retry-After.
# Counted in Redis (ridehail/web/throttling.py); while Redis is unreachable each web process counts
# alone and allows rate / RIDEHAIL_WEB_PROCESSES, so together they stay within the rate.
RIDEHAIL_THROTTLE_RATES = {
    # login on every way in (API, /accounts/login/, /admin/login/) and register, per client address
    "auth": env_rate("RIDEHAIL_THROTTLE_AUTH", "20/minute"),
    "driver-status": env_rate("RIDEHAIL_THROTTLE_DRIVER_STATUS", "120/minute"),  # status changes, per driver
    "driver-location": env_rate("RIDEHAIL_THROTTLE_DRIVER_LOCATION", "120/minute"),  # position reports, per driver
    # ride requests and cancels together, per rider. A rider asks a few times an hour; a trip
    # takes one or two, a changed mind (request, cancel, request) three, and the simulator's
    # riders (5-30 s between rides) about four a minute. A rider has one open ride at a time, so
    # the abuse is churn (request, cancel, again: events and matcher work); 10 caps it per account.
    "rides": env_rate("RIDEHAIL_THROTTLE_RIDES", "10/minute"),
}

# The web server's processes (WEB_CONCURRENCY, as the production command reads it).
RIDEHAIL_WEB_PROCESSES = env_int("WEB_CONCURRENCY", os.cpu_count() or 1, minimum=1)

# channels-redis waits for a process's messages with a 5 s blocking pop; redis-py 8 gives every
# connection a 5 s socket timeout by default, which cut that wait short (redis/redis-py#4091).
# Longer than the pop, still bounded if Redis vanishes mid-wait.
CHANNEL_LAYER_SOCKET_TIMEOUT = 10.0
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [{"address": RIDEHAIL_CHANNEL_LAYER_URL, "socket_timeout": CHANNEL_LAYER_SOCKET_TIMEOUT}]},
    },
}

# Event machinery (ridehail/events/).
RIDEHAIL_STREAM_MAXLEN = env_int("RIDEHAIL_STREAM_MAXLEN", 100_000, minimum=1)
# How often every worker reconciles its state with the database (seconds).
RIDEHAIL_RESYNC_SECONDS = env_float("RIDEHAIL_RESYNC_SECONDS", 300.0, minimum=0.1)
# How long a request waits on Redis while publishing before it gives up (the change is
# already committed; the request still succeeds).
RIDEHAIL_PUBLISH_TIMEOUT = env_float("RIDEHAIL_PUBLISH_TIMEOUT", 0.5, minimum=0.01)
# How long published outbox rows are kept (seconds) before the relay prunes them.
RIDEHAIL_OUTBOX_RETENTION = env_int("RIDEHAIL_OUTBOX_RETENTION", 86_400, minimum=0)
# Events a dashboard socket may fall behind before it is closed (and resyncs on reconnect).
RIDEHAIL_DASHBOARD_QUEUE_LIMIT = env_int("RIDEHAIL_DASHBOARD_QUEUE_LIMIT", 1000, minimum=1)
# Dashboard sockets one browser session may have open at once, across all web processes;
# beyond that a new one is closed with 4429 (ridehail/dashboard/session_sockets.py).
RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION = env_int("RIDEHAIL_DASHBOARD_SOCKETS_PER_SESSION", 10, minimum=1)
# How often open dashboards are checked against their user still being active staff.
RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS = env_float("RIDEHAIL_DASHBOARD_ACCESS_CHECK_SECONDS", 3.0, minimum=0.1)
# Seconds between two position frames on one dashboard (every driver that moved, once).
RIDEHAIL_DASHBOARD_POSITION_INTERVAL = env_float("RIDEHAIL_DASHBOARD_POSITION_INTERVAL", 1.0, minimum=0.05)
# The dashboard map's tiles; empty: no tiles (the markers still show).
RIDEHAIL_MAP_TILES = env_str("RIDEHAIL_MAP_TILES", "https://tile.openstreetmap.org/{z}/{x}/{y}.png")

# Who may read /metrics without a staff session: `Authorization: Bearer <this>` (Prometheus).
# Unset: no bearer token is accepted, only operators' sessions.
RIDEHAIL_METRICS_TOKEN = env_str("RIDEHAIL_METRICS_TOKEN", "")

# Locations (locations/): a driver's position older than this (seconds) is not offered.
RIDEHAIL_POSITION_MAX_AGE = env_float("RIDEHAIL_POSITION_MAX_AGE", 60.0, minimum=1.0)

# Matching (rides/matching.py): how far from the pickup a driver may be, how often a ride with
# no driver is tried again, and when it expires.
RIDEHAIL_MATCH_RADIUS_KM = env_float("RIDEHAIL_MATCH_RADIUS_KM", 5.0, minimum=0.001)
RIDEHAIL_MATCH_RETRY_SECONDS = env_float("RIDEHAIL_MATCH_RETRY_SECONDS", 2.0, minimum=0.05)
RIDEHAIL_MATCH_TIMEOUT_SECONDS = env_float("RIDEHAIL_MATCH_TIMEOUT_SECONDS", 60.0, minimum=0.1)
# Requests arriving within this many seconds are matched together, by the least total pickup
# distance (rides/assignment.py); 0: each at once to its nearest free driver (greedy). The
# default is measured (bench/matching_quality.py, BENCHMARKS.md): see docs/configuration.md.
RIDEHAIL_MATCH_WINDOW_SECONDS = env_float("RIDEHAIL_MATCH_WINDOW_SECONDS", 0.5, minimum=0.0)
if not RIDEHAIL_MATCH_WINDOW_SECONDS <= 10:  # NaN too: the reader waits it out, and must not look stuck
    raise ImproperlyConfigured(f"RIDEHAIL_MATCH_WINDOW_SECONDS={RIDEHAIL_MATCH_WINDOW_SECONDS} must be at most 10")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    },
    "filters": {
        # Django logs every 4xx and 5xx it answers (django.request); the development server's
        # access line for the same request would say it twice. Production serves with
        # --no-access-log (ridehail/server.py), so django.request is the one to keep.
        "not_twice": {"()": "ridehail.logs.DropErrorsDjangoLogged"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
    },
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "django": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.channels.server": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
            "filters": ["not_twice"],
        },
    },
}
