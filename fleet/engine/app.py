"""The app: settings, the task registry, and the connections to the broker and result store.

An app is an explicit object (`app = Fleet("proj")`) passed to whatever needs it. Only the
few entry points Celery users call without an app fall back on the current app (the last
created, or `app.set_default()`'s): see `fleet.engine.current`. Connections are opened
lazily and per process, so an app imported by a node's main process can be used safely in
its forked children.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from fleet.engine import current, hooks
from fleet.engine.settings import SETTINGS, Settings
from fleet.exceptions import NotRegistered
from fleet.operator_errors import AppLoadError, ConfigError

if TYPE_CHECKING:
    from fleet.engine.remote import Control
    from fleet.engine.results import AsyncResult, ResultBackend
    from fleet.engine.task import Task
    from fleet.engine.transport.base import Transport


class Fleet:
    """A task app.

    >>> app = Fleet("proj", broker="redis://127.0.0.1:6379/0")
    >>> @app.task
    ... def add(x, y):
    ...     return x + y
    """

    def __init__(self, main: str | None = None, broker: str | None = None,
                 backend: str | None = None, include: list[str] | tuple[str, ...] = (),
                 task_cls: type[Task] | None = None, **settings: Any):
        self.main = main
        self.conf = Settings()
        self.conf.update(settings)
        self.conf.setdefault_app("broker_url", broker)
        self.conf.setdefault_app("result_backend", backend)
        if include:
            self.conf.update(include=list(include))
        #: The class of this app's tasks (`@app.task(base=...)` overrides it per task);
        #: None: `fleet.engine.task.Task`.
        self.task_cls = task_cls
        self.tasks: dict[str, Task] = TaskRegistry(self)
        #: Where `autodiscover_tasks()` looks when given no packages (the Django fixup sets
        #: it to the installed apps): a callable returning package names, or None.
        self.default_packages: Callable[[], list[str]] | None = None
        self._autodiscover: list[tuple[Any, str]] = []
        self._connections: dict[str, Any] = {}
        self._pid = os.getpid()
        _install_fixups(self)
        current.app_created(self)  # after the fixups: shared tasks get the right task class

    def __repr__(self) -> str:
        return f"<Fleet {self.main or '__main__'}: {len(self.tasks)} tasks>"

    def set_default(self) -> Fleet:
        """Make this the app used where none is given (`signature(name)`, `AsyncResult(id)`,
        `@shared_task`), even when other apps are created later."""
        current.set_default(self)
        return self

    # -- configuration ----------------------------------------------------------------------

    def config_from_object(self, obj: str | object | Mapping[str, Any],
                           namespace: str | None = None) -> None:
        """Load settings from a mapping, an object, or a module: 'proj.settings', or
        'module:attribute' ('django.conf:settings').

        From objects and modules, every public lowercase attribute that is not a module,
        class or function is a setting, and an unknown one is an error naming the closest
        valid key (so a typo never silently does nothing). Celery's names (uppercase
        `BROKER_URL`, ...) are read as fleet's with a warning, or refused.

        With `namespace="FLEET"` only `FLEET_`-prefixed names are settings (`FLEET_BROKER_URL`
        is `broker_url`), as in Django's settings; Celery's own names there (`CELERY_...`,
        `BROKER_URL`) are read with a warning, or refused. A settings object that is not set
        up yet (Django's, while Django starts) is read when the settings are first used.
        """
        source = _import_source(obj) if isinstance(obj, str) else obj
        where = f"{obj if isinstance(obj, str) else _label(obj)}: "
        if getattr(source, "configured", True) is False:
            self.conf.defer(lambda: self._read_source(source, namespace, where))
            return
        self._read_source(source, namespace, where)
        self.close()

    def _read_source(self, source: Any, namespace: str | None, where: str) -> None:
        from fleet.engine.celery_names import lookup

        prefix = f"{namespace.upper()}_" if namespace else ""
        from_mapping = isinstance(source, Mapping)
        if from_mapping:
            items = dict(source)
        else:
            items = {name: getattr(source, name) for name in dir(source)
                     if not name.startswith("_") and _is_value(source, name)}
        values = {}
        for name, value in items.items():
            if prefix and name.startswith(prefix):
                key = name[len(prefix):]
                known = key.lower() in SETTINGS or lookup(key, SETTINGS) is None
                values[key.lower() if known else key] = value
            elif prefix:  # a Django setting; only Celery's own names concern us
                if name.startswith(("CELERY", "BROKER_")) and lookup(name, SETTINGS):
                    values[name] = value
            elif from_mapping or name == name.lower() or lookup(name, SETTINGS) is not None:
                values[name] = value  # (a module's other uppercase names are its own)
        self.conf.update(values, where=where, spelled=f"{prefix}{{}}" if prefix else "{}")

    @property
    def broker_url(self) -> str:
        from fleet.engine.transport import default_broker_url

        return self.conf.broker_url or default_broker_url()

    @property
    def result_backend_url(self) -> str:
        return self.conf.result_backend or self.broker_url

    # -- tasks ------------------------------------------------------------------------------

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: `@app.task` or `@app.task(name=..., bind=True)`.

        `base=MyTask` makes it an instance of that `Task` subclass (its handlers and class
        attributes apply); the default is the app's `task_cls`.
        """
        from fleet.engine.task import Task

        base = options.pop("base", None) or self.task_cls or Task
        if not (isinstance(base, type) and issubclass(base, Task)):
            raise TypeError(f"base= must be a subclass of fleet.Task, not {base!r}")

        def register(fun: Callable) -> Task:
            task = base(self, fun, **options)
            existing = self.tasks.get(task.name)
            if existing is not None and existing.fun is not fun and _same_code(existing.fun, fun):
                return existing  # the same module imported twice (e.g. as __main__ and by name)
            self.tasks[task.name] = task
            return task

        if args and callable(args[0]) and len(args) == 1 and not options:
            return register(args[0])
        if args:
            raise TypeError("use @app.task or @app.task(name=..., ...): options are keywords")
        return register

    def get_task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            from fleet.operator_errors import closest

            hint = closest(name, list(self.tasks))
            raise NotRegistered(
                f"unknown task {name!r}",
                f"did you mean {hint!r}?" if hint else
                f"registered: {', '.join(sorted(self.tasks)) or 'none'}",
            ) from None

    def import_includes(self) -> None:
        """Import the modules listed in `include`, then the autodiscovered ones, so their
        tasks are registered (a node does this as it starts)."""
        if hooks.import_modules.receivers:
            hooks.import_modules.send(sender=self)
        for module_name in self.conf.include:
            try:
                importlib.import_module(module_name)
            except ImportError as exc:
                raise AppLoadError(
                    f"cannot import {module_name!r} listed in include ({exc})",
                    "check the module path, and run from the directory that contains it",
                ) from exc
        for packages, related_name in self._autodiscover:
            self._discover(packages, related_name)

    def autodiscover_tasks(self, packages: Any = None, related_name: str = "tasks",
                           force: bool = False) -> None:
        """Import `<package>.tasks` of each package when the app's modules are imported
        (`import_includes`, as a node starts), or now with `force=True`; a package without
        such a module is skipped.

        `packages`: a list of package names, or a callable returning one (called then).
        None: Django's installed apps (with DJANGO_SETTINGS_MODULE set, see
        `fleet.contrib.django`).
        """
        self._autodiscover.append((packages, related_name))
        if force:
            self._discover(packages, related_name)

    def _discover(self, packages: Any, related_name: str) -> None:
        if packages is None:
            if self.default_packages is None:
                raise ConfigError("autodiscover_tasks() was given no packages, and there "
                                  "are no installed apps to look in (Django's)",
                                  "pass the packages: app.autodiscover_tasks(['proj.orders'])")
            packages = self.default_packages
        for package in packages() if callable(packages) else packages:
            module_name = f"{package}.{related_name}"
            try:
                importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name != module_name:
                    raise AppLoadError(f"cannot import {module_name} (autodiscovered): {exc}",
                                       "a module it imports is missing: install it") from exc

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,
                  **options: Any) -> AsyncResult:
        """Send a task by name (it need not be registered here)."""
        from fleet.engine.sending import send

        return send(self, name, args, kwargs, options, task=self.tasks.get(name))

    # -- results ----------------------------------------------------------------------------

    def AsyncResult(self, task_id: str) -> AsyncResult:
        from fleet.engine.results import AsyncResult

        return AsyncResult(task_id, app=self)

    def GroupResult(self, group_id: str, results: list[AsyncResult]) -> Any:
        from fleet.engine.results import GroupResult

        return GroupResult(group_id, results, app=self)

    # -- remote control ---------------------------------------------------------------------

    @property
    def control(self) -> Control:
        """Inspect and control the nodes over the broker (`app.control.ping()`, ...)."""
        control = self.__dict__.get("_control")
        if control is None:
            from fleet.engine.remote import Control

            control = self._control = Control(self)
        return control

    # -- connections ------------------------------------------------------------------------

    @property
    def broker(self) -> Transport:
        """The broker transport for this process (opened on first use)."""
        return self._connection("broker", self.broker_url)

    @property
    def result_store(self) -> Transport:
        url = self.result_backend_url
        if url == self.broker_url:
            return self.broker
        return self._connection("results", url)

    @property
    def backend(self) -> ResultBackend:
        backend = self._connections_for_pid().get("backend")
        if backend is None:
            from fleet.engine.results import ResultBackend

            backend = ResultBackend(self, self.result_store)
            self._connections["backend"] = backend
        return backend

    def _connections_for_pid(self) -> dict[str, Any]:
        if self._pid != os.getpid():  # forked: never reuse the parent's sockets
            self._connections = {}
            self._pid = os.getpid()
        return self._connections

    def _connection(self, role: str, url: str) -> Transport:
        connections = self._connections_for_pid()
        transport = connections.get(role)
        if transport is None or transport.url != url:
            from fleet.engine.transport import open_transport

            options = dict(self.conf.broker_transport_options)
            options.setdefault("prefix", self.conf.broker_key_prefix)
            options.setdefault("connect_timeout", self.conf.broker_connection_timeout)
            transport = open_transport(url, options)
            connections[role] = transport
        return transport

    def close(self) -> None:
        """Close this process's connections (they reopen on next use)."""
        connections = self._connections_for_pid()
        for role in ("broker", "results"):
            transport = connections.pop(role, None)
            if transport is not None:
                transport.close()
        connections.pop("backend", None)


