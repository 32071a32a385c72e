"""The project's fleet app: settings from Django's (FLEET_ names), tasks from every
installed app's tasks.py. Run a node with `fleet -A mysite worker -l info`."""

import os

from fleet import Fleet

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

app = Fleet("mysite")
app.config_from_object("django.conf:settings", namespace="FLEET")
app.autodiscover_tasks()
