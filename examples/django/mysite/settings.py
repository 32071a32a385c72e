"""Settings of the example project: Django's own, and fleet's as FLEET_ names."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = ["shop"]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("MYSITE_DB", str(BASE_DIR / "db.sqlite3")),
    },
}

# -- fleet: read by app.config_from_object("django.conf:settings", namespace="FLEET") ------
# The broker: the embedded SQLite broker when unset; e.g. "redis://127.0.0.1:6379/0".
FLEET_BROKER_URL = os.environ.get("MYSITE_BROKER_URL")
FLEET_TIMEZONE = TIME_ZONE
FLEET_TASK_ACKS_LATE = True  # an order is confirmed again if its node dies mid-way
FLEET_RESULT_EXPIRES = 3600
