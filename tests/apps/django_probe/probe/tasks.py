"""Tasks that report the database connection they run on; imported by autodiscovery in the
node's main process, which also opens a connection of its own once it is ready (so the
children forked after that inherit it, as they would in a real project)."""

import json
import os

from django.db import connection

from fleet import hooks, shared_task


def backend_id():
    """The server's id of this connection (PostgreSQL), None on SQLite."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


@shared_task
def db_identity():
    inherited = connection.connection is not None  # before this task used the database
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM shop_order")
        orders = cursor.fetchone()[0]
    return {"pid": os.getpid(), "inherited": inherited, "backend": backend_id(),
            "orders": orders}


@hooks.worker_ready.connect
def hold_a_connection(sender=None, **kwargs):
    """In the node's main process: open a connection and say which, for the test."""
    with open(os.path.join(os.environ["PROBE_DIR"], "main.json"), "w") as out:
        json.dump({"pid": os.getpid(), "backend": backend_id()}, out)
