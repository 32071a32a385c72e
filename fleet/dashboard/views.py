"""What each page shows, as plain data (the JSON of `/api/...`; the pages render it).

Everything comes from the library the CLI uses: nodes from the broker's registry
(`fleet.inspect.known_nodes`, as `fleet status` and `fleet events` show them), queues from
`Transport.queue_stats` (`fleet queues`), node details from `app.control.inspect`
(`fleet inspect`), results from the result backend (`fleet result`), beat entries from
`Scheduler.describe` (`fleet beat --list`), and the task history from the dashboard's own
store. Nothing here renders or knows HTTP.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fleet.dashboard.history import STATES, History

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

#: The inspect commands a node page shows, in order.
NODE_QUESTIONS = ("stats", "registered", "active", "reserved", "scheduled", "revoked", "conf")
#: Offline nodes seen within this many seconds stay listed (greyed) on the overview.
OFFLINE_SHOWN_FOR = 3600.0


def node_rows(app: Fleet, history: History, now: float | None = None) -> list[dict[str, Any]]:
    """Every node: registered with the broker (live or not yet recovered), or seen going
    offline recently (from its last worker event)."""
    from fleet.inspect import known_nodes

    now = time.time() if now is None else now
    rows = {}
    for seen in known_nodes(app):
        info = seen.info
        started = info.get("started")
        rows[seen.name] = {
            "node": seen.name, "state": "online" if seen.online else "silent",
            "node_state": info.get("state"), "pid": seen.pid, "host": seen.host,
            "uptime": round(now - started, 1) if started else None,
            "loadavg": info.get("loadavg") or [], "concurrency": info.get("concurrency"),
            "active": info.get("active"), "processed": info.get("processed"),
            "queues": seen.queues, "last_heartbeat": seen.last_heartbeat,
            "seconds_since_heartbeat": round(seen.age, 1)}
    for known in history.nodes():
        if known["name"] in rows or not known["offline"] or \
                now - known["last_seen"] > OFFLINE_SHOWN_FOR:
            continue
        event = known["event"]
        rows[known["name"]] = {
            "node": known["name"], "state": "offline", "node_state": event.get("state"),
            "pid": event.get("pid"), "host": None, "uptime": None,
            "loadavg": event.get("loadavg") or [], "concurrency": event.get("concurrency"),
            "active": event.get("active"), "processed": event.get("processed"),
            "queues": event.get("queues") or [], "last_heartbeat": known["last_seen"],
            "seconds_since_heartbeat": round(now - known["last_seen"], 1)}
    return [rows[name] for name in sorted(rows)]


def queue_rows(app: Fleet) -> list[dict[str, Any]]:
    """Every known queue, as `fleet queues --json` prints it."""
    return [{"queue": s.name, "ready": s.ready, "scheduled": s.scheduled,
             "reserved": s.reserved, "consumers": s.consumers}
            for s in app.broker.queue_stats()]


def overview(app: Fleet, history: History) -> dict[str, Any]:
    counts = history.state_counts()
    return {"nodes": node_rows(app, history), "queues": queue_rows(app),
            "tasks": {state: counts.get(state, 0) for state in STATES},
            "tasks_recorded": sum(counts.values()), "max_tasks": history.max_tasks,
            "now": time.time()}


def task_list(history: History, state: str | None = None, name: str | None = None,
              node: str | None = None, limit: int = 50, before: int | None = None,
              after: int | None = None) -> dict[str, Any]:
    page = history.page({"state": state or "", "name": name or "", "node": node or ""},
                        limit, before, after)
    return {"tasks": page.rows, "total": page.total, "newer": page.newer,
            "older": page.older, "limit": limit,
            "filters": {"state": state, "name": name, "node": node}}


def task_detail(app: Fleet, history: History, task_id: str) -> dict[str, Any] | None:
    """What the history knows of the task, its stored result, and its workflow relatives.

    None when neither the history nor the result store knows the id.
    """
    from fleet.engine.results import pending_meta

    recorded = history.task(task_id)
    meta = app.backend.get_meta(task_id)
    if recorded is None and meta == pending_meta(task_id):
        return None
    recorded = recorded or {"id": task_id}
    result = {key: meta.get(key) for key in ("state", "result", "exc_type", "exc_module",
                                             "exc_message", "traceback", "date_done",
                                             "node", "retries", "task")}
    parent_id = recorded.get("parent_id") or recorded.get("resent_from")
    parent = history.task(parent_id) if parent_id else None
    return {
        "task": recorded,
        "result": result,
        "state": recorded.get("state") or meta.get("state"),
        "name": recorded.get("name") or meta.get("task"),
        "node": recorded.get("node") or meta.get("node"),
        "retries": recorded.get("retries") if recorded.get("retries") is not None
        else meta.get("retries"),
        "parent": ({"id": parent_id, "name": parent.get("name") if parent else None,
                    "state": parent.get("state") if parent else None,
                    "relation": "parent" if recorded.get("parent_id") else "re-send of"}
                   if parent_id else None),
        "root_id": recorded.get("root_id"),
        "group_id": recorded.get("group_id"),
        "children": history.children(task_id),
        "can_resend": resend_problem(recorded) is None,
    }


def resend_problem(recorded: dict[str, Any] | None) -> str | None:
    """Why a task cannot be sent again from the dashboard (None: it can)."""
    if not recorded or not recorded.get("name"):
        return "its name is not known to the dashboard (it saw no event with it)"
    if recorded.get("args") is None and recorded.get("kwargs") is None:
        return "its arguments are not known (the dashboard saw no task-received event)"
    if not isinstance(recorded.get("args") or [], list) or \
            not isinstance(recorded.get("kwargs") or {}, dict):
        return ("its arguments were too long to travel in the events (nodes clip them), "
                "so the dashboard cannot repeat them: send it again from your code")
    return None


def node_detail(app: Fleet, history: History, name: str,
                timeout: float = 2.0) -> dict[str, Any] | None:
    """The node's row and its answers to the inspect commands (None: an unknown node)."""
    row = next((r for r in node_rows(app, history) if r["node"] == name), None)
    if row is None:
        return None
    inspect = app.control.inspect(destination=[name], timeout=timeout)
    answers: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for question in NODE_QUESTIONS:
        if errors:  # a node that did not answer the first question will not answer the rest
            errors[question] = f"not asked ({NODE_QUESTIONS[0]} got no reply)"
            continue
        replies = getattr(inspect, question)()
        if name in replies:
            answers[question] = replies[name]
        else:
            errors[question] = (f"no reply within {timeout:g}s" if row["state"] != "offline"
                                else "the node is offline")
    return {"node": row, "answers": answers, "errors": errors}


def beat_entries(app: Fleet) -> list[dict[str, Any]]:
    """Each periodic entry with its schedule and its last and next run (UTC), as
    `fleet beat --list --json` prints them."""
    from fleet.engine.beat import Scheduler

    return Scheduler(app).describe()


def charts(history: History, window: float, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    return {"window": window, "now": now, **history.series(now - window, now)}
