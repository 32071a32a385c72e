"""The app: settings, the task registry, and the connections to the broker and result store.

An app is an explicit object (`app = Fleet("proj")`) passed to whatever needs it; there is no
hidden global "current app". Connections are opened lazily and per process, so an app
imported by a node's main process can be used safely in its forked children.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

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
                 **settings: Any):
        self.main = main
        self.conf = Settings()
        self.conf.update(settings)
        self.conf.setdefault_app("broker_url", broker)
        self.conf.setdefault_app("result_backend", backend)
        if include:
            self.conf.update(include=list(include))
        self.tasks: dict[str, Task] = TaskRegistry(self)
        self._connections: dict[str, Any] = {}
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"<Fleet {self.main or '__main__'}: {len(self.tasks)} tasks>"

    # -- configuration ----------------------------------------------------------------------

    def config_from_object(self, obj: str | object | Mapping[str, Any]) -> None:
        """Load settings from a mapping, an object, or a module path ('proj.settings').

        From objects and modules, every public lowercase attribute that is not a module,
        class or function is a setting, and an unknown one is an error naming the closest
        valid key (so a typo never silently does nothing).
        """
        if isinstance(obj, str):
            try:
                obj = importlib.import_module(obj)
            except ImportError as exc:
                raise ConfigError(f"cannot import settings module {obj!r} ({exc})") from None
        if isinstance(obj, Mapping):
            values = dict(obj)
        else:
            values = {name: getattr(obj, name) for name in dir(obj) if _is_setting_attr(obj, name)}
        where = f"{getattr(obj, '__name__', type(obj).__name__)}: "
        self.conf.update(values, where=where)
        self.close()

    @property
    def broker_url(self) -> str:
        from fleet.engine.transport import default_broker_url

        return self.conf.broker_url or default_broker_url()

    @property
    def result_backend_url(self) -> str:
        return self.conf.result_backend or self.broker_url

    # -- tasks ------------------------------------------------------------------------------

    def task(self, *args: Any, **options: Any) -> Any:
        """Register a function as a task: `@app.task` or `@app.task(name=..., bind=True)`."""
        from fleet.engine.task import Task

        def register(fun: Callable) -> Task:
            task = Task(self, fun, **options)
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
        """Import the modules listed in `include`, so their tasks are registered."""
        for module_name in self.conf.include:
            try:
                importlib.import_module(module_name)
            except ImportError as exc:
                raise AppLoadError(
                    f"cannot import {module_name!r} listed in include ({exc})",
                    "check the module path, and run from the directory that contains it",
                ) from exc

    def send_task(self, name: str, args: Any = None, kwargs: Any = None,
                  **options: Any) -> AsyncResult:
        """Send a task by name (it need not be registered here)."""
        from fleet.engine.sending import send

        return send(self, name, args, kwargs, options, task=self.tasks.get(name))

    # -- results ----------------------------------------------------------------------------

    def AsyncResult(self, task_id: str) -> AsyncResult:
        from fleet.engine.results import AsyncResult

        return AsyncResult(task_id, app=self)

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


def _is_setting_attr(obj: object, name: str) -> bool:
    import inspect

    if name.startswith("_") or name != name.lower():
        return False
    value = getattr(obj, name)
    return not (inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value))


def _same_code(first: Callable, second: Callable) -> bool:
    return getattr(first, "__code__", None) is not None and \
        getattr(first, "__qualname__", None) == getattr(second, "__qualname__", None)


# -- finding the app given with -A ---------------------------------------------------------

def load_app(spec: str, workdir: str | None = None) -> Fleet:
    """Find the app for `-A SPEC`: `proj`, `proj.tasks`, `proj:app`, `proj.module:attr`.

    Without `:attr`, the module's `app` attribute is used, else its only `Fleet` instance,
    else the same search in the submodules `proj.app`, `proj.tasks` and `proj.fleet`. The
    current directory (or `workdir`) is importable, as users expect from `-A proj`.
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
    for submodule in ("app", "tasks", "fleet"):
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
            f"define `app = Fleet(...)` in {module_name} (or {module_name}.tasks), "
            f"or name it: -A {module_name}:ATTRIBUTE",
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
