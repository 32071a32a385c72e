"""Errors for the operator, and the exit codes they end a command with.

Everything that goes wrong in running fleet (bad usage, an invalid setting, an app that will
not load, a path without permission) is a `FleetError` from here. The exceptions that task
code and clients handle (`TimeoutError`, `Retry`, ...) are in `fleet.exceptions`; they derive
from `FleetError` too, so one handler in the CLI reports any of them.

A `FleetError` carries what happened (`message`), what to do about it (`hint`) and the exit
code the CLI should use. The CLI prints ``fleet: <message> <hint>`` as one line on stderr.
Exit codes live here, in one place, so scripts and supervisors can rely on them.
"""

from __future__ import annotations

from fleet.masking import mask_text

EXIT_OK = 0
EXIT_FAILURE = 1  #: a command ran and something it did failed (a task failed, a node FAILED)
EXIT_USAGE = 2  #: bad arguments, bad node specs, unknown options (click's own code too)
EXIT_NOT_RUNNING = 3  #: `fleet multi status`: not every node is running (LSB convention)
EXIT_APP_LOAD = 4  #: the app given with -A cannot be imported or found
EXIT_DATA = 65  #: the broker holds data fleet cannot use (sysexits EX_DATAERR)
EXIT_UNAVAILABLE = 69  #: remote control: no node replied (sysexits EX_UNAVAILABLE)
EXIT_SOFTWARE = 70  #: an internal error in fleet itself
EXIT_CANT_CREATE = 73  #: a pid file is held by a running node, or a file cannot be created
EXIT_BROKER = 75  #: the broker stayed unreachable (sysexits EX_TEMPFAIL: try again later)
EXIT_PERMISSION = 77  #: a path we need is not writable (sysexits EX_NOPERM)
EXIT_CONFIG = 78  #: invalid settings or configuration file (sysexits EX_CONFIG)


class FleetError(Exception):
    """An error meant for the operator: one line, with the fix."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def one_line(self) -> str:
        """The message and hint as a single line (newlines folded) for stderr."""
        text = f"{self.message}; {self.hint}" if self.hint else self.message
        return mask_text(" ".join(text.split()))


class UsageError(FleetError):
    exit_code = EXIT_USAGE


class ConfigError(FleetError):
    """A setting or configuration file is invalid (unknown key, wrong type, bad value)."""

    exit_code = EXIT_CONFIG


class AppLoadError(FleetError):
    exit_code = EXIT_APP_LOAD


class PermissionProblem(FleetError):
    exit_code = EXIT_PERMISSION


def describe_failure(exc: BaseException) -> tuple[str, int]:
    """The line (after `fleet: `) and the exit code a command ends with when `exc` escapes
    it: a FleetError says what it says; anything else is a broker failing mid-command, or a
    bug in fleet."""
    if isinstance(exc, FleetError):
        return exc.one_line(), exc.exit_code
    module = type(exc).__module__
    text = mask_text(" ".join(str(exc).split()))[:500] or type(exc).__name__
    if is_broker_data_error(exc):
        return (f"broker data error: {type(exc).__name__}: {text}; the broker holds an entry "
                "fleet cannot use (written by something else?): the node logs and the "
                "dead-letter queue (`fleet queues`) name it", EXIT_DATA)
    if module.startswith(("redis", "sqlite3")) or isinstance(exc, ConnectionError):
        return (f"broker error: {type(exc).__name__}: {text}; check that the broker is "
                "reachable and try again", EXIT_BROKER)
    return (f"internal error: {type(exc).__name__}: {text}; this is a bug in fleet: run again "
            "with FLEET_DEBUG=1 for the traceback and report it", EXIT_SOFTWARE)


#: Broker errors that are about the data, not about reaching the broker: a Redis error reply
#: (WRONGTYPE, a failing script, ...) and SQLite errors other than "busy"/"cannot open".
_DATA_ERRORS = {"redis.exceptions": ("ResponseError", "DataError", "InvalidResponse"),
                "sqlite3": ("DatabaseError", "IntegrityError", "DataError", "ProgrammingError",
                            "InterfaceError", "NotSupportedError")}


def is_broker_data_error(exc: BaseException) -> bool:
    """Whether `exc` is the broker answering with (or about) data fleet cannot use, as
    opposed to the broker being out of reach. Matched by name: this module imports nothing."""
    if isinstance(exc, UnicodeDecodeError):
        return True
    for cls in type(exc).__mro__:
        names = _DATA_ERRORS.get(cls.__module__, ())
        if cls.__name__ in names:
            return True
        if cls.__module__ == "sqlite3" and cls.__name__ == "OperationalError":
            return "could not decode" in str(exc).lower()
    return False


def closest(word: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """The candidate most like `word`, for did-you-mean hints (None when nothing is close)."""
    import difflib  # only needed on the error path; keeps startup fast

    matches = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None
