"""Django (issue 17): the example project in examples/django, run for real.

A copy of the project (with the test-only app tests/apps/django_probe/probe added) is
migrated, a real `fleet -A mysite worker` runs it, and Django management commands place
orders. The broker comes only from Django's settings (FLEET_BROKER_URL): the node must read
them. Runs on SQLite, and on PostgreSQL when a server answers on 127.0.0.1:5432 (a
database of the test's own, created and dropped here; skipped with the reason otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fleet import Fleet
from tests.support import ROOT, NodeProcess, wait_for

pytest.importorskip("django", reason="Django is not installed (pip install fleet[django])")

EXAMPLE = ROOT / "examples" / "django"
PROBE = ROOT / "tests" / "apps" / "django_probe" / "probe"
PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USER = os.environ.get("FLEET_TEST_PGUSER", "postgres")


@dataclass
class Project:
    """A migrated copy of the example project, and how to run things in it."""

    path: Path
    env: dict[str, str]
    database: dict
    broker_url: str

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=self.path,
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    def orders(self) -> dict[int, tuple]:
        """{id: (item, confirmed, confirmed_by)} read straight from the database."""
        query = "SELECT id, item, confirmed, confirmed_by FROM shop_order"
        if self.database["ENGINE"].endswith("sqlite3"):
            with contextlib.closing(sqlite3.connect(self.database["NAME"])) as db:
                rows = db.execute(query).fetchall()
        else:
            with _pg(self.database["NAME"]) as db:
                rows = db.execute(query).fetchall()
        return {row[0]: (row[1], bool(row[2]), row[3]) for row in rows}

    def start_node(self, *args: str, name: str = "dj") -> NodeProcess:
        log = self.path / f"{name}.log"
        command = [sys.executable, "-m", "fleet", "-A", "mysite", "worker", "-n",
                   f"{name}@%h", "-l", "info", "--logfile", str(log), *args]
        with open(self.path / f"{name}.err", "w") as stderr:
            proc = subprocess.Popen(command, cwd=self.path, env=self.env,
                                    start_new_session=True, stdout=subprocess.DEVNULL,
                                    stderr=stderr)
        node = NodeProcess(name, proc, log)
        self.nodes.append(node)
        return node.wait_ready(30)

    nodes: list = None  # type: ignore[assignment]


def _pg(dbname: str):
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=dbname,
                           autocommit=True, connect_timeout=3)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path) -> Iterator[dict]:
    """Django's DATABASES["default"] for the run: SQLite in the test's directory, or a
    PostgreSQL database of the test's own (dropped afterwards)."""
    if request.param == "sqlite":
        yield {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "db.sqlite3")}
        return
    psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed")
    try:
        admin = _pg("postgres")
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL server answers on {PG_HOST}:{PG_PORT} as {PG_USER} "
                    f"({' '.join(str(exc).split())[:120]})")
    name = f"fleet_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"ENGINE": "django.db.backends.postgresql", "NAME": name, "USER": PG_USER,
               "HOST": PG_HOST, "PORT": str(PG_PORT)}
    finally:
        with _pg("postgres") as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def make_project(tmp_path: Path, database: dict, broker_url: str, **database_options: object
                 ) -> Project:
    """The example project copied, with the probe app, these database options
    (CONN_MAX_AGE, ...), the broker in Django's settings (FLEET_BROKER_URL), migrated."""
    path = tmp_path / "project"
    shutil.copytree(EXAMPLE, path, ignore=shutil.ignore_patterns("__pycache__", "*.sqlite3"))
    shutil.copytree(PROBE, path / "probe", ignore=shutil.ignore_patterns("__pycache__"))
    lines = ["from mysite.settings import *  # noqa: F403",
             "INSTALLED_APPS = [*INSTALLED_APPS, 'probe']  # noqa: F405",
             f"DATABASES = {{'default': {database | database_options!r}}}",
             f"FLEET_BROKER_URL = {broker_url!r}"]
    (path / "test_settings.py").write_text("\n".join(lines) + "\n")
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("FLEET_", "DJANGO_", "MYSITE_"))}
    env.update(PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="test_settings",
               FLEET_STATE_DIR=str(tmp_path / "state"), PROBE_DIR=str(path),
               FLEET_WORKER_HEARTBEAT_INTERVAL="0.2")
    project = Project(path, env, database, broker_url)
    project.nodes = []
    project.manage("migrate", "--no-input")
    return project


