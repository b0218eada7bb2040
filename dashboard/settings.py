"""Virtfleet settings: everything comes from environment variables, with embedded defaults
that run the whole product on one machine (SQLite and a Redis under var/).

See README.md, "Configuration", for every variable.
"""

import os
import secrets
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VIRTFLEET_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


# VIRTFLEET_LOCAL=1 is the all-in-one mode of ./virtfleet (one machine, embedded defaults):
# a secret key generated under var/ is fine there. Production leaves it unset.
LOCAL = env_bool("VIRTFLEET_LOCAL", False)
DEBUG = env_bool("DEBUG", False)


def _secret_key() -> str:
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if not DEBUG and not LOCAL:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off Virtfleet needs a stable secret key from the "
            "environment: export SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')"
        )
    # Local use: generated once and kept under var/ so sessions survive restarts.
    path = VAR_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()


def _secrets_keys() -> list[str]:
    """Fernet keys that encrypt host credentials at rest (VIRTFLEET_SECRETS_KEY, comma-separated:
    the first encrypts, all decrypt, so a new key goes first and the old one after it)."""
    import base64
    import binascii

    keys = env_list("VIRTFLEET_SECRETS_KEY", [])
    if not keys:
        if not DEBUG and not LOCAL:
            raise ImproperlyConfigured(
                "VIRTFLEET_SECRETS_KEY is not set. Virtfleet encrypts host credentials (SASL passwords) with it: "
                "export VIRTFLEET_SECRETS_KEY=$(python3 -c 'import base64, os; "
                "print(base64.urlsafe_b64encode(os.urandom(32)).decode())') and keep it safe: "
                "without it the stored passwords cannot be read."
            )
        path = VAR_DIR / "secrets_key"
        if not path.exists():
            path.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
            path.chmod(0o600)
        keys = [path.read_text().strip()]
    for index, key in enumerate(keys, 1):
        try:
            valid = len(base64.urlsafe_b64decode(key.encode())) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ImproperlyConfigured(
                f"VIRTFLEET_SECRETS_KEY: key {index} is not a Fernet key (32 url-safe base64-encoded bytes)."
            )
    return keys


VIRTFLEET_SECRETS_KEYS = _secrets_keys()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if not DEBUG else ["*"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "core.apps.VirtfleetAdminConfig",  # the admin site, for administrators only
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "knox",
    "guardian",
    "axes",
    "csp",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "core",
    "dashboard",
    "hosts",
    "jobs",
    "vms",
    "migration",
    "storage",
    "networks",
    "provisioning",
    "snapshots",
    "console",
    "audit",
    "accounts",  # last: its post_migrate handler sets up the roles once every permission exists
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "audit.middleware.RequestContextMiddleware",  # who and from where, for audit events
    "core.middleware.ForbiddenMiddleware",  # access.Forbidden -> a 403 page saying why
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks
]

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "core.context_processors.virtfleet",
            ],
        },
    },
]

# --- Database: SQLite under var/ unless DATABASE_URL is set (PostgreSQL in production) -------------
# Long-running processes (listener, workers) would otherwise open a connection per unit of work.
DB_CONN_MAX_AGE = env_int("VIRTFLEET_DB_CONN_MAX_AGE", 60)
if os.environ.get("DATABASE_URL"):
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"], conn_max_age=DB_CONN_MAX_AGE, conn_health_checks=True
        )
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("VIRTFLEET_SQLITE_PATH", str(VAR_DIR / "virtfleet.sqlite3")),
            "OPTIONS": {
                # Web, workers and listeners write concurrently: WAL lets readers go on while one
                # writes, IMMEDIATE transactions avoid lock-upgrade deadlocks, and writers wait
                # instead of failing with "database is locked".
                "timeout": 30,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
            "CONN_MAX_AGE": DB_CONN_MAX_AGE,
            "CONN_HEALTH_CHECKS": True,
            # A file (not :memory:) so end-to-end tests' workers and servers share it.
            "TEST": {"NAME": str(VAR_DIR / "test-virtfleet.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, cache (console tickets, leases) ---------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:16379/0")

CHANNEL_LAYERS = {
    "default": {
        # Redis pub/sub: a group_send is one PUBLISH, where the list-based layer needs a sorted-set
        # read and a Lua call per member. Live updates need no queueing for absent sockets: a page
        # refetches what it shows when its socket (re)connects.
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": 15}],
            "prefix": os.environ.get("VIRTFLEET_CHANNEL_PREFIX", "virtfleet"),
        },
    }
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "virtfleet",
    }
}

CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True  # a job whose worker dies is not lost: the message is delivered again
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_DEFAULT_QUEUE = "lifecycle"
# Inventory reads never wait behind (or delay) VM operations; migrations get their own workers.
# Jobs are sent to their kind's queue by the dispatcher (core.dispatch); these routes place what is
# sent without one, and messages an older version queued under the task names it used then.
CELERY_TASK_ROUTES = {
    "hosts.tasks.host_maintenance_task": {"queue": "lifecycle"},
    "hosts.tasks.*": {"queue": "inventory"},
    "vms.tasks.migration_*": {"queue": "migration"},
    "vms.tasks.*": {"queue": "lifecycle"},
    "jobs.*": {"queue": "lifecycle"},
    "dashboard.tasks.*": {"queue": "inventory"},
}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Auth ------------------------------------------------------------------------------------------
# Roles are groups (viewer, operator, admin: accounts/roles.py); permissions on chosen hosts or VMs
# are django-guardian object permissions; core/access.py is the one place that answers.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses locked-out sign-ins before any password check
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None  # guardian: anonymous visitors get nothing, so no anonymous user row
GUARDIAN_MONKEY_PATCH_USER = False
GUARDIAN_MONKEY_PATCH_GROUP = False
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "fleet"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# Sign-in throttling (django-axes): after AXES_FAILURE_LIMIT failures for one user name from one
# address, that pair waits AXES_COOLOFF_TIME; the sign-in page says how long.
AXES_FAILURE_LIMIT = env_int("VIRTFLEET_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("VIRTFLEET_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "core.net.client_ip"  # X-Forwarded-For only behind our own proxy
AXES_LOCKOUT_CALLABLE = "accounts.views.locked_out"
AXES_VERBOSE = False

# --- Personal API tokens (django-rest-knox): hashed at rest, several per user, expiring, revocable ---
KNOX_TOKEN_MODEL = "knox.AuthToken"  # noqa: S105 (a model name)
REST_KNOX = {
    "TOKEN_TTL": timedelta(days=90),  # the default; each token is created with its own lifetime
    "TOKEN_PREFIX": "vf_",  # recognisable in logs and by secret scanners
    "AUTO_REFRESH": False,
    "TOKEN_LIMIT_PER_USER": 50,
}

# --- Security (behind a TLS-terminating reverse proxy, set VIRTFLEET_BEHIND_PROXY=1) ---------------
BEHIND_PROXY = env_bool("VIRTFLEET_BEHIND_PROXY", False)
# How many proxies of ours append to X-Forwarded-For (the client is that many entries from the end).
PROXY_COUNT = max(1, env_int("VIRTFLEET_PROXY_COUNT", 1))
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = not DEBUG and env_bool("VIRTFLEET_SECURE_COOKIES", True)
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "core.middleware.csrf_failure"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
if BEHIND_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
# HSTS only where TLS is certain (the reverse proxy terminates it): browsers remember it.
SECURE_HSTS_SECONDS = env_int("VIRTFLEET_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("VIRTFLEET_HSTS_INCLUDE_SUBDOMAINS", False)


def _console_origins() -> list[str]:
    """Where the console page's websocket goes, for connect-src: the console proxy's port on this
    site's host names, or VIRTFLEET_CONSOLE_URL when it is a full ws(s):// URL. ('self' already
    covers ws(s):// to this origin: the live socket and a console published under a path.)"""
    from urllib.parse import urlsplit

    url = os.environ.get("VIRTFLEET_CONSOLE_URL", "")
    if url.startswith(("ws://", "wss://")):
        parts = urlsplit(url)
        return [f"{parts.scheme}://{parts.netloc}"]
    if url:
        return []
    port = env_int("VIRTFLEET_CONSOLE_PORT", 6080)
    if "*" in ALLOWED_HOSTS:
        names = ["*"]
    else:  # CSP host sources have no IPv6 literals; ".example.com" means its subdomains too
        names = [f"*{h}" if h.startswith(".") else h for h in ALLOWED_HOSTS if h and not h.startswith("[")]
    return [f"{scheme}://{name}:{port}" for name in names for scheme in ("ws", "wss")]


# Content Security Policy (django-csp): no inline script or style anywhere; the live socket and
# the console proxy are the only other places pages talk to.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'", *_console_origins()],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
        "base-uri": ["'self'"],
        "object-src": ["'none'"],
    }
}

