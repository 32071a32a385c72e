"""Logging for nodes: the node name and process role in every line, to a file or stderr.

    [2026-11-22 10:00:00,123: INFO/w1@host main] Task proj.tasks.add[7c6e...] received

Each process of a node (main, and every pool child) opens the log file itself, after
expanding `%i`/`%I` with its own pool index, so `--logfile=%n%I.log` gives `w1.log` for the
main process and `w1-1.log`, `w1-2.log` for the children.
"""

from __future__ import annotations

import logging
import os
import sys

from fleet.masking import mask_text
from fleet.nodenames import format_node

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
          "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL,
          "fatal": logging.CRITICAL}


def parse_level(name: str | int) -> int:
    if isinstance(name, int):
        return name
    try:
        return LEVELS[name.lower()]
    except KeyError:
        from fleet.operator_errors import UsageError

        raise UsageError(f"unknown log level {name!r}",
                         f"use one of {', '.join(sorted(set(LEVELS) - {'warn', 'fatal'}))}"
                         ) from None


class _FdStream:
    """A minimal text stream over a raw fd (O_APPEND): one write() per log record."""

    def __init__(self, fd: int):
        self.fd = fd

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        while data:
            written = os.write(self.fd, data)
            data = data[written:]

    def flush(self) -> None:
        return None

    def fileno(self) -> int:
        return self.fd


class MaskingFormatter(logging.Formatter):
    """Masks the password of any URL in a log line (and its traceback): whatever logs a
    broker URL, a log file never holds it in clear (fleet.masking)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_text(super().format(record))


def setup_logging(nodename: str, role: str, level: int, logfile_template: str | None,
                  index: int = 0, per_thread: bool = False) -> int | None:
    """Configure the root logger for one process of a node; return the log file's fd.

    `per_thread`: the role is the logging thread's name (the solo and threads pools run
    tasks on threads named "thread N" in the main process).

    When the `setup_logging` hook has receivers, they configure logging instead (with the
    level, the log file name for this process and fleet's format) and None is returned.
    """
    from fleet.daemon import open_log_file
    from fleet.engine import hooks

    label = f"{nodename} {role}".replace("%", "%%")
    if per_thread:
        label = nodename.replace("%", "%%") + " %(threadName)s"
    line_format = f"[%(asctime)s: %(levelname)s/{label}] %(message)s"
    if hooks.setup_logging.receivers:
        logfile = format_node(logfile_template, nodename, index) if logfile_template else None
        hooks.setup_logging.send(loglevel=level, logfile=logfile, format=line_format,
                                 colorize=False)
        return None
    fd = None
    if logfile_template:
        fd = open_log_file(format_node(logfile_template, nodename, index))
        stream = _FdStream(fd)
    else:
        stream = sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(MaskingFormatter(line_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return fd
