"""The current app, and `shared_task`: what Celery-style code uses where it names no app.

fleet passes its app explicitly everywhere inside (no hidden global, celery issue 953). A
few entry points Celery users call without an app fall back on `current_app()`: a
`signature("proj.tasks.add", ...)` sent without `app=`, `AsyncResult(id)`,
`GroupResult.restore(id)`, and tasks made with `@shared_task` (for reusable packages and
Django apps, which must not import the project's app). That fallback is this module.

The current app is the one made default with `app.set_default()`, else the last `Fleet`
created in this process (kept weakly: an app nobody holds is not current).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleet.exceptions import NoAppError

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.task import Task

_default: Fleet | None = None
_last: weakref.ref[Fleet] | None = None
#: Every live app, so a shared task defined later is registered with each of them.
_apps: weakref.WeakSet[Fleet] = weakref.WeakSet()
#: Every `@shared_task` defined so far, registered with each new app.
_shared: list[SharedTask] = []


def current_app() -> Fleet:
    """The app used where none is given: `app.set_default()`'s, else the last created.

    Only Celery's app-less entry points use it (see the module docstring); a missing app
    is an error that says how to fix it, never a silently made one.
    """
    app = _default if _default is not None else (_last() if _last is not None else None)
    if app is None:
        raise NoAppError(
            "no fleet app in this process to use here",
            "create one first (app = Fleet(\"proj\")) or import the module that does, "
            "call app.set_default() on the one to use, or pass app=... explicitly")
    return app


def app_created(app: Fleet) -> None:
    """Called by every new `Fleet`: it is the last created, and gets the shared tasks."""
    global _last
    _last = weakref.ref(app)
    _apps.add(app)
    for shared in _shared:
        shared.bind(app)


def set_default(app: Fleet | None) -> None:
    """Make `app` the current app whatever is created later (None: back to the last one)."""
    global _default
    _default = app


class SharedTask:
    """A task made with `@shared_task`: registered with every app (present and future),
    and, when used, the task of that name in the current app."""

    def __init__(self, fun: Callable, options: dict[str, Any]):
        self.fun = fun
        self.options = options
        self._tasks: weakref.WeakKeyDictionary[Fleet, Task] = weakref.WeakKeyDictionary()
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", "shared_task")
        self.__module__ = getattr(fun, "__module__", None)
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<shared task {getattr(self.fun, '__module__', '?')}.{self.__name__}>"

    def bind(self, app: Fleet) -> Task:
        """The task in `app`, registered there first if need be."""
        task = self._tasks.get(app)
        if task is None:
            task = app.task(**self.options)(self.fun)
            self._tasks[app] = task
        return task

    @property
    def task(self) -> Task:
        """The task in the current app."""
        return self.bind(current_app())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.task, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(*args, **kwargs)


def shared_task(*args: Any, **options: Any) -> Any:
    """`@shared_task` or `@shared_task(bind=True, ...)`: a task for code that does not know
    the app (a reusable package, a Django app). It is registered with every app, those that
    exist and those created later; `task.delay(...)` and the rest use the current app."""

    def make(fun: Callable) -> SharedTask:
        shared = SharedTask(fun, options)
        _shared.append(shared)
        for app in list(_apps):
            shared.bind(app)
        return shared

    if args and callable(args[0]) and len(args) == 1 and not options:
        return make(args[0])
    if args:
        raise TypeError("use @shared_task or @shared_task(name=..., ...): options are keywords")
    return make
