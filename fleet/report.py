"""`fleet report`: versions, platform and settings, secrets masked.

The report itself is built in the engine (`fleet.engine.report`), since a node answers the
remote `report` command with it; the names stay importable from here for the CLI.
"""

from __future__ import annotations

from fleet.engine.report import DEPENDENCIES, build_report, format_report

__all__ = ["DEPENDENCIES", "build_report", "format_report"]
