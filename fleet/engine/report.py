"""An app's report: versions, platform and settings, secrets masked.

`fleet report` prints it for the app it loads; a node answers the remote `report` command
(`fleet inspect report`) with its own.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import TYPE_CHECKING, Any

from fleet import __version__
from fleet.engine.transport import mask_url, scheme_of

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

DEPENDENCIES = ("click", "psutil", "redis", "filelock", "tomli_w", "setproctitle")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def build_report(app: Fleet, app_spec: str | None = None) -> dict[str, Any]:
    return {
        "software": {"fleet": __version__, "python": platform.python_version(),
                     "implementation": platform.python_implementation(),
                     **{name: _version(name) for name in DEPENDENCIES}},
        "platform": {"system": platform.system(), "release": platform.release(),
                     "machine": platform.machine(), "executable": sys.executable},
        "app": {"spec": app_spec, "main": app.main, "tasks": sorted(app.tasks)},
        "transport": {"broker": mask_url(app.broker_url), "broker_kind": scheme_of(app.broker_url),
                      "results": mask_url(app.result_backend_url)},
        "settings": {name: {"value": value, "from": app.conf.source(name)}
                     for name, value in app.conf.masked(only_changed=True).items()},
    }


def format_report(data: dict[str, Any]) -> str:
    software = data["software"]
    lines = [
        "software -> " + " ".join(f"{name}:{version}" for name, version in software.items()),
        "platform -> " + " ".join(f"{k}:{v}" for k, v in data["platform"].items()),
        f"app      -> {data['app']['spec'] or '(none)'} "
        f"({len(data['app']['tasks'])} tasks)",
        f"broker   -> {data['transport']['broker']}",
        f"results  -> {data['transport']['results']}",
        "settings -> " + ("(all defaults)" if not data["settings"] else ""),
    ]
    for name, item in sorted(data["settings"].items()):
        lines.append(f"    {name} = {item['value']!r}  [{item['from']}]")
    return "\n".join(lines)
