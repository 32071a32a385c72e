"""The Django fixup: what an app gets when DJANGO_SETTINGS_MODULE names a Django project.

`install(app)` is called by every new `Fleet` while DJANGO_SETTINGS_MODULE is set (see
`fleet.engine.app`). It makes `DjangoTask` the app's task class (unless the app has one),
points `autodiscover_tasks()` at Django's installed apps, and connects these hooks (once
per process, whatever the number of apps):

    import_modules       (node, before it imports tasks)  django.setup()
    worker_init          (node main process)               django.setup(); close its
                                                            connections, so no child
                                                            inherits an open one
    worker_process_init  (each child, after fork)          drop inherited connections
                                                            without closing them
    task_prerun/postrun  (where the task runs)             close connections that are
                                                            unusable or past CONN_MAX_AGE

A connection a child inherited shares its socket with the parent (and with its sibling
children): closing it would end the parent's session (PostgreSQL's Terminate message) and
using it would mix two processes' traffic. So the child forgets it: the wrapper gets a new
connection on first use, and the old one is kept referenced (never finalised, which would
close it) until the child exits.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

#: Database connections this process inherited at fork, kept so they are never finalised.
_inherited: list[Any] = []


def install(app: Fleet) -> None:
    """Give `app` the Django integration (nothing if Django is not installed)."""
    if importlib.util.find_spec("django") is None:
        return
    if app.task_cls is None:
        from fleet.contrib.django.task import DjangoTask

        app.task_cls = DjangoTask
    if app.default_packages is None:
        app.default_packages = installed_packages
    for hook, receiver in ((hooks.import_modules, _on_import_modules),
                           (hooks.worker_init, _on_worker_init),
                           (hooks.worker_process_init, _on_worker_process_init),
                           (hooks.task_prerun, _close_old_connections),
                           (hooks.task_postrun, _close_old_connections)):
        hook.connect(receiver, dispatch_uid=f"fleet.contrib.django:{hook.name}")


def setup() -> None:
    """`django.setup()`, once (the apps registry is then ready)."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def installed_packages() -> list[str]:
    """The package of every installed Django app (where `autodiscover_tasks()` looks)."""
    from django.apps import apps

    setup()
    return [config.name for config in apps.get_app_configs()]


def _connections() -> list[Any]:
    from django.db import connections

    try:
        return list(connections.all(initialized_only=True))
    except TypeError:  # Django < 4.1: every alias
        return list(connections.all())


def _on_import_modules(**_: Any) -> None:
    setup()


def _on_worker_init(**_: Any) -> None:
    setup()
    for connection in _connections():
        connection.close()


def _on_worker_process_init(**_: Any) -> None:
    for connection in _connections():
        if connection.connection is not None:
            _inherited.append(connection.connection)
            connection.connection = None
        connection.run_on_commit = []
        connection.health_check_done = False


def _close_old_connections(**_: Any) -> None:
    from django.db import close_old_connections

    close_old_connections()
