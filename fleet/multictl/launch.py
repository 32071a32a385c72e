"""Starting nodes for `fleet multi`: run each node's `fleet worker --detach` in parallel and
wait, on one readiness pipe per node, until it consumes or says why it cannot.

A launcher that runs this very interpreter is forked rather than started afresh (ten new
interpreters importing fleet were most of what `multi start 10` cost): the fork reads the
node's recorded command line back into `WorkerOptions` (with the worker's option table) and
runs the node as `fleet worker` would (fleet.worker_setup.run), as if exec'd: the recorded
argv, directory and environment, and none of multi's descriptors. A command line that does
not read back (another executable, an option `fleet worker` would refuse) is run as a new
program, so `fleet worker` itself explains what is wrong with it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psutil

from fleet.daemon import INHERITED_ENV, log_tail
from fleet.masking import mask_argv, mask_text
from fleet.multictl.state import NodeRecord
from fleet.worker_setup.handshake import READY_ENV, Outcome
from fleet.worker_setup.options import WorkerOptions, options_from_argv

DEFAULT_START_TIMEOUT = 60.0
START_PROGRESS_EVERY = 2.0


@dataclass(frozen=True)
class Event:
    """One thing that happened to one node, for the CLI to render."""

    node: str
    kind: str  #: ok, failed, running, signal, down, killed, stale, waiting, info
    text: str = ""
    details: tuple[str, ...] = ()  #: e.g. the last lines of the node's log


Report = Callable[[Event], None]


def ignore(event: Event) -> None:
    """The default report: say nothing."""
    return None


@dataclass
class StartResult:
    record: NodeRecord
    ok: bool
    already_running: bool = False
    reason: str = ""
    log: list[str] = field(default_factory=list)


@dataclass
class _Launch:
    record: NodeRecord
    pid: int  #: the launcher (`fleet worker --detach`), our child; exits once detached
    read_fd: int  #: the readiness pipe
    output_fd: int  #: the launcher's stdout and stderr (usage errors before it detached)
    buffer: bytes = b""
    outcome: Outcome = field(default_factory=Outcome)


def launch_all(records: Sequence[NodeRecord], env: dict[str, str] | None, timeout: float,
                report: Report) -> list[StartResult]:
    launches = []
    results = []
    forked = [record for record in records if _forkable(record) is not None]
    if len(forked) > 1:
        _preload(forked, os.environ if env is None else env)
    for record in records:
        try:
            launches.append(_launch(record, env))
        except OSError as exc:
            reason = f"cannot run {record.argv[0]} in {record.workdir}: {exc.strerror}"
            results.append(_failed(record, reason, report))
    results += _wait_ready(launches, time.monotonic() + timeout, report)
    return results


def _preload(records: Sequence[NodeRecord], env: Mapping[str, str]) -> None:
    """Import once, here, what every forked node would import itself: the node's engine and
    the transports its broker URLs name (redis-py alone costs a node ~0.3 s of CPU).
    Modules only: no connection is opened and no user code (the app) is imported."""
    import importlib

    from fleet.engine.transport import transport_module

    modules = {"fleet.engine.worker", "fleet.engine.app", "fleet.worker_setup.run",
               "fleet.worker_setup.detach"}
    urls = [env.get("FLEET_BROKER_URL", ""), env.get("FLEET_RESULT_BACKEND", "")]
    urls += [arg.partition("=")[2] for record in records for arg in record.argv
             if arg.startswith(("--broker=", "--result-backend="))]
    urls += _config_urls(records, env)
    for url in urls:
        module = transport_module(url) if url else None
        if module:
            modules.add(module)
    for module in sorted(modules):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)


def _config_urls(records: Sequence[NodeRecord], env: Mapping[str, str]) -> list[str]:
    """Broker and backend URLs from the fleet.toml files the nodes will read."""
    from pathlib import Path

    from fleet.config_file import load_config

    paths = {arg.partition("=")[2] for record in records for arg in record.argv
             if arg.startswith("--config=")}
    paths |= {env["FLEET_CONFIG"]} if env.get("FLEET_CONFIG") else \
        {str(Path(record.workdir) / "fleet.toml") for record in records}
    urls = []
    for path in paths:
        with contextlib.suppress(Exception):  # a bad file is the node's to report
            if Path(path).is_file():
                config = load_config(Path(path))
                urls += [config.broker or "", config.result_backend or ""]
    return urls


def _launch(record: NodeRecord, env: dict[str, str] | None) -> _Launch:
    """Run the node's `fleet worker --detach` with a readiness pipe in $FLEET_READY_FD."""
    read_fd, write_fd = os.pipe()
    output_read, output_write = os.pipe()
    environment = dict(os.environ if env is None else env)
    environment[READY_ENV] = str(write_fd)
    options = _forkable(record)
    try:
        if options is not None:
            pid = _fork_launcher(record, options, environment, write_fd, output_write)
        else:
            pid = subprocess.Popen(record.argv, cwd=record.workdir, env=environment,
                                   pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                   stdout=output_write, stderr=output_write).pid
    except OSError:
        os.close(read_fd)
        os.close(output_read)
        raise
    finally:
        os.close(write_fd)
        os.close(output_write)
    os.set_blocking(read_fd, False)
    os.set_blocking(output_read, False)
    return _Launch(record, pid, read_fd, output_read)


