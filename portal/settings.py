"""Django settings, read from the environment.

Every value comes from an environment variable (see README.md and .env.example). A missing or
malformed value stops the process at start with a message that names the variable. A secret
may also be given as ``<NAME>_FILE``: the path of a file holding it.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from portal.config import KNOWN_DEMO_SECRETS, ConfigError, Env, generated_secret, is_loopback_host

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR: Path = Path(os.environ.get("PORTAL_VAR_DIR", BASE_DIR / "var"))

env = Env()

# --- core -----------------------------------------------------------------------------------
# PORTAL_DEMO turns on the conveniences of the local demo (plain-http cookies, the local mailbox,
# the emulator's defaults, keys generated in the var folder). It never turns off a check: sign-in,
# policy and Graph calls take the same code path in the demo, in the tests and in production. It
# is refused unless the tenant is the emulator's on loopback (below, after the Entra settings).
DEMO = env.bool("PORTAL_DEMO", default=False)
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# The demo's own keys live here, random per var folder (never a constant of the repository).
DEMO_SECRETS_DIR = VAR_DIR / "secrets"
SECRET_KEY = env.secret("DJANGO_SECRET_KEY", default=None)
if not SECRET_KEY:
    if not DEMO:
        raise ConfigError("DJANGO_SECRET_KEY", "is required outside the demo (PORTAL_DEMO=1)")
    SECRET_KEY = generated_secret(DEMO_SECRETS_DIR / "django-secret-key")
if not DEMO and len(SECRET_KEY) < 50:
    raise ConfigError("DJANGO_SECRET_KEY", "must be at least 50 characters long")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"] if DEMO else [])
if not ALLOWED_HOSTS:
    raise ConfigError("ALLOWED_HOSTS", "is required outside the demo (comma-separated host names)")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_auth_adfs",
    "portal",
    "accounts",
    "audit",
    "outbox",
    "roles",
    "mfa",
    "bulk",
    "preflight",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "portal.security.SecurityHeadersMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The agent of this request draws its own fair share of the Graph budget (graph.budget).
    "portal.graph_client.AgentFairShareMiddleware",
    "accounts.middleware.RoleRecheckMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"

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
                "accounts.context_processors.portal_roles",
            ],
        },
    },
]

# --- database and Redis -----------------------------------------------------------------------
VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'portal.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Threads and processes (the worker in tests) must see the same test database: a file.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = str(VAR_DIR / "test.sqlite3")
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
if not REDIS_URL:
    raise ConfigError(
        "REDIS_URL",
        "is required (make run and make test start an embedded Redis when it is unset)",
    )

CACHES = {
    "default": {
        # Django's Redis cache, with one client per pool instead of one per call.
        "BACKEND": "portal.cache_backend.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "portal",
        # Not pickle: whoever can write to Redis must not be able to run code in the portal.
        "OPTIONS": {"serializer": "portal.cache_serializer.JsonSerializer"},
    }
}
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- Celery -------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
# JSON only, as Celery's default, said here so that no change of default lets a message from
# Redis be unpickled: a task's arguments are primary keys and plain values.
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_RESULT_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None  # outcomes live in the database, never in Celery results
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A task cut off by a lost broker connection is redelivered (acks_late) rather than left to
# finish unacknowledged; the conditional claim and the lease make the second run safe.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_DEFAULT_QUEUE = "interactive"
CELERY_TASK_QUEUES_NAMES = ["interactive", "bulk", "sync"]
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600, "queue_order_strategy": "priority"}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE: dict[str, Any] = {}

# --- Entra ID and Microsoft Graph ----------------------------------------------------------------
ENTRA_TENANT_ID = env.str("ENTRA_TENANT_ID", default="")
ENTRA_CLIENT_ID = env.str("ENTRA_CLIENT_ID", default="")
ENTRA_CLIENT_SECRET = env.secret("ENTRA_CLIENT_SECRET", default=None) or ""
ENTRA_CLIENT_CERT_PATH = env.str("ENTRA_CLIENT_CERT_PATH", default="")
ENTRA_LOGIN_HOST = env.str("ENTRA_LOGIN_HOST", default="login.microsoftonline.com")
GRAPH_URL = env.url_str("GRAPH_URL", default="https://graph.microsoft.com")
ENTRA_CA_BUNDLE = env.str("ENTRA_CA_BUNDLE", default="")
# The egress proxy of every call to the login host and Graph (sign-in, tokens, Graph): the
# standard HTTPS_PROXY / NO_PROXY (lower-case names first, as curl and requests read them), read
# here once; nothing else in the environment is (REQUESTS_CA_BUNDLE never replaces
# ENTRA_CA_BUNDLE). The demo ignores both: its emulator is on loopback, which no proxy reaches.
ENTRA_HTTPS_PROXY = ""
ENTRA_NO_PROXY = ""
if not DEMO:
    ENTRA_HTTPS_PROXY = os.environ.get("https_proxy") or env.str("HTTPS_PROXY", default="")
    ENTRA_NO_PROXY = os.environ.get("no_proxy") or env.str("NO_PROXY", default="")
if ENTRA_HTTPS_PROXY:
    try:
        _proxy = urlsplit(ENTRA_HTTPS_PROXY)
        _proxy_ok = bool(_proxy.scheme in {"http", "https"} and _proxy.hostname and _proxy.port)
    except ValueError:
        _proxy_ok = False
    if not _proxy_ok:
        # Not repeated in the message: the URL may carry the proxy's password.
        raise ConfigError("HTTPS_PROXY", "must be http://[user:password@]host:port")
GRAPH_TIMEOUT_SECONDS = env.float("GRAPH_TIMEOUT_SECONDS", default=15.0)
GRAPH_MAX_RETRIES = env.int("GRAPH_MAX_RETRIES", default=4)
GRAPH_MAX_RETRY_WAIT_SECONDS = env.float("GRAPH_MAX_RETRY_WAIT_SECONDS", default=60.0)
# The shared budget: requests per window for each throttling class (GRAPH.md, "Throttling").
GRAPH_BUDGET_REPORTS = env.str("GRAPH_BUDGET_REPORTS", default="5/10")
GRAPH_BUDGET_IDENTITY = env.str("GRAPH_BUDGET_IDENTITY", default="3500/10")
GRAPH_INTERACTIVE_RESERVE = env.int("GRAPH_INTERACTIVE_RESERVE", default=1)
# The tokens a bulk operation leaves in each bucket for agents (at most all but one).
GRAPH_BULK_RESERVE = env.int("GRAPH_BULK_RESERVE", default=4)
# /readyz fails when calls wait on a class and nothing was granted for this long, or a 429 pause
# has more than this left (portal/health.py).
GRAPH_BUDGET_STALL_SECONDS = env.float("GRAPH_BUDGET_STALL_SECONDS", default=120.0)
if not GRAPH_BUDGET_STALL_SECONDS > 0:
    raise ConfigError("GRAPH_BUDGET_STALL_SECONDS", "must be a number of seconds above 0")

for _name in ("ENTRA_TENANT_ID", "ENTRA_CLIENT_ID"):
    if not globals()[_name]:
        raise ConfigError(_name, "is required (the demo sets it to the emulator's tenant)")
if not (ENTRA_CLIENT_SECRET or ENTRA_CLIENT_CERT_PATH):
    raise ConfigError(
        "ENTRA_CLIENT_SECRET",
        "or ENTRA_CLIENT_CERT_PATH is required: the portal's app credential",
    )
if ENTRA_CLIENT_CERT_PATH and not Path(ENTRA_CLIENT_CERT_PATH).is_file():
    raise ConfigError("ENTRA_CLIENT_CERT_PATH", f"names no file: {ENTRA_CLIENT_CERT_PATH}")

# The demo drops Secure cookies and HSTS, keeps mail in a page every role can open and generates
# its keys: it runs only against the emulator's tenant on this machine, never a real one.
if DEMO:
    from portal.devrun import DEMO_TENANT_ID

    _why = "when PORTAL_DEMO=1 (the demo runs only against the Entra emulator on this machine)"
    if ENTRA_TENANT_ID.strip().lower() != DEMO_TENANT_ID:
        raise ConfigError(
            "ENTRA_TENANT_ID", f"must be the emulator's tenant {DEMO_TENANT_ID} {_why}"
        )
    if not is_loopback_host(ENTRA_LOGIN_HOST):
        raise ConfigError(
            "ENTRA_LOGIN_HOST", f"must be a loopback host, not {ENTRA_LOGIN_HOST!r}, {_why}"
        )
    if not is_loopback_host(urlsplit(GRAPH_URL).netloc):
        raise ConfigError("GRAPH_URL", f"must be on a loopback host, not {GRAPH_URL!r}, {_why}")


# --- the portal's own keys --------------------------------------------------------------------
def _own_key(name: str, value: str | None, *, demo_file: str) -> str:
    """A key with a secret of its own: required outside the demo, generated per var folder in it;
    never DJANGO_SECRET_KEY (a leak of one must not open the other)."""
    if not value:
        if not DEMO:
            raise ConfigError(
                name,
                "is required outside the demo (PORTAL_DEMO=1): at least 32 random characters, "
                'e.g. python -c "import secrets; print(secrets.token_urlsafe(48))"',
            )
        value = generated_secret(DEMO_SECRETS_DIR / demo_file)
    if len(value) < 32:
        raise ConfigError(name, "must be at least 32 characters long")
    if value == SECRET_KEY:
        raise ConfigError(name, "must not be DJANGO_SECRET_KEY: each key has its own secret")
    return value


# Encrypts a freshly issued Temporary Access Pass while it waits in Redis (mfa.tap_vault).
PORTAL_TAP_VAULT_KEY = _own_key(
    "PORTAL_TAP_VAULT_KEY",
    env.secret("PORTAL_TAP_VAULT_KEY", default=None),
    demo_file="tap-vault-key",
)
# Keys the stored HMAC of each one-time verification code (mfa.verification).
PORTAL_VERIFICATION_HMAC_KEY = _own_key(
    "PORTAL_VERIFICATION_HMAC_KEY",
    env.secret("PORTAL_VERIFICATION_HMAC_KEY", default=None),
    demo_file="verification-hmac-key",
)
if PORTAL_VERIFICATION_HMAC_KEY == PORTAL_TAP_VAULT_KEY:
    raise ConfigError("PORTAL_VERIFICATION_HMAC_KEY", "must differ from PORTAL_TAP_VAULT_KEY")
# A value published in this repository (the demo's, a placeholder) is no secret. The system
# check portal.E001 (manage.py check, migrate) also looks for every secret in the repo's files.
# (The emulator's ENTRA_CLIENT_SECRET is left to that check: no real tenant accepts it.)
if not DEMO:
    for _name, _value in (
        ("DJANGO_SECRET_KEY", SECRET_KEY),
        ("PORTAL_TAP_VAULT_KEY", PORTAL_TAP_VAULT_KEY),
        ("PORTAL_VERIFICATION_HMAC_KEY", PORTAL_VERIFICATION_HMAC_KEY),
    ):
        if _value in KNOWN_DEMO_SECRETS:
            raise ConfigError(_name, "is a published demo value: set a secret of your own")

AUTHENTICATION_BACKENDS = ["accounts.backends.PortalAdfsBackend"]
LOGIN_URL = "django_auth_adfs:login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

PORTAL_ROLE_CLAIMS = {
    "Helpdesk.Agent": "Agent",
    "Helpdesk.Lead": "Lead",
    "Helpdesk.Admin": "Admin",
    "Helpdesk.Responder": "Responder",
}

AUTH_ADFS: dict[str, Any] = {
    "SETTINGS_CLASS": "accounts.adfs.PortalAdfsSettings",
    "TENANT_ID": ENTRA_TENANT_ID,
    "CLIENT_ID": ENTRA_CLIENT_ID,
    "CLIENT_SECRET": ENTRA_CLIENT_SECRET,
    "RELYING_PARTY_ID": ENTRA_CLIENT_ID,
    # The v2.0 endpoints: https://{host}/{tenant}/v2.0/.well-known/openid-configuration.
    "VERSION": "v2.0",
    # A token for the portal's own API carries the person's app roles; openid and profile bring
    # the id_token (its nonce is checked) with the display name.
    "SCOPES": ["openid", "profile", f"api://{ENTRA_CLIENT_ID}/.default"],
    # v2.0 access tokens name the client id; v1.0 ones (accessTokenAcceptedVersion unset) the
    # Application ID URI.
    "AUDIENCE": [ENTRA_CLIENT_ID, f"api://{ENTRA_CLIENT_ID}"],
    "CA_BUNDLE": ENTRA_CA_BUNDLE or True,
    "USERNAME_CLAIM": "oid",
    "GUEST_USERNAME_CLAIM": "oid",
    "CLAIM_MAPPING": {"email": "preferred_username"},
    "GROUPS_CLAIM": "roles",
    "MIRROR_GROUPS": False,
    "CREATE_NEW_USERS": True,
    "LOGIN_EXEMPT_URLS": [],
    "TIMEOUT": GRAPH_TIMEOUT_SECONDS,
    "RETRIES": 2,
}

# --- sessions, cookies and headers -------------------------------------------------------------
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=8 * 3600)
# A signed-in person's portal roles and accountEnabled are read again from Graph at most this
# often (accounts.middleware); a removed role or a disabled account ends the session.
PORTAL_ROLE_RECHECK_SECONDS = env.int("PORTAL_ROLE_RECHECK_SECONDS", default=300)
if PORTAL_ROLE_RECHECK_SECONDS < 1:
    raise ConfigError("PORTAL_ROLE_RECHECK_SECONDS", "must be at least 1")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"  # the sign-in redirect back from Entra is a top-level GET
SESSION_COOKIE_SECURE = not DEMO
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SECURE = not DEMO
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SECURE_HSTS_SECONDS = 0 if DEMO else env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEMO
# The preload flag only allows a submission to the browsers' preload list (hstspreload.org);
# `check --deploy` expects it in production. Set SECURE_HSTS_PRELOAD=0 for a host whose
# subdomains are not all on HTTPS.
SECURE_HSTS_PRELOAD = (not DEMO) and env.bool("SECURE_HSTS_PRELOAD", default=True)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEMO)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
if env.bool("SECURE_PROXY_SSL_HEADER", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Addresses or networks of the reverse proxies in front of the portal (gunicorn's
# --forwarded-allow-ips takes the same value). An audit event's source IP is read from
# X-Forwarded-For right to left, skipping these; anyone else's header is ignored.
PORTAL_TRUSTED_PROXIES = env.list("PORTAL_TRUSTED_PROXIES", default=["127.0.0.1", "::1"])
try:
    PORTAL_TRUSTED_PROXY_NETWORKS = tuple(
        ipaddress.ip_network(item, strict=False) for item in PORTAL_TRUSTED_PROXIES
    )
except ValueError as _exc:
    raise ConfigError(
        "PORTAL_TRUSTED_PROXIES",
        f"must list IP addresses or networks such as 10.0.0.0/8 ('*' is not allowed): {_exc}",
    ) from _exc

# --- email --------------------------------------------------------------------------------------
_email = env.email_url("EMAIL_URL", default="" if DEMO else "smtp://localhost:25")
if _email:
    vars().update(_email)
else:
    # The demo keeps every email in the database and shows it at /mailbox/.
    EMAIL_BACKEND = "mfa.mailbox.MailboxBackend"
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="MFA helpdesk <helpdesk@localhost>")

# --- static files, i18n -------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
LANGUAGE_CODE = "en-gb"
TIME_ZONE: str = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Credentials never reach a handler, even at DEBUG (django-auth-adfs logs the access token).
    "filters": {"redact_credentials": {"()": "portal.log_redaction.RedactCredentials"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; keep it quiet so no query ever lands in a log.
        "urllib3": {"level": "WARNING", "filters": ["redact_credentials"]},
        "msal": {"level": "WARNING", "filters": ["redact_credentials"]},
        "django_auth_adfs": {"filters": ["redact_credentials"]},
    },
}


# The apps' settings live beside this file (portal/settings_apps.py).
from portal.settings_apps import *  # noqa: E402, F403