class TaskRegistry(dict):
    """The app's tasks by name. Built-in tasks (`fleet.map`, `fleet.starmap`, used by
    `task.map`/`starmap`/`chunks`) are found by name but never listed, so they don't crowd
    banners and listings."""

    def __init__(self, app: Fleet):
        super().__init__()
        self._app = app
        self._builtins: dict[str, Task] = {}

    def __missing__(self, name: str) -> Task:
        task = self._builtins.get(name) or _builtin_task(self._app, name)
        if task is None:
            raise KeyError(name)
        self._builtins[name] = task
        return task

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


def _builtin_task(app: Fleet, name: str) -> Task | None:
    from fleet.engine.maptasks import MAP_TASK, STARMAP_TASK, run_map
    from fleet.engine.task import Task

    if name not in (MAP_TASK, STARMAP_TASK):
        return None

    def run(task: str, items: list) -> list:
        return run_map(app, task, items, star=name == STARMAP_TASK)

    return Task(app, run, name=name)


def _install_fixups(app: Fleet) -> None:
    """Django support, installed as Celery installs its Django fixup: when the environment
    names a Django settings module (DJANGO_SETTINGS_MODULE) and Django is installed. It
    sets the app's task class (`delay_on_commit`), where `autodiscover_tasks()` looks, and
    the hooks that set Django up and manage its database connections in nodes."""
    if os.environ.get("DJANGO_SETTINGS_MODULE"):
        from fleet.contrib.django.fixup import install

        install(app)


