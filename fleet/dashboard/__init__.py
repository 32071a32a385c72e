"""`fleet dashboard`: the fleet in a web browser (the optional extra `fleet[dashboard]`).

    settings.py  what it is told (address, port, logins, history), and the loopback rule
    history.py   the bounded task history in a local SQLite file (survives a restart)
    ingest.py    the events stream into the history, and live updates out to the pages
    views.py     what each page shows, as data (the JSON of /api/...)
    actions.py   what the buttons do (remote control, purge, re-send)
    auth.py      users, sessions, CSRF tokens, login throttling
    security.py  host and origin checks, security headers
    metrics.py   /metrics for Prometheus
    app.py       the ASGI app (Starlette) that ties them together
    server.py    running it under uvicorn
    static/, templates/   the pages' script, stylesheet, uPlot (vendored) and HTML shells

It sits above the engine and fleet.inspect, and only the CLI imports it: the engine never
does. Importing this package costs nothing; `missing_packages()` tells whether the extra is
installed before anything imports Starlette.
"""

from __future__ import annotations

import importlib.util

#: Modules the extra installs (module name -> the distribution that provides it).
EXTRA_MODULES = {"starlette": "starlette", "uvicorn": "uvicorn",
                 "prometheus_client": "prometheus-client"}
INSTALL_HINT = "pip install 'fleet[dashboard]'"


def missing_packages() -> list[str]:
    """The distributions of the dashboard extra that cannot be imported here."""
    missing = []
    for module, distribution in EXTRA_MODULES.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
            found = False
        if not found:
            missing.append(distribution)
    return missing