@pytest.fixture
def project_factory(tmp_path, database, broker_url):
    made: list[Project] = []

    def make(**database_options: object) -> Project:
        project = make_project(tmp_path, database, broker_url, **database_options)
        made.append(project)
        return project

    yield make
    for project in made:
        for node in project.nodes:
            node.kill_group()


def _client(project: Project) -> Fleet:
    return Fleet("client", broker=project.broker_url)


def test_a_django_project_runs_its_tasks_after_commit_and_never_after_rollback(
        project_factory):
    project = project_factory()
    node = project.start_node("-c", "2")
    banner = node.log_text()
    assert "app:          mysite" in banner
    assert project.broker_url.split("?")[0].split("://")[0] in banner  # FLEET_BROKER_URL read
    for task in ("shop.tasks.confirm_order", "shop.tasks.pack_orders",
                 "probe.tasks.db_identity"):  # autodiscovered in every installed app
        assert f"  . {task}" in banner

    committed = json.loads(project.manage("probe_commit", "widget").stdout)
    assert (committed["inside"], committed["after"]) == (0, 1)  # sent only at the commit
    wait_for(lambda: project.orders().get(committed["order"], (0, False))[1], 20,
             message="the committed order to be confirmed by the node")
    assert project.orders()[committed["order"]][2].startswith("dj@")

    rolled_back = json.loads(project.manage("probe_commit", "gadget", "--rollback").stdout)
    assert (rolled_back["inside"], rolled_back["after"]) == (0, 0)  # never sent
    assert rolled_back["order"] not in project.orders()

    failed = project.manage("place_order", "nothing", "--fail", check=False)
    assert failed.returncode != 0 and "no confirmation sent" in failed.stderr
    placed = int(project.manage("place_order", "gizmo").stdout)
    wait_for(lambda: project.orders().get(placed, (0, False))[1], 20,
             message="the example command's order to be confirmed")
    assert len(project.orders()) == 2

    client = _client(project)
    packed = client.send_task("shop.tasks.pack_orders", ([committed["order"], placed],))
    assert packed.get(timeout=20) == 2
    assert node.log_text().count("succeeded") == 3


def test_children_never_share_the_connection_the_main_process_holds(project_factory):
    """Each child drops the connections it inherited at fork: with persistent connections
    (CONN_MAX_AGE=None) a child would otherwise talk on its parent's socket."""
    project = project_factory(CONN_MAX_AGE=None)
    project.start_node("-c", "2", "--max-tasks-per-child", "1")
    client = _client(project)
    main = json.loads(wait_for(lambda: (project.path / "main.json").exists() and
                               (project.path / "main.json").read_text(), 20,
                               message="the main process to open its connection"))
    seen = [client.send_task("probe.tasks.db_identity").get(timeout=20) for _ in range(4)]
    assert not any(report["inherited"] for report in seen), seen
    assert len({report["pid"] for report in seen}) == 4  # each in a new child
    if main["backend"] is not None:  # PostgreSQL: the server's view
        backends = {report["backend"] for report in seen}
        assert main["backend"] not in backends and len(backends) == 4
        with _pg(project.database["NAME"]) as db:
            alive = {row[0] for row in db.execute("SELECT pid FROM pg_stat_activity")}
        assert main["backend"] in alive  # no child closed the parent's session


def test_connections_are_closed_when_unusable_or_past_conn_max_age(project_factory, database):
    if not database["ENGINE"].endswith("postgresql"):
        pytest.skip("needs the server's connection ids (PostgreSQL)")
    project = project_factory(CONN_MAX_AGE=1, CONN_HEALTH_CHECKS=True)
    project.start_node("-c", "1")
    client = _client(project)

    def backend() -> int:
        return client.send_task("probe.tasks.db_identity").get(timeout=20)["backend"]

    first = backend()
    assert backend() == first  # within CONN_MAX_AGE: reused
    with _pg("postgres") as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (first,))
    second = backend()  # the dead connection is noticed before the task, not by it
    assert second != first
    time.sleep(1.2)
    assert backend() != second  # past CONN_MAX_AGE: a new one
