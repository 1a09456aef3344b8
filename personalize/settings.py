"""Django settings, read from the environment with safe local defaults.

Every variable is listed in README.md ("Configuration"). Local development needs none of them: the
database is SQLite under var/, the secret key is generated once into var/, Redis is on 127.0.0.1.
"""

import os
import secrets
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return default if value in (None, "") else int(value)


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return default if value in (None, "") else float(value)


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("VAR_DIR") or BASE_DIR / "var")
DEBUG = env_bool("DEBUG", True)


def _secret_key() -> str:
    """The configured key; in DEBUG only, one generated once into var/ so sessions survive restarts."""
    key = os.environ.get("SECRET_KEY")
    if key:
        return key
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "personalize",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "personalize.middleware.RequestSizeLimitMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "personalize.urls"
WSGI_APPLICATION = "personalize.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one SQLite file locally: wait for locks instead of failing at once. In WAL
    # mode readers never wait for the writer, and a commit appends to the log instead of writing, syncing
    # and deleting a rollback journal (synchronous=NORMAL: an application crash loses nothing committed,
    # an OS crash at most the last commits, and the file is never corrupted). Connections are kept like
    # PostgreSQL's: a new one per request re-read the schema and, as the last one to close, checkpointed
    # the log every time (together ~2 ms of every prediction's CPU).
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or VAR_DIR / "static")
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")


def media_storage(bucket: str) -> dict:
    """Media (photos, thumbnails, published model files): every read and write goes through Django's
    storage API (default_storage, FileField), so web and workers on different machines share it by
    configuration. Without MEDIA_S3_BUCKET: files under MEDIA_ROOT (one machine, or one shared mount).
    With it: an S3-compatible bucket through django-storages; credentials come from boto3's usual chain
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, an instance role, ...). docs/deployment.md has the details."""
    if not bucket:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": os.environ.get("MEDIA_S3_ENDPOINT_URL") or None,  # MinIO, Ceph, R2, ...
            "region_name": os.environ.get("MEDIA_S3_REGION") or None,
            "location": os.environ.get("MEDIA_S3_PREFIX", ""),
            "default_acl": None,  # private objects; the bucket's own policy applies
            "file_overwrite": False,  # a name in use gets a new one, as on the file system
        },
    }


STORAGES = {
    "default": media_storage(os.environ.get("MEDIA_S3_BUCKET", "")),
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Uploads: Django keeps bodies up to this size in memory and streams larger ones to a temporary file.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_BYTES", 60 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_UPLOAD_BYTES
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
MAX_BULK_UPLOAD_BYTES = env_int("MAX_BULK_UPLOAD_BYTES", 500 * 1024 * 1024)
MAX_IMAGE_PIXELS = env_int("MAX_IMAGE_PIXELS", 50_000_000)

# The editors' web app (personalize/web.py) signs in with Django sessions.
LOGIN_URL = "web:signin"
LOGIN_REDIRECT_URL = "web:pairs"

# Security: production values whenever DEBUG is off (`manage.py check --deploy` passes).
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Health probes and metrics scrapes come over plain HTTP from inside the deployment.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "personalize.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {
        "uploads": os.environ.get("THROTTLE_UPLOADS", "600/hour"),
        "predictions": os.environ.get("THROTTLE_PREDICTIONS", "6000/hour"),
        "auth": os.environ.get("THROTTLE_AUTH", "30/minute"),
    },
    # Anonymous throttles (login) count per client address. DRF's default (None) takes the whole
    # X-Forwarded-For header, which any client writes itself: a new value per request would reset the
    # login throttle. 0 uses the connection's address; N trusts the address the N-th proxy appended.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Personalize API",
    "DESCRIPTION": "Learns each photo editor's personal editing style and serves it as slider values.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["personalize.api_urls.drop_trailing_slash_duplicates"],
    # /api/docs/ loads Swagger UI from this server's static files (drf-spectacular-sidecar, its version
    # pinned with the package), not from a CDN at whatever version is latest: it works without internet.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}

# Throttle counters must be shared by every web process in production: CACHE_URL=redis://host:6379/1
# (a Redis database of its own, apart from the broker's). Locally a per-process memory cache is enough.
CACHE_URL = os.environ.get("CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
    if CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# Celery: the broker is Redis; the job row in the database, not the broker, is the source of truth.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or REDIS_URL
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or REDIS_URL
# Longer than any training job may run (hard limit), so Redis never redelivers a live task.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", 2 * 3600)

# Training.
MIN_PAIRS_FOR_TRAINING = env_int("MIN_PAIRS_FOR_TRAINING", 10)
TRAINING_DEFAULT_SECONDS = env_int("TRAINING_DEFAULT_SECONDS", 60)
TRAINING_MAX_SECONDS = env_int("TRAINING_MAX_SECONDS", 3600)
JOB_MAX_ATTEMPTS = env_int("JOB_MAX_ATTEMPTS", 3)
JOB_TIME_LIMIT_MARGIN = env_int("JOB_TIME_LIMIT_MARGIN", 300)  # soft time limit = budget + this + ...
# ... this per pair: the instant model before RL is not bounded by the budget, and costs ~0.14 s a pair on
# one idle core (bench/bench_instant.py: 138 s for 1,000 pairs)
JOB_SECONDS_PER_PAIR = env_float("JOB_SECONDS_PER_PAIR", 0.5)
JOB_LEASE_SECONDS = env_int("JOB_LEASE_SECONDS", 30)
JOB_HEARTBEAT_SECONDS = env_float("JOB_HEARTBEAT_SECONDS", 1.0)
# Training checkpoints stay on the worker's own disk (docs/deployment.md says why); default VAR_DIR/checkpoints.
CHECKPOINT_DIR = os.environ.get("CHECKPOINT_DIR", "")
SWEEP_INTERVAL_SECONDS = env_float("SWEEP_INTERVAL_SECONDS", 15.0)
QUEUED_RESEND_SECONDS = env_int("QUEUED_RESEND_SECONDS", 300)
MODEL_CACHE_SIZE = env_int("MODEL_CACHE_SIZE", 64)
# The shared base model: predictions for editors without a personal model, and the start of fine-tuning.
# Default: the one shipped in rlcore; point it at a base retrained on your own library (docs/agent.md).
BASE_MODEL_PATH = os.environ.get("BASE_MODEL_PATH", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# Tests against SQLite use a file, not memory, so that real worker processes see the same database.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
