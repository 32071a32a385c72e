"""The exceptions user code meets: what tasks raise and what clients catch.

`fleet.exceptions.TimeoutError`, `Retry`, `SoftTimeLimitExceeded`, `RemoteError`, ... mirror
the names Celery users know. Errors about running fleet itself (bad usage, bad settings, an
app that will not load, a path without permission), with their exit codes, live in
`fleet.operator_errors`; every exception here derives from its `FleetError` (except the two
raised inside a task to change its course), so the CLI reports any of them as one line.
"""

from __future__ import annotations

import builtins

from fleet.operator_errors import EXIT_BROKER, EXIT_DATA, FleetError

__all__ = [
    "BrokerDataError",
    "BrokerUnavailable",
    "CeleryNameWarning",
    "EncodeError",
    "MaxRetriesExceededError",
    "MessageDecodeError",
    "NoAppError",
    "NotRegistered",
    "RemoteError",
    "Retry",
    "SoftTimeLimitExceeded",
    "TaskRevokedError",
    "Terminated",
    "TimeLimitExceeded",
    "TimeoutError",
    "WorkerLostError",
]


class TimeoutError(FleetError, builtins.TimeoutError):  # the documented public name
    """`AsyncResult.get(timeout=...)` gave up waiting."""


class EncodeError(FleetError, TypeError):
    """Task arguments or a task's return value cannot be encoded as JSON."""


class MessageDecodeError(FleetError):
    """A message on a queue is not a valid fleet message (moved to the dead-letter queue)."""


class NotRegistered(FleetError, KeyError):
    """No task of that name is registered with the app."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return FleetError.__str__(self)


class NoAppError(FleetError, RuntimeError):
    """A call that names no app (`signature(name)`, `AsyncResult(id)`, a `shared_task`) found
    no app in this process: create one, or call `app.set_default()`."""


class CeleryNameWarning(UserWarning):
    """A setting was given by one of Celery's names: it was read as fleet's name for it."""


class BrokerUnavailable(FleetError, ConnectionError):
    """The broker could not be reached (after retrying, where retrying applies)."""

    exit_code = EXIT_BROKER


class BrokerDataError(FleetError):
    """The broker holds something fleet cannot use (not what fleet wrote there): a stored
    result that is not a result, a key of the wrong type, a row with wrong values. The
    broker is reachable; retrying does not help until the entry is removed."""

    exit_code = EXIT_DATA


class RemoteError(FleetError):
    """A task failed with an exception whose type cannot be imported on this side.

    Carries the remote type name, its message and the remote traceback text.
    """

    def __init__(self, exc_type: str, exc_message: str, traceback: str | None = None):
        super().__init__(f"{exc_type}: {exc_message}" if exc_message else exc_type)
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback


class WorkerLostError(FleetError):
    """The process running the task died (killed, out of memory, node shut down cold)."""


class TaskRevokedError(FleetError):
    """The task was revoked before or while it ran."""


class Retry(Exception):  # the conventional name, raised by `task.retry()`
    """Raised inside a task by `self.retry()`: the worker schedules the next attempt."""

    def __init__(self, message: str = "", exc: BaseException | None = None,
                 when: float | None = None):
        super().__init__(message or (f"Retry in {when}s" if when is not None else "Retry"))
        self.exc = exc
        self.when = when


class SoftTimeLimitExceeded(Exception):  # celery users know this name
    """Raised inside a task when its soft time limit passes; the task may catch it."""


class TimeLimitExceeded(FleetError):  # celery users know this name
    """The task ran past its hard time limit and its process was killed.

    `TimeLimitExceeded(0.3)`: the one argument is the limit in seconds (`.seconds`)."""

    def __init__(self, seconds: float | str, hint: str | None = None,
                 exit_code: int | None = None):
        self.seconds = seconds
        text = f"hard time limit ({seconds:g}s) exceeded" if isinstance(seconds, int | float) \
            else str(seconds)
        super().__init__(text, hint, exit_code)
        self.args = (seconds,)


class MaxRetriesExceededError(FleetError):  # celery users know this name
    """`self.retry()` was called with no `exc` after the task's last allowed retry."""


class Terminated(BaseException):  # BaseException so `except Exception` can't eat it
    """Raised inside a task whose process was asked to stop it (revoke with terminate)."""