def shell_command(record: NodeRecord, environ: Mapping[str, str], reveal: bool = False) -> str:
    """One shell line that runs the node as `start` runs it (`fleet multi get`): into its
    directory, with the environment it gets from multi (`environ`: the FLEET_* variables and
    PYTHONPATH; what else a node needs is in its argv), then its recorded command, every part
    quoted for a POSIX shell. Passwords are masked unless `reveal` (the operator asked)."""
    variables = [f"{name}={value}" for name, value in sorted(environ.items())
                 if (name.startswith("FLEET_") or name == "PYTHONPATH") and
                 name not in (READY_ENV, INHERITED_ENV)]
    argv = list(record.argv)
    if not reveal:
        variables, argv = mask_argv(variables), mask_argv(argv)
    line = f"cd {shlex.quote(record.workdir)} && "
    if variables:
        line += shlex.join(["env", *variables]) + " "
    return line + shlex.join(argv)


def _forkable(record: NodeRecord) -> WorkerOptions | None:
    """The node's options when it runs with this very interpreter and its command line
    reads back: then fork instead of starting a new interpreter."""
    if record.argv[:3] != [os.path.abspath(sys.executable), "-m", "fleet"] or \
            not os.path.isdir(record.workdir):
        return None
    return options_from_argv(record.argv[3:])