# --- i18n / static ---------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = os.environ.get("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"  # collectstatic target (./virtfleet run); a reverse proxy may serve it
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [
    BASE_DIR / "static",
    # noVNC comes from npm (package.json), served as-is; never copied into the repository.
    ("novnc", BASE_DIR / "node_modules" / "@novnc" / "novnc"),
]
WHITENOISE_USE_FINDERS = DEBUG or LOCAL

# --- API -------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first: an unauthenticated call then gets 401 with "WWW-Authenticate: Token" (not 403).
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.auth.TokenAuthentication",  # Authorization: Token <personal API token>
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Virtfleet API",
    "DESCRIPTION": "Hosts, VMs and operations of a libvirt fleet.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],  # the schema is for signed-in users
    "ENUM_NAME_OVERRIDES": {
        "HostStateEnum": "hosts.models.HostState",
        "VMStateEnum": "vms.models.VMState",
        "JobStatusEnum": "jobs.models.JobStatus",
    },
}

# --- Virtfleet -------------------------------------------------------------------------------------
VIRTFLEET = {
    # libvirt connection: how long opening a host may take, keepalive interval / missed count
    "CONNECT_TIMEOUT": float(os.environ.get("VIRTFLEET_CONNECT_TIMEOUT", "8")),
    "KEEPALIVE_INTERVAL": env_int("VIRTFLEET_KEEPALIVE_INTERVAL", 3),
    "KEEPALIVE_COUNT": env_int("VIRTFLEET_KEEPALIVE_COUNT", 2),
    # the periodic safety-net resync of every host (seconds)
    "RESYNC_INTERVAL": env_int("VIRTFLEET_RESYNC_INTERVAL", 300),
    # DHCP leases: libvirt sends no event for them, so each host's leases are re-read this often (s)
    "LEASE_POLL": env_int("VIRTFLEET_LEASE_POLL", 10),
    # New VMs mirror their serial console to /var/log/libvirt/qemu/<name>.serial.log on their host
    # (virtlogd keeps and rotates it): what a guest printed before it hung or crashed stays readable.
    "SERIAL_LOG": os.environ.get("VIRTFLEET_SERIAL_LOG", "1") not in ("0", "false", "no"),
    # jobs: ACPI shutdown wait, power-button repeat, retries of transient failures
    "SHUTDOWN_TIMEOUT": env_int("VIRTFLEET_SHUTDOWN_TIMEOUT", 120),
    "SHUTDOWN_RESEND": env_int("VIRTFLEET_SHUTDOWN_RESEND", 10),
    "JOB_RETRIES": env_int("VIRTFLEET_JOB_RETRIES", 3),
    "JOB_RETRY_BACKOFF": float(os.environ.get("VIRTFLEET_JOB_RETRY_BACKOFF", "2")),
    # live migration: concurrent migrations per host (more wait in the queue and say so)
    "MIGRATION_MAX_OUTGOING": env_int("VIRTFLEET_MIGRATION_MAX_OUTGOING", 2),
    "MIGRATION_MAX_INCOMING": env_int("VIRTFLEET_MIGRATION_MAX_INCOMING", 2),
    "LAB_DIR": Path(os.environ.get("VIRTFLEET_LAB_DIR", VAR_DIR / "lab")),
    # console: single-use tickets live at most this long (seconds, capped at 30); the console proxy
    # (manage.py console_proxy) listens on CONSOLE_PORT; behind a reverse proxy set CONSOLE_URL to the
    # path (or full ws(s):// URL) where the proxy is published on the dashboard's own origin.
    "CONSOLE_TICKET_TTL": min(30, env_int("VIRTFLEET_CONSOLE_TICKET_TTL", 30)),
    "CONSOLE_PORT": env_int("VIRTFLEET_CONSOLE_PORT", 6080),
    "CONSOLE_URL": os.environ.get("VIRTFLEET_CONSOLE_URL", ""),
    # uploads: a job waiting for the browser's next chunk fails after this many seconds without one
    "UPLOAD_STALL_TIMEOUT": env_int("VIRTFLEET_UPLOAD_STALL_TIMEOUT", 600),
    # history retention in days (0 = keep for ever): finished jobs; audit events + console sessions
    "JOB_RETENTION_DAYS": max(0, env_int("VIRTFLEET_JOB_RETENTION_DAYS", 0)),
    "AUDIT_RETENTION_DAYS": max(0, env_int("VIRTFLEET_AUDIT_RETENTION_DAYS", 0)),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "daphne": {"level": "WARNING"},
    },
}
