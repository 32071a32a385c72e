"""The dashboard as an ASGI app (Starlette): pages, `/api/...`, `/metrics`, `/healthz`.

    create_app(fleet_app, settings)  -> a Starlette app; uvicorn (fleet.dashboard.server)
                                        or a test client runs it

Pages are small HTML shells (templates/) that the dashboard's own script fills from
`/api/...`, so every table a page shows is also JSON. Live updates arrive over server-sent
events (`/api/stream`); a page refetches what it shows when something it shows changed.

Access: with users configured, pages need a session (POST /login) and the API and
/metrics accept the session or HTTP Basic credentials; `/healthz` and `/static/` are open.
Every POST needs the CSRF token (header X-CSRF-Token, or the form field csrf_token), which
the pages carry and `GET /api/csrf` returns to an authenticated program.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import string
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from fleet import __version__
from fleet.dashboard import actions, views
from fleet.dashboard.auth import SESSION_COOKIE, SESSION_SECONDS, Guard
from fleet.dashboard.history import STATES, History
from fleet.dashboard.ingest import Hub, Ingester
from fleet.dashboard.metrics import CONTENT_TYPE, Metrics
from fleet.dashboard.security import Protect
from fleet.dashboard.settings import DashboardSettings
from fleet.engine.app import Fleet

log = logging.getLogger("fleet.dashboard")

PAGE_SIZE, MAX_PAGE_SIZE = 50, 500
CHART_WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


class Json(JSONResponse):
    """JSON that never fails on a value JSON cannot hold (it is shown as its repr)."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=repr, separators=(",", ":")).encode()


def _error(status: int, message: str) -> Json:
    return Json({"error": message}, status_code=status)


@dataclass
class Dashboard:
    """Everything one dashboard holds; `request.app.state.dashboard`."""

    fleet: Fleet
    settings: DashboardSettings
    history: History
    guard: Guard
    hub: Hub
    metrics: Metrics
    ingester: Ingester | None
    stopping: Callable[[], bool] = lambda: False

    def url(self, path: str = "/") -> str:
        return self.settings.url_prefix + path


# -- templates ---------------------------------------------------------------------------------

def _template(name: str) -> string.Template:
    text = resources.files("fleet.dashboard").joinpath("templates", name).read_text()
    return string.Template(text)


_PAGE = _template("page.html")
_LOGIN = _template("login.html")
PAGE_TITLES = {"overview": "Overview", "tasks": "Tasks", "task": "Task", "node": "Node",
               "charts": "Charts", "beat": "Periodic tasks"}


def render_page(board: Dashboard, page: str, user: str | None, argument: str = "") -> str:
    esc = html.escape
    title = PAGE_TITLES[page] + (f" {argument}" if argument else "")
    return _PAGE.substitute(
        title=esc(title), page=esc(page), prefix=esc(board.settings.url_prefix),
        argument=esc(argument), csrf=esc(board.guard.csrf_token(user)),
        user=esc(user or ""), logins="1" if board.guard.enabled else "",
        version=esc(__version__), states=esc(",".join(STATES)),
        static=esc(board.url("/static")), home=esc(board.url("/")))


def render_login(board: Dashboard, error: str = "", next_url: str = "") -> str:
    esc = html.escape
    return _LOGIN.substitute(
        error=esc(error), hidden="" if error else "hidden", next=esc(next_url),
        csrf=esc(board.guard.csrf_token(None)), action=esc(board.url("/login")),
        static=esc(board.url("/static")), version=esc(__version__))


# -- who is asking -----------------------------------------------------------------------------

def current_user(request: Request) -> str | None:
    """The authenticated user ('' when the dashboard has no logins), else None."""
    guard: Guard = request.app.state.dashboard.guard
    if not guard.enabled:
        return ""
    return guard.session_user(request.cookies.get(SESSION_COOKIE)) or \
        guard.basic(request.headers.get("authorization"))


Endpoint = Callable[[Request], Awaitable[Response]]


def page(name: str, argument: str | None = None) -> Endpoint:
    """A page endpoint: its HTML shell, or the login page first."""

    async def endpoint(request: Request) -> Response:
        board: Dashboard = request.app.state.dashboard
        user = current_user(request)
        if user is None:
            target = board.url("/login") + "?next=" + quote(request.url.path)
            return RedirectResponse(target, status_code=303)
        value = request.path_params.get(argument, "") if argument else ""
        return HTMLResponse(render_page(board, name, user, value))

    return endpoint


