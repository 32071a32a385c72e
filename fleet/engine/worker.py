"""A node's main process: one single-threaded loop that alone talks to the broker.

(With --pool solo or threads, tasks run on other threads of this process; the loop keeps
its own, so nothing below changes: see fleet.engine.pools.)

Each turn of the loop waits (selectors) on: the signal pipe, every child's result pipe, and
the broker subscription (broadcasts and new-message wakeups), with a timeout set by the next
thing due (an ETA, a time limit, a heartbeat, a timer). Then it:

1. handles what arrived: signals, task outcomes from children, broadcasts;
2. moves due ETA tasks to the ready buffer and enforces time limits;
3. dispatches ready tasks to idle children, one task per child, honouring rate limits;
4. reserves more messages when the buffer runs low (prefetch = concurrency x multiplier);
5. commits everything the turn produced (results, acks, retries) in one batch.

Delivery: a reserved message stays reserved until its task finished and its result is
stored; early-acked tasks are only marked started (so a dead node's running task is reported
lost, not re-run), acks-late tasks are re-run. Shutdown returns every unstarted message.

This module owns the loop, its timers and hooks, the lifecycle (start, readiness, close) and
the signals. The work is done by the node's parts in `fleet.engine.node` (see its package
docstring): the jobs they share, the broker consumer, the dispatch buffer, the children, the
settler and shutdown.
"""

from __future__ import annotations

import collections
import faulthandler
import logging
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet import __version__
from fleet.daemon import PidFile
from fleet.engine import hooks
from fleet.engine.autoscale import Autoscaler
from fleet.engine.log import setup_logging
from fleet.engine.node import followups, hook_calls
from fleet.engine.node.children import Children
from fleet.engine.node.consumer import Consumer, connect_with_retry
from fleet.engine.node.dispatch import Dispatcher
from fleet.engine.node.jobs import COLD, RUNNING, STOPPED, WARM, Job, Jobs
from fleet.engine.node.settle import Settler, format_runtime
from fleet.engine.node.shutdown import Shutdown, _same_command, restart_in_place
from fleet.engine.pools import PREFORK, check_limits, check_pool, in_process
from fleet.engine.transport import mask_url
from fleet.operator_errors import ConfigError, FleetError
from fleet.signals import SignalRecorder, signal_name

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

#: Names that moved to the node's parts, importable from here as before.
__all__ = ["COLD", "RUNNING", "STOPPED", "WARM", "Job", "Node", "NodeOptions",
           "_same_command", "connect_with_retry", "format_runtime", "restart_in_place",
           "set_title"]

log = logging.getLogger("fleet.worker")

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


@dataclass
class NodeOptions:
    nodename: str
    queues: list[str]
    concurrency: int
    loglevel: int = logging.WARNING
    logfile: str | None = None
    pidfile: str | None = None
    prefetch_multiplier: int = 4
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    send_events: bool = False
    #: (max, min) children for autoscaling (`--autoscale MAX,MIN`), or None.
    autoscale: tuple[int, int] | None = None
    #: Where tasks run: prefork (children), solo or threads (threads of the main process);
    #: see fleet.engine.pools for what each can apply.
    pool: str = PREFORK
    #: Called once the node is consuming (readiness handshakes: detach, sd_notify).
    on_ready: list[Callable[[Node], None]] = field(default_factory=list)