def _is_value(obj: object, name: str) -> bool:
    """Whether attribute `name` of a settings object or module is a value (not a module,
    class or function it happens to hold)."""
    import inspect

    value = getattr(obj, name)
    return not (inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value))


def _import_source(spec: str) -> Any:
    """The settings object named 'package.module' or 'package.module:attribute'."""
    module_name, _, attribute = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import settings module {module_name!r} ({exc})") from None
    if not attribute:
        return module
    try:
        return getattr(module, attribute)
    except AttributeError:
        raise ConfigError(f"settings module {module_name!r} has no attribute "
                          f"{attribute!r}") from None


def _label(obj: object) -> str:
    return getattr(obj, "__name__", type(obj).__name__)


def _same_code(first: Callable, second: Callable) -> bool:
    return getattr(first, "__code__", None) is not None and \
        getattr(first, "__qualname__", None) == getattr(second, "__qualname__", None)


# -- finding the app given with -A ---------------------------------------------------------

#: The modules of a package `-A proj` looks in, in order, when `proj` itself has no app.
APP_MODULES = ("fleet", "app", "tasks")


def load_app(spec: str, workdir: str | None = None) -> Fleet:
    """Find the app for `-A SPEC`: `proj`, `proj.tasks`, `proj:app`, `proj.module:attr`.

    Without `:attr`, the module's `app` attribute is used, else its only `Fleet` instance;
    for a package, then the same search in its modules `proj.fleet` (the conventional place,
    like Celery's `proj/celery.py`), `proj.app` and `proj.tasks`, in that order. The current
    directory (or `workdir`) is importable, as users expect from `-A proj`.
    """
    directory = os.path.abspath(workdir or os.getcwd())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_name, _, attr = spec.partition(":")
    module = _import_app_module(module_name, spec, directory)
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, Fleet):
            found = "nothing" if app is None else f"a {type(app).__name__}"
            raise AppLoadError(f"{module_name}.{attr} is {found}, not a Fleet app",
                               f"-A {module_name}:NAME must name a Fleet instance")
        return app
    app = _find_app(module)
    for submodule in APP_MODULES:
        if app is not None:
            break
        if hasattr(module, "__path__"):
            try:
                child = importlib.import_module(f"{module_name}.{submodule}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{module_name}.{submodule}":
                    raise AppLoadError(f"cannot import {module_name}.{submodule}: {exc}") from exc
                continue
            app = _find_app(child)
    if app is None:
        raise AppLoadError(
            f"no Fleet app found in {module_name!r}",
            f"define `app = Fleet(...)` in {module_name} (or in {module_name}.fleet, "
            f".app or .tasks), or name it: -A {module_name}:ATTRIBUTE",
        )
    return app


def _import_app_module(module_name: str, spec: str, directory: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise AppLoadError(
                f"cannot import app {spec!r}: no module named {exc.name!r} "
                f"(looked in {directory} and the Python path)",
                "run from the directory that contains it, or pass --workdir",
            ) from exc
        raise AppLoadError(f"cannot import app {spec!r}: {exc}",
                           "a module it imports is missing: install it") from exc
    except Exception as exc:  # any error while importing user code is an app load error
        raise AppLoadError(f"cannot import app {spec!r}: {type(exc).__name__}: {exc}") from exc


def _find_app(module: Any) -> Fleet | None:
    app = getattr(module, "app", None)
    if isinstance(app, Fleet):
        return app
    apps = {id(v): v for v in vars(module).values() if isinstance(v, Fleet)}
    if len(apps) == 1:
        return next(iter(apps.values()))
    return None


def known_settings() -> list[str]:
    return sorted(SETTINGS)