def api(handler: Callable[[Request, Dashboard, str | None], Awaitable[Response]],
        post: bool = False) -> Endpoint:
    """An API endpoint: 401 without credentials, 403 for a POST without the CSRF token."""

    async def endpoint(request: Request) -> Response:
        board: Dashboard = request.app.state.dashboard
        user = current_user(request)
        if user is None:
            # A page's own fetch() gets no Basic challenge: the browser would pop up a
            # password dialog instead of letting the page go to the login form.
            from_page = request.headers.get("sec-fetch-mode") in ("cors", "same-origin")
            return Json({"error": "log in first (a session from the login page, or HTTP "
                                  "Basic credentials)"}, status_code=401,
                        headers={} if from_page else
                        {"WWW-Authenticate": 'Basic realm="fleet dashboard"'})
        if post and not board.guard.check_csrf(user, request.headers.get("x-csrf-token")):
            log.warning("dashboard: refused %s %s without a valid CSRF token (from %s)",
                        request.method, request.url.path, _client(request))
            return _error(403, "missing or stale CSRF token: reload the page (programs: "
                               "send the X-CSRF-Token header from GET /api/csrf)")
        try:
            return await handler(request, board, user)
        except actions.ActionError as exc:
            return _error(exc.status, exc.message)

    return endpoint


