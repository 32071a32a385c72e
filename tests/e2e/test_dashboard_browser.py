"""`fleet dashboard` in a real headless Chromium (selenium) against a real 2-node fleet.

One fleet (two `fleet worker` processes on a SQLite broker of this module's own), one
`fleet dashboard` process with a login, and one browser serve every test here, in order.
Each page's screenshot is saved under the test's tmp dir and in artifacts/dashboard/ (which
.gitignore covers). Chromium and chromedriver come from Debian (`apt-get install chromium
chromium-driver`; .ci/run installs them).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support import APPS, ROOT, NodeFactory, fleet_env, wait_for

pytest.importorskip("selenium")

from selenium import webdriver
from selenium.common.exceptions import (
    StaleElementReferenceException,
    TimeoutException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow

USER, PASSWORD = "operator", "correct horse battery"
ARTIFACTS = ROOT / "artifacts" / "dashboard"
#: Chromium as root in a sandbox-less container, quiet on a closed network.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1400,1000"]


def require(tool: str, *names: str) -> str:
    for name in names:
        found = shutil.which(name) or (f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}")
                                       else None)
        if found:
            return found
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is missing: .ci/run installs it (apt-get install chromium "
                    "chromium-driver)")
    pytest.skip(f"{tool} is not installed (apt-get install chromium chromium-driver)")


@dataclass
class Dashboard:
    url: str
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_dashboard(broker_url: str, workdir: Path) -> Dashboard:
    auth = workdir / "dashboard.auth"
    auth.write_text(f"{USER}:{PASSWORD}\n")
    auth.chmod(0o600)
    log = workdir / "dashboard.log"
    command = [sys.executable, "-m", "fleet", "dashboard", "-A", "testapp", "--port", "0",
               "--auth-file", str(auth), "--history-file", str(workdir / "history.db"),
               "-l", "info", "--logfile", str(log)]
    env = fleet_env(broker_url, FLEET_STATE_DIR=str(workdir / "state"))
    proc = subprocess.Popen(command, cwd=APPS, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    board = Dashboard("", proc, log)

    def serving() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"the dashboard exited with {proc.returncode}:\n"
                                 f"{board.log_text()}")
        found = re.search(r"serving (http://127\.0\.0\.1:\d+)/", board.log_text())
        return found.group(1) if found else None

    board.url = str(wait_for(serving, 20, 0.05, "the dashboard to serve"))
    return board


def stop(proc: subprocess.Popen) -> int | None:
    """TERM, then SIGKILL the group if it does not stop."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        return proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        return None


@dataclass
class Scene:
    """The fleet, the dashboard, the browser and where screenshots go."""

    app: object
    nodes: NodeFactory
    dashboard: Dashboard
    browser: webdriver.Chrome
    shots: Path

    def go(self, path: str) -> None:
        self.browser.get(self.dashboard.url + path)

    def wait(self, condition, timeout: float = 15.0, message: str = "") -> object:
        try:
            # (pages re-render on live updates: an element found a moment ago may be gone)
            return WebDriverWait(self.browser, timeout, 0.05,
                                 (StaleElementReferenceException,)).until(condition)
        except TimeoutException:
            raise AssertionError(f"timed out waiting for {message or condition}; page:\n"
                                 f"{self.browser.find_element(By.TAG_NAME, 'body').text}\n"
                                 f"dashboard log:\n{self.dashboard.log_text()[-3000:]}"
                                 ) from None

    def text_of(self, css: str) -> str:
        return self.browser.find_element(By.CSS_SELECTOR, css).text

    def shows(self, css: str, text: str, timeout: float = 15.0) -> None:
        self.wait(seen.text_to_be_present_in_element((By.CSS_SELECTOR, css), text), timeout,
                  f"{text!r} in {css}")

    def accept_confirmation(self) -> str:
        alert = self.wait(seen.alert_is_present(), 5, "a confirmation")
        question = alert.text
        alert.accept()
        return question

    def screenshot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.browser.save_screenshot(str(path))
        with contextlib.suppress(OSError):
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, ARTIFACTS / path.name)
        return path

    def fetch(self, method: str, path: str, token: bool) -> dict:
        """Run fetch() in the page (same origin, with its session cookie)."""
        return self.browser.execute_async_script("""
            const [method, path, token, done] = arguments;
            const headers = {"Content-Type": "application/json"};
            if (token) headers["X-CSRF-Token"] = document.body.dataset.csrf;
            fetch((document.body.dataset.prefix || "") + path, {method, headers, body:
                  method === "POST" ? "{}" : undefined, credentials: "same-origin"})
              .then(async (r) => done({status: r.status, body: await r.text()}))
              .catch((e) => done({status: -1, body: String(e)}));
        """, method, path, token)


