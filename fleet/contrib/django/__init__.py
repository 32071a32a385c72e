"""Django support (`pip install fleet[django]`), in the shape Celery users know.

In `mysite/fleet.py` (imported from `mysite/__init__.py`)::

    import os
    from fleet import Fleet

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    app = Fleet("mysite")
    app.config_from_object("django.conf:settings", namespace="FLEET")
    app.autodiscover_tasks()

Then `fleet -A mysite worker`. With DJANGO_SETTINGS_MODULE set, every `Fleet` app gets
the Django fixup (`fleet.contrib.django.fixup`, installed as Celery installs its own):

* `FLEET_`-prefixed Django settings are the app's settings (`FLEET_BROKER_URL`, ...);
* `app.autodiscover_tasks()` imports the `tasks` module of every installed app, once Django
  is set up, when a node starts;
* tasks are `DjangoTask`s: `task.delay_on_commit(...)` sends after the transaction
  commits, never after a rollback;
* a node sets Django up before it imports tasks, closes its database connections before
  it forks children, and each child drops the connections it inherited (without touching
  the parent's) and closes unusable or expired ones (CONN_MAX_AGE) around every task, as
  Django does around every request.

Nothing here imports Django until it is used.
"""

from fleet.contrib.django.task import DjangoTask

__all__ = ["DjangoTask"]