async def _form(request: Request) -> dict[str, str]:
    """A small urlencoded form (login, logout): parsed here, no multipart library needed."""
    from urllib.parse import parse_qsl

    body = await request.body()
    if len(body) > 16384:
        return {}
    try:
        return dict(parse_qsl(body.decode(), max_num_fields=10))
    except (UnicodeDecodeError, ValueError):
        return {}


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        raise actions.ActionError(400, "the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise actions.ActionError(400, "the request body must be a JSON object")
    return data


def _int(request: Request, name: str, default: int | None = None, low: int = 0,
         high: int | None = None) -> int | None:
    text = request.query_params.get(name)
    if text in (None, ""):
        return default
    try:
        value = int(text)
    except ValueError:
        raise actions.ActionError(400, f"{name} must be a whole number") from None
    value = max(low, value)
    return min(value, high) if high is not None else value


# -- login -------------------------------------------------------------------------------------

def _safe_next(board: Dashboard, target: str | None) -> str:
    """Only a path of this dashboard (no open redirect to another site)."""
    home = board.url("/")
    if not target or not target.startswith(board.settings.url_prefix + "/") or \
            target.startswith("//") or "\\" in target:
        return home
    return target


async def login_page(request: Request) -> Response:
    board: Dashboard = request.app.state.dashboard
    if not board.guard.enabled:
        return RedirectResponse(board.url("/"), status_code=303)
    return HTMLResponse(render_login(board, next_url=request.query_params.get("next", "")))


async def login(request: Request) -> Response:
    board: Dashboard = request.app.state.dashboard
    guard = board.guard
    if not guard.enabled:
        return RedirectResponse(board.url("/"), status_code=303)
    form = await _form(request)
    client = _client(request)
    next_url = form.get("next", "")
    if not guard.check_csrf(None, form.get("csrf_token")):
        return HTMLResponse(render_login(board, "The form expired: try again.", next_url), 403)
    wait = guard.throttle.blocked(client)
    if wait > 0:
        log.warning("dashboard: login refused for %s: too many failures", client)
        return HTMLResponse(render_login(board, f"Too many failed logins from {client}: try "
                                                f"again in {wait:.0f} s.", next_url), 429)
    user = form.get("username", "")
    if not guard.check_password(user, form.get("password", "")):
        guard.throttle.failed(client)
        log.warning("dashboard: failed login for user %r from %s", user[:64], client)
        await asyncio.sleep(0.3)  # slows guessing; the throttle stops it
        return HTMLResponse(render_login(board, "Wrong user name or password.", next_url), 401)
    guard.throttle.succeeded(client)
    log.info("dashboard: %s logged in from %s", user, client)
    response = RedirectResponse(_safe_next(board, next_url), status_code=303)
    response.set_cookie(SESSION_COOKIE, guard.session_cookie(user), max_age=SESSION_SECONDS,
                        path=board.url("/"), httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    board: Dashboard = request.app.state.dashboard
    form = await _form(request)
    user = current_user(request)
    if user is None or not board.guard.check_csrf(user, form.get("csrf_token")):
        return _error(403, "missing or stale CSRF token: reload the page")
    response = RedirectResponse(board.url("/login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=board.url("/"))
    return response


# -- API: reading ------------------------------------------------------------------------------

async def api_overview(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json(await run_in_threadpool(views.overview, board.fleet, board.history))


async def api_nodes(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json(await run_in_threadpool(views.node_rows, board.fleet, board.history))


async def api_queues(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json(await run_in_threadpool(views.queue_rows, board.fleet))


async def api_tasks(request: Request, board: Dashboard, user: str | None) -> Response:
    query = request.query_params
    state = query.get("state") or None
    if state and state not in STATES:
        raise actions.ActionError(400, f"unknown state {state!r}; one of {', '.join(STATES)}")
    limit = _int(request, "limit", PAGE_SIZE, 1, MAX_PAGE_SIZE) or PAGE_SIZE
    data = await run_in_threadpool(
        views.task_list, board.history, state, query.get("name") or None,
        query.get("node") or None, limit, _int(request, "before"), _int(request, "after"))
    return Json(data)


async def api_task_names(request: Request, board: Dashboard, user: str | None) -> Response:
    def both() -> dict[str, list[str]]:
        return {"names": board.history.distinct("name"), "nodes": board.history.distinct("node")}

    return Json(await run_in_threadpool(both))


async def api_task(request: Request, board: Dashboard, user: str | None) -> Response:
    task_id = request.path_params["task_id"]
    found = await run_in_threadpool(views.task_detail, board.fleet, board.history, task_id)
    if found is None:
        return _error(404, f"no task {task_id}: not in the history, and no result stored")
    return Json(found)


async def api_node(request: Request, board: Dashboard, user: str | None) -> Response:
    name = request.path_params["node"]
    found = await run_in_threadpool(views.node_detail, board.fleet, board.history, name,
                                    board.settings.control_timeout)
    if found is None:
        return _error(404, f"no node {name}: the broker does not know it")
    return Json(found)


async def api_node_commands(request: Request, board: Dashboard, user: str | None) -> Response:
    """The node actions with their arguments, from the registry (the pages build forms)."""
    from fleet.engine.control import get_command

    commands = []
    for name in actions.NODE_COMMANDS:
        cmd = get_command(name)
        commands.append({"name": cmd.name, "help": cmd.help, "arguments": [
            {"name": arg.name, "type": arg.type, "help": arg.help, "required": arg.required,
             **({} if arg.required else {"default": arg.default})} for arg in cmd.args]})
    return Json(commands)


async def api_charts(request: Request, board: Dashboard, user: str | None) -> Response:
    window = request.query_params.get("window", "1h")
    if window not in CHART_WINDOWS:
        raise actions.ActionError(400, f"window must be one of {', '.join(CHART_WINDOWS)}")
    return Json(await run_in_threadpool(views.charts, board.history, CHART_WINDOWS[window]))


async def api_beat(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json(await run_in_threadpool(views.beat_entries, board.fleet))


async def api_csrf(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json({"csrf_token": board.guard.csrf_token(user), "user": user or None})


async def api_stream(request: Request, board: Dashboard, user: str | None) -> Response:
    """Server-sent events: one `data:` line per change the ingester saw."""
    queue = board.hub.subscribe()

    async def events() -> AsyncIterator[str]:
        idle = 0.0
        try:
            yield "retry: 2000\n\ndata: {\"kind\": \"hello\"}\n\n"
            while not board.stopping():
                try:
                    text = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    idle += 1.0
                    if idle >= KEEPALIVE:
                        idle = 0.0
                        yield ": keep-alive\n\n"
                    continue
                idle = 0.0
                yield f"data: {text}\n\n"
        finally:
            board.hub.unsubscribe(queue)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"X-Accel-Buffering": "no"})


# -- API: actions ------------------------------------------------------------------------------

async def api_revoke(request: Request, board: Dashboard, user: str | None) -> Response:
    body = await _body(request)
    return Json(await run_in_threadpool(
        actions.revoke, board.fleet, request.path_params["task_id"],
        bool(body.get("terminate")), str(body.get("signal") or "TERM"),
        board.settings.control_timeout, user))


async def api_resend(request: Request, board: Dashboard, user: str | None) -> Response:
    return Json(await run_in_threadpool(actions.resend, board.fleet, board.history,
                                        request.path_params["task_id"], user))


async def api_node_action(request: Request, board: Dashboard, user: str | None) -> Response:
    body = await _body(request)
    return Json(await run_in_threadpool(
        actions.node_command, board.fleet, request.path_params["node"],
        request.path_params["command"], body, board.settings.control_timeout, user))


async def api_purge(request: Request, board: Dashboard, user: str | None) -> Response:
    body = await _body(request)
    return Json(await run_in_threadpool(actions.purge, board.fleet,
                                        request.path_params["queue"], body.get("confirm"),
                                        user))


# -- metrics and health ------------------------------------------------------------------------

async def metrics(request: Request, board: Dashboard, user: str | None) -> Response:
    return Response(await run_in_threadpool(board.metrics.render), media_type=CONTENT_TYPE)


async def healthz(request: Request) -> Response:
    """200 while the broker answers and the ingester runs; 503 otherwise (no secrets)."""
    board: Dashboard = request.app.state.dashboard
    try:
        await run_in_threadpool(board.fleet.broker.ping)
        broker = "ok"
    except Exception as exc:
        broker = f"unreachable: {type(exc).__name__}"
    ingesting = board.ingester is None or board.ingester.alive
    ok = broker == "ok" and ingesting
    return Json({"ok": ok, "broker": broker, "ingesting": ingesting,
                 "listening": bool(board.ingester and board.ingester.listening),
                 "events_seen": board.ingester.events_seen if board.ingester else 0,
                 "time": time.time()}, status_code=200 if ok else 503)


async def favicon(request: Request) -> Response:
    return Response(status_code=204)


# -- assembly ----------------------------------------------------------------------------------

def routes() -> list[Any]:
    static = StaticFiles(packages=[("fleet.dashboard", "static")])
    return [
        Route("/", page("overview")),
        Route("/tasks", page("tasks")),
        Route("/tasks/{task_id}", page("task", "task_id")),
        Route("/nodes/{node}", page("node", "node")),
        Route("/charts", page("charts")),
        Route("/beat", page("beat")),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/api/overview", api(api_overview)),
        Route("/api/nodes", api(api_nodes)),
        Route("/api/nodes/{node}", api(api_node)),
        Route("/api/nodes/{node}/{command}", api(api_node_action, post=True),
              methods=["POST"]),
        Route("/api/node-commands", api(api_node_commands)),
        Route("/api/queues", api(api_queues)),
        Route("/api/queues/{queue}/purge", api(api_purge, post=True), methods=["POST"]),
        Route("/api/tasks", api(api_tasks)),
        Route("/api/task-filters", api(api_task_names)),
        Route("/api/tasks/{task_id}", api(api_task)),
        Route("/api/tasks/{task_id}/revoke", api(api_revoke, post=True), methods=["POST"]),
        Route("/api/tasks/{task_id}/resend", api(api_resend, post=True), methods=["POST"]),
        Route("/api/charts", api(api_charts)),
        Route("/api/beat", api(api_beat)),
        Route("/api/csrf", api(api_csrf)),
        Route("/api/stream", api(api_stream)),
        Route("/metrics", api(metrics)),
        Route("/healthz", healthz),
        Route("/favicon.ico", favicon),
        Mount("/static", app=static, name="static"),
    ]


def create_app(fleet_app: Fleet, settings: DashboardSettings, history: History | None = None,
               ingest: bool = True) -> Any:
    """The dashboard for `fleet_app`. With `ingest`, a thread folds the fleet's events into
    the history while the app runs (started and stopped by the ASGI lifespan)."""
    settings.check()
    history = history or History(settings.history_file, settings.max_tasks, settings.retention)
    hub = Hub()
    ingester = Ingester(fleet_app, history, settings, hub) if ingest else None
    board = Dashboard(fleet_app, settings, history, Guard(settings.users, history.secret()),
                      hub, Metrics(fleet_app, history, ingester), ingester)
    if ingester is not None:
        ingester.on_batch.append(board.metrics.observe)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if ingester is not None:
            ingester.start()
        try:
            yield
        finally:
            if ingester is not None:
                await run_in_threadpool(ingester.stop)
            history.close()

    prefix = settings.url_prefix
    inner = routes()
    outer: list[Any] = [Mount(prefix, routes=inner)] if prefix else inner
    if prefix:
        outer.append(Route("/", lambda request: RedirectResponse(prefix + "/", 307)))
    app = Starlette(routes=outer, lifespan=lifespan)
    app.state.dashboard = board
    return Protect(app, board.guard.enabled, prefix + "/static/", app.state)