class Node:
    """One node: run it with `Node(app, options).run()`, which returns the exit code.

    Its parts: `jobs` (what it holds), `consumer` (the broker), `dispatcher` (the dispatch
    buffer), `children` (the pool), `settler` (outcomes into commits), `shutdown`.
    """

    def __init__(self, app: Fleet, options: NodeOptions):
        check_pool(options.pool, "pool")
        given = [name for name, value in vars(options).items() if value is not None]
        check_limits(options.pool, options, app.conf, given)
        self.app = app
        self.options = options
        self.name = options.nodename
        self.conf = app.conf
        self.state = RUNNING
        self.exit_code = 0
        self.restart_requested = False
        self.ready = False  #: every child came up once: consuming
        self.started_at = time.time()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalRecorder()
        self.pidfile: PidFile | None = None
        self.log_fd: int | None = None
        #: Extension points, called in the main loop (never from a signal handler):
        #: "ready"(node), "received"(node, job), "started"(node, job),
        #: "settled"(node, job, state, header), "committed"(node, batch) once a batch's
        #: results and acks are in the store, "broadcast"(node, channel, payload),
        #: "heartbeat"(node), "shutdown"(node, how), "rejected"(node, delivery, reason) when a
        #: message goes to the dead-letter queue, "lost"(node, message, meta) for a task that
        #: was running on a dead node (found by recovery). Remote control, events and workflows
        #: plug in here instead of growing the loop.
        self.hooks: dict[str, list[Callable[..., None]]] = collections.defaultdict(list)
        #: Timers run by the loop: each callback gets `now` (time.monotonic()) and returns
        #: when it wants to run next (a monotonic time). Embedded beat and autoscaling use it.
        self.timers: list[list] = []  # [due, callback]
        self.jobs = Jobs(self.conf.worker_revokes_max)
        self.consumer = Consumer(self)
        self.settler = Settler(self)
        self.children = Children(self)
        self.dispatcher = Dispatcher(self)
        self.shutdown = Shutdown(self)
        followups.attach(self)  # main-process failures follow their workflow
        hook_calls.attach(self)  # fleet.hooks of the main process

    # == lifecycle =============================================================================

    def run(self) -> int:
        """Start, loop until shut down, clean up; return the exit code."""
        try:
            self.start()
            self.loop()
        finally:
            self.close()
        if self.restart_requested and self.exit_code == 0:
            restart_in_place()
        return self.exit_code

    def start(self) -> None:
        set_title(f"fleet worker {self.name} main")
        threads = in_process(self.options.pool)
        if threads:  # log lines say which thread: main, or the task's "thread N"
            threading.current_thread().name = "main"
        self.log_fd = setup_logging(self.name, "main", self.options.loglevel,
                                    self.options.logfile, index=0, per_thread=threads)
        if hooks.worker_init.receivers:
            hooks.worker_init.send(sender=self)
        self.signals.install(HANDLED_SIGNALS)
        self.selector.register(self.signals, selectors.EVENT_READ, self._on_signals)
        if self.options.pidfile:
            self.pidfile = PidFile(self.options.pidfile, self.name)
            self.pidfile.acquire()
        self._check_pool_size()
        self.consumer.connect(self.signals)
        if self.options.autoscale:
            maximum, minimum = self.options.autoscale
            scaler = Autoscaler(self, maximum, minimum, self.conf.worker_autoscale_keepalive)
            scaler.attach()
            self.options.concurrency = scaler.initial
        self.children.start()
        self._print_banner()

    def _check_pool_size(self) -> None:
        """-c and --autoscale's maximum within worker_max_concurrency, or a ConfigError."""
        most = self.children.most
        asked = max(self.options.concurrency, (self.options.autoscale or (0, 0))[0])
        if asked > most:
            raise ConfigError(
                f"a pool of {asked} children is over worker_max_concurrency ({most})",
                "give a smaller -c or --autoscale maximum, or raise worker_max_concurrency "
                "(fleet.toml or FLEET_WORKER_MAX_CONCURRENCY) if this machine can run that many")

    def become_ready(self) -> None:
        """Every child is up: the node consumes from now on."""
        self.ready = True
        self.consumer.next_heartbeat = 0.0  # tell the broker (and `fleet worker --check`) now
        log.warning("%s ready: consuming %s with %s", self.name,
                    ", ".join(self.consumer.queues), self.children.describe())
        for hook in self.options.on_ready:
            hook(self)
        self.emit("ready")

    def after_fork(self) -> None:
        """In a new child: drop the main process's selector, pipes and log fd."""
        self.selector.close()
        self.signals.close()
        if self.log_fd is not None:
            os.close(self.log_fd)

    def close(self) -> None:
        """Final cleanup, whatever happened: return what we hold, release the pid file."""
        if self.children.pool is not None:
            self.children.kill_and_reap()
        if self.consumer.broker is not None:
            self.shutdown.return_unstarted()
            self.consumer.close()
        if self.pidfile is not None:
            if self.restart_requested and self.exit_code == 0:
                self.pidfile.keep_across_exec()  # same pid, same lock: never "stopped"
            else:
                self.pidfile.release()
        self.signals.restore()
        if self.state == STOPPED:
            log.info("%s stopped.", self.name)

    # == hooks and timers ======================================================================

    def add_timer(self, callback: Callable[[float], float], due: float = 0.0) -> None:
        """Run `callback(now)` in the loop at `due` (monotonic), then when it says next."""
        self.timers.append([due, callback])

    def _run_timers(self, now: float) -> None:
        for timer in self.timers:
            if now >= timer[0]:
                timer[0] = timer[1](now)

    def emit(self, event: str, *args: Any) -> None:
        """Call the hooks of `event`; a failing hook is logged, never fatal to the node."""
        for hook in self.hooks.get(event, ()):
            try:
                hook(self, *args)
            except self.consumer.errors() as exc:
                self.consumer.trouble(f"{event} hook", exc, side_work=True)
            except Exception:
                log.exception("%s: the %r hook %s failed", self.name, event,
                              getattr(hook, "__qualname__", hook))

    # == the loop ==============================================================================

    def loop(self) -> None:
        while self.state != STOPPED:
            timeout = self._timeout()
            for key, _ in self.selector.select(timeout):
                key.data()
            self._turn()

    def _timeout(self) -> float:
        """Seconds until the next thing due (at most one)."""
        now = time.monotonic()
        deadlines = self.consumer.deadlines(now)
        deadlines += self.dispatcher.deadlines(now)
        deadlines += self.children.deadlines()
        deadlines += self.shutdown.deadlines(now)
        deadlines += [timer[0] for timer in self.timers]
        return max(0.0, min(min(deadlines) - now, 1.0))

    def _turn(self) -> None:
        now = time.monotonic()
        consumer, children, jobs = self.consumer, self.children, self.jobs
        if now >= consumer.next_heartbeat:
            children.check_boot_timeouts(now)
            consumer.heartbeat(now)
        consumer.poll_subscription(now)
        if self.timers:
            self._run_timers(now)
        if jobs.scheduled:
            jobs.release_due()
        if jobs.active:
            children.enforce_time_limits(now)
        if children.pool.terminating:
            children.pool.escalate(now)
        if jobs.buffer and jobs.active:
            self.dispatcher.release_hostages(now)
        if children.spawn_not_before and now >= children.spawn_not_before:
            children.spawn_not_before = 0.0
            children.fill()
        self.dispatcher.dispatch()
        consumer.exchange(now)
        if self.state != RUNNING:
            self.shutdown.progress(now)

    # == signals (recorded by the handler, acted on here) ======================================

    def _on_signals(self) -> None:
        for signum in self.signals.drain():
            handler = getattr(self, f"handle_{signal_name(signum).lower()}", None)
            if handler is not None:
                handler()

    def handle_chld(self) -> None:
        self.children.reap()

    def handle_term(self) -> None:
        self.shutdown.begin(WARM, "TERM")

    def handle_int(self) -> None:
        if self.state == RUNNING:
            log.warning("Warm shutdown (INT): press Ctrl-C again for a cold shutdown that "
                        "stops running tasks")
            self.shutdown.begin(WARM, "INT")
        else:
            self.shutdown.begin(COLD, "second INT")

    def handle_quit(self) -> None:
        self.shutdown.begin(COLD, "QUIT")

    def handle_hup(self) -> None:
        if self.state == RUNNING:
            log.warning("Restarting in place (HUP): warm shutdown, then the same command again")
            self.restart_requested = True
            self.shutdown.begin(WARM, "HUP")

    def handle_usr1(self) -> None:
        stream = self.log_fd if self.log_fd is not None else sys.stderr.fileno()
        log.warning("Stack dump requested (USR1): %s", "every thread below (tasks run on "
                    "threads here)" if in_process(self.options.pool) else
                    "main process below, children in their logs")
        faulthandler.dump_traceback(file=stream, all_threads=True)
        pool = self.children.pool
        for child in pool.children.values():
            pool.kill(child, signal.SIGUSR2)

    def handle_ttin(self) -> None:
        try:
            self.children.grow(1, "TTIN")
        except FleetError as exc:
            log.warning("%s", exc.one_line())

    def handle_ttou(self) -> None:
        try:
            self.children.shrink(1, "TTOU")
        except FleetError as exc:
            log.warning("%s", exc.one_line())

    # == the banner ============================================================================

    def _print_banner(self) -> None:
        text = banner(self)
        if self.log_fd is not None:
            os.write(self.log_fd, text.encode())
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def banner(node: Node) -> str:
    """What a node prints when it starts: version, name, app, broker, pool, queues, tasks."""
    app = node.app
    results = app.result_backend_url
    shown_results = "(the broker)" if results == app.broker_url else mask_url(results)
    lines = [
        f" -------------- fleet {__version__}",
        f" node:         {node.name}",
        f" app:          {app.main or '__main__'}",
        f" broker:       {mask_url(app.broker_url)}",
        f" results:      {shown_results}",
        f" concurrency:  {node.options.concurrency} ({node.options.pool})",
        f" queues:       {', '.join(node.consumer.queues)}",
        f" pid:          {os.getpid()}",
        "",
        "[tasks]",
        *[f"  . {name}" for name in sorted(app.tasks)],
        "",
    ]
    return "\n".join(lines) + "\n"


def set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)