def make_browser(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = require("chromium", "chromium", "chromium-browser")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(require("chromedriver", "chromedriver"))
    return webdriver.Chrome(options=options, service=service)


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    require("chromium", "chromium", "chromium-browser")  # skip (or fail in CI) before starting
    workdir = tmp_path_factory.mktemp("dashboard")
    broker_url = f"sqlite:///{workdir / 'broker.db'}"
    if str(APPS) not in sys.path:
        sys.path.insert(0, str(APPS))
    import testapp

    testapp.app.conf.update(broker_url=broker_url)
    testapp.app.close()
    nodes = NodeFactory(broker_url, workdir, env_extra={
        "FLEET_WORKER_HEARTBEAT_INTERVAL": "0.5"})
    dashboard = browser = None
    try:
        nodes.start(name="w1", concurrency=2)
        nodes.start("-Q", "default,parked", name="w2", concurrency=2)
        dashboard = start_dashboard(broker_url, workdir)
        browser = make_browser(Path(tempfile.mkdtemp(dir=workdir, prefix="chromium-")))
        shots = workdir / "screenshots"
        shots.mkdir()
        yield Scene(testapp.app, nodes, dashboard, browser, shots)
    finally:
        if browser is not None:
            with contextlib.suppress(Exception):
                browser.quit()
        if dashboard is not None:
            stop(dashboard.proc)
        nodes.cleanup()
        testapp.app.close()


def log_in(scene: Scene, password: str = PASSWORD) -> None:
    scene.browser.delete_all_cookies()
    scene.go("/")
    scene.wait(seen.presence_of_element_located((By.ID, "login-form")), 10, "the login form")
    scene.browser.find_element(By.ID, "username").send_keys(USER)
    scene.browser.find_element(By.ID, "password").send_keys(password)
    scene.browser.find_element(By.ID, "login-button").click()


def node_names(scene: Scene) -> tuple[str, str]:
    from fleet.nodenames import host_format

    return host_format("w1@%h"), host_format("w2@%h")


def test_the_overview_lists_both_nodes(scene):
    log_in(scene)
    w1, w2 = node_names(scene)
    scene.shows("#nodes", w1)
    scene.shows("#nodes", w2)
    rows = scene.text_of("#nodes")
    assert rows.count("online") == 2
    assert str(scene.nodes.nodes[0].pid) in rows and str(scene.nodes.nodes[1].pid) in rows
    scene.shows("#queues", "parked")
    scene.shows("#live", "live")
    scene.screenshot("overview")


def test_a_task_sent_during_the_test_appears_without_a_reload(scene):
    scene.go("/tasks")
    scene.wait(seen.presence_of_element_located((By.ID, "tasks")), 10, "the task table")
    scene.shows("#live", "live")
    scene.browser.execute_script("window.notReloaded = true;")
    import testapp

    result = testapp.add.delay(20, 22)
    assert result.get(timeout=15) == 42
    scene.shows("#tasks", result.id)
    scene.wait(lambda d: "SUCCESS" in next(
        row.text for row in d.find_elements(By.CSS_SELECTOR, "#tasks tbody tr")
        if result.id in row.text), 10, "the task to show SUCCESS")
    assert scene.browser.execute_script("return window.notReloaded === true;")
    scene.screenshot("tasks")


def test_the_task_list_filters_by_state(scene):
    import testapp

    failed = testapp.fail.delay("filtered")
    with pytest.raises(ValueError):
        failed.get(timeout=15)
    scene.go("/tasks?state=FAILURE")
    scene.shows("#tasks", failed.id)
    states = {td.text for td in scene.browser.find_elements(
        By.CSS_SELECTOR, "#tasks tbody td:nth-child(3)")}
    assert states == {"FAILURE"}


def test_a_failed_task_shows_its_traceback(scene):
    import testapp

    result = testapp.fail.delay("kaboom")
    with pytest.raises(ValueError):
        result.get(timeout=15)
    scene.go(f"/tasks/{result.id}")
    scene.shows("#traceback", "ValueError: kaboom")
    assert "Traceback (most recent call last)" in scene.text_of("#traceback")
    assert "testapp.py" in scene.text_of("#traceback")
    scene.shows("#task-state", "FAILURE")
    scene.screenshot("task-failed")


def test_a_task_in_a_state_of_its_own_shows_it_and_its_progress(scene):
    """Issue 17: update_state's custom state and meta reach the task page."""
    import testapp

    result = testapp.progress.delay(2, 1.5)
    wait_for(lambda: result.state == "PROGRESS", 15, message="the PROGRESS state")
    scene.go(f"/tasks/{result.id}")
    scene.shows("#task-state", "PROGRESS")
    scene.shows("#task-info", '"total": 2')
    scene.screenshot("task-progress")
    assert result.get(timeout=15) == 2


def test_revoking_from_the_page_revokes_it(scene):
    import testapp

    held = testapp.add.apply_async((1, 2), countdown=120)  # a node holds it for its ETA
    wait_for(lambda: any(held.id in str(reply) for reply in
                         scene.app.control.inspect().scheduled().values()), 15,
             message="a node to hold the ETA task")
    scene.go(f"/tasks/{held.id}")
    scene.wait(seen.element_to_be_clickable((By.ID, "revoke")), 10, "the revoke button")
    scene.browser.find_element(By.ID, "revoke").click()
    assert "Revoke task" in scene.accept_confirmation()
    scene.shows("#flash", "revoked")
    wait_for(lambda: held.state == "REVOKED", 15, message="the task to be REVOKED")
    assert scene.app.broker.get_value(f"revoked:{held.id}") is not None  # durable
    scene.shows("#task-state", "REVOKED")
    scene.screenshot("task-revoked")


def test_terminating_from_the_page_stops_the_running_task(scene):
    import testapp

    running = testapp.sleep.delay(60)
    wait_for(lambda: any(running.id in str(reply) for reply in
                         scene.app.control.inspect().active().values()), 15,
             message="the task to run")
    scene.go(f"/tasks/{running.id}")
    scene.wait(seen.element_to_be_clickable((By.ID, "terminate")), 10, "the terminate button")
    scene.browser.find_element(By.ID, "terminate").click()
    assert "SIGTERM" in scene.accept_confirmation()
    scene.shows("#flash", "terminated")
    wait_for(lambda: running.state == "REVOKED", 15, message="the task to be REVOKED")


def test_node_page_grows_the_pool(scene):
    w1, _ = node_names(scene)
    scene.go(f"/nodes/{w1}")
    scene.shows("#registered", "testapp.add")
    scene.shows("#node-data", "Stats")
    form = scene.browser.find_element(By.ID, "action-pool_grow")  # (never re-rendered)
    form.find_element(By.CSS_SELECTOR, "input[name=n]").send_keys("1")
    form.find_element(By.CSS_SELECTOR, "button").click()
    scene.shows("#flash", "pool will grow to 3")
    wait_for(lambda: scene.app.control.inspect([w1]).stats().get(w1, {}).get("pool", {})
             .get("max-concurrency") == 3, 15, message="the pool to have 3 children")
    scene.screenshot("node")


def test_purge_asks_first(scene):
    for i in range(3):
        scene.app.send_task("testapp.add", (i, i), queue="parked-alone")
    scene.go("/")
    scene.shows("#queues", "parked-alone")
    purge = "button[data-queue='parked-alone']"
    scene.wait(lambda d: d.find_element(By.CSS_SELECTOR, purge).click() or True, 10, "Purge")
    scene.wait(seen.alert_is_present(), 5, "a confirmation").dismiss()  # said no: nothing
    assert {s.name: s.ready for s in scene.app.broker.queue_stats()}["parked-alone"] == 3
    scene.wait(lambda d: d.find_element(By.CSS_SELECTOR, purge).click() or True, 10, "Purge")
    assert "3 now" in scene.accept_confirmation()
    scene.shows("#flash", "Purged 3 message(s) from parked-alone")
    assert {s.name: s.ready for s in scene.app.broker.queue_stats()}["parked-alone"] == 0


def test_charts_and_beat_pages(scene):
    scene.go("/")  # (the overview again, now that tasks ran: the README's picture)
    scene.shows("#state-counts", "FAILURE")
    scene.screenshot("overview-after")
    scene.go("/charts")
    scene.wait(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#chart-box canvas")) == 3, 15,
               "three charts")
    assert "Throughput" in scene.text_of("#chart-box")
    scene.screenshot("charts")
    scene.go("/beat")
    scene.wait(seen.presence_of_element_located((By.ID, "beat")), 10, "the beat table")
    scene.screenshot("beat")


def test_a_post_without_the_csrf_token_is_refused(scene):
    scene.go("/")
    scene.wait(seen.presence_of_element_located((By.ID, "nodes")), 10, "the overview")
    refused = scene.fetch("POST", "/api/tasks/not-a-task/revoke", token=False)
    assert refused["status"] == 403 and "CSRF" in refused["body"]
    assert scene.app.broker.get_value("revoked:not-a-task") is None
    accepted = scene.fetch("POST", "/api/tasks/not-a-task/revoke", token=True)
    assert accepted["status"] == 200  # the same request with the page's token


def test_a_wrong_password_is_refused(scene):
    log_in(scene, password="wrong password")
    scene.shows("#login-error", "Wrong user name or password")
    scene.screenshot("login-refused")
    assert "/login" in scene.browser.current_url
    assert scene.fetch("GET", "/api/overview", token=False)["status"] == 401
    scene.go("/tasks")
    scene.wait(seen.presence_of_element_located((By.ID, "login-form")), 10,
               "the login page again")


def test_the_dashboard_stops_cleanly_on_term_and_keeps_its_history(scene):
    code = stop(scene.dashboard.proc)
    assert code == 0, scene.dashboard.log_text()
    assert "dashboard: stopped" in scene.dashboard.log_text()
    workdir = scene.dashboard.log.parent
    from fleet.dashboard.history import History

    history = History(workdir / "history.db")
    try:
        states = history.state_counts()
    finally:
        history.close()
    assert states.get("SUCCESS", 0) >= 1 and states.get("FAILURE", 0) >= 2
    assert states.get("REVOKED", 0) >= 2
    assert PASSWORD not in scene.dashboard.log_text()