def _fork_launcher(record: NodeRecord, options: WorkerOptions, environment: dict[str, str],
                   ready_fd: int, output_fd: int) -> int:
    """Fork, and run the recorded `fleet worker --detach ...` in the child as if exec'd.

    Starting ten interpreters (and importing fleet ten times) was most of the CPU a
    `multi start 10` cost; a fork of this process already has both. The child sees the
    recorded argv, directory and environment, so a later HUP re-exec runs the same command.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        keep = sorted({0, 1, 2, ready_fd})
        for low, high in itertools.pairwise([*keep, os.sysconf("SC_OPEN_MAX")]):
            os.closerange(low + 1, high)  # none of multi's other pipes leak into the node
        if sys.path and sys.path[0] in ("", os.getcwd()):  # as `python -m` there would
            sys.path[0] = record.workdir
        os.chdir(record.workdir)
        _claim_process_title()
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = ["fleet", *record.argv[3:]]
        from fleet.worker_setup.run import run_worker_reporting

        code = run_worker_reporting(options)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return 0  # not reached


def _wait_ready(launches: list[_Launch], deadline: float, report: Report) -> list[StartResult]:
    results = []
    next_progress = time.monotonic() + START_PROGRESS_EVERY
    with selectors.DefaultSelector() as selector:
        for launch in launches:
            selector.register(launch.read_fd, selectors.EVENT_READ, launch)
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_progress:
                next_progress = now + START_PROGRESS_EVERY
                starting = [key.data.record.name for key in selector.get_map().values()]
                report(Event(", ".join(starting), "waiting",
                             f"{len(starting)} node(s) to consume"))
            events = selector.select(max(0.0, min(deadline, next_progress) - now))
            for key, _ in events:
                launch = key.data
                if _read_some(launch):
                    selector.unregister(launch.read_fd)
                    results.append(_finish(launch, report))
        for key in list(selector.get_map().values()):
            launch = key.data
            selector.unregister(launch.read_fd)
            results.append(_finish(launch, report, timed_out=True))
    return results


def _read_some(launch: _Launch) -> bool:
    """Read what the node's launcher said; True when its outcome is known."""
    try:
        chunk = os.read(launch.read_fd, 4096)
    except BlockingIOError:
        return False
    if chunk:
        launch.buffer += chunk
        *lines, launch.buffer = launch.buffer.split(b"\n")
        for line in lines:
            launch.outcome.feed(line.decode(errors="replace"))
        return launch.outcome.ready
    if launch.buffer:
        launch.outcome.feed(launch.buffer.decode(errors="replace"))
    return True


def _finish(launch: _Launch, report: Report, timed_out: bool = False) -> StartResult:
    os.close(launch.read_fd)
    record, outcome = launch.record, launch.outcome
    launcher_code = _reap(launch.pid)
    said = _read_available(launch.output_fd).decode(errors="replace").strip()
    os.close(launch.output_fd)
    if outcome.ready and outcome.pid:
        process = _alive(outcome.pid)
        if process is not None:
            record.pid, record.create_time = outcome.pid, process.create_time()
            record.started = datetime.now(UTC).isoformat(timespec="seconds")
            report(Event(record.name, "ok", f"pid {record.pid}"))
            return StartResult(record, True)
        reason = f"it was ready (pid {outcome.pid}) but exited at once"
    elif timed_out:
        reason = "not consuming yet after the timeout; it may still be starting (see its log," \
                 " `fleet multi status`), or give a longer --timeout"
    elif said and launcher_code:
        reason = f"its launcher exited with code {launcher_code}: {said.splitlines()[-1]}"
        _note_in_log(record, said)
    else:
        reason = outcome.describe()
    return _failed(record, reason, report)


def _alive(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        return None if process.status() == psutil.STATUS_ZOMBIE else process
    except psutil.Error:
        return None


def _claim_process_title() -> None:
    """Let setproctitle take over argv's memory now, while the environment is untouched:
    it relocates the environment first, and gives up (titles never change, so `ps` and
    multi's identity check would not see the node) if the environment was rebuilt before."""
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.getproctitle()


def _reap(pid: int, within: float = 5.0) -> int | None:
    """The launcher's exit code (it exits as soon as the node has detached)."""
    deadline = time.monotonic() + within
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def _read_available(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return data


def _note_in_log(record: NodeRecord, text: str) -> None:
    """The node never got to its log (bad option, unwritable path): keep the reason there."""
    from fleet.daemon import open_log_file
    from fleet.operator_errors import FleetError

    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    line = f"[{stamp}: fleet multi] {record.name} did not start: {mask_text(text)}\n"
    try:  # never through a link, and as root never into a directory another user can write
        fd = open_log_file(record.main_log)
    except (OSError, FleetError):
        return
    try:
        os.write(fd, line.encode("utf-8", "replace"))
    except OSError:
        pass
    finally:
        os.close(fd)


def _failed(record: NodeRecord, reason: str, report: Report) -> StartResult:
    tail = log_tail(record.main_log)
    report(Event(record.name, "failed", reason, tuple(tail)))
    return StartResult(record, False, reason=reason, log=tail)
