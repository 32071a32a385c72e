"""Rewriting a Celery settings module for fleet (`fleet upgrade settings FILE`).

Every assignment to one of Celery's setting names (see `fleet.engine.celery_names`) is
handled: a name fleet reads under its own name is renamed there, everywhere it appears in
the module (`BROKER_URL` -> `broker_url`; with `django=True`, Django settings read with
namespace "FLEET": `CELERY_BROKER_URL` -> `FLEET_BROKER_URL`); an assignment to a name fleet
has no equivalent for is commented out, with the reason on the line above. Everything else
(comments, layout, other names) is left as it was. The library returns the rewrite; the
CLI prints its diff and writes it.
"""

from __future__ import annotations

import ast
import difflib
import io
import os
import tempfile
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from fleet.engine.celery_names import CeleryName, lookup
from fleet.engine.settings import SETTINGS
from fleet.operator_errors import ConfigError, UsageError


@dataclass
class Rewrite:
    """What upgrading one settings module changes."""

    path: Path
    original: str
    text: str
    renamed: dict[str, str] = field(default_factory=dict)  #: Celery name -> fleet's
    removed: list[CeleryName] = field(default_factory=list)  #: commented out

    @property
    def changed(self) -> bool:
        return self.text != self.original

    def diff(self) -> str:
        """A unified diff from the module as it is to the module as rewritten."""
        return "".join(difflib.unified_diff(
            self.original.splitlines(keepends=True), self.text.splitlines(keepends=True),
            fromfile=str(self.path), tofile=f"{self.path} (for fleet)"))


def upgrade_file(path: str | Path, django: bool = False) -> Rewrite:
    """Read a settings module and rewrite it in memory (nothing is written)."""
    path = Path(path)
    try:
        original = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror})",
                         "give the path of a Python settings module") from None
    return upgrade_source(original, path, django)


def upgrade_source(source: str, path: Path = Path("<settings>"),
                   django: bool = False) -> Rewrite:
    """Rewrite `source` (a settings module): see the module docstring."""
    try:
        tree = ast.parse(source, str(path))
    except SyntaxError as exc:
        raise ConfigError(f"{path} is not valid Python (line {exc.lineno}: {exc.msg})",
                          "fix it first; nothing was changed") from None
    rewrite = Rewrite(path, source, source)
    removed_statements: list[tuple[ast.stmt, list[ast.stmt], CeleryName]] = []
    for statement, block in _assignments(tree.body):
        for name in _targets(statement):
            found = lookup(name, SETTINGS)
            if found is None or (django and not name.isupper()):
                continue
            if found.fleet is None:
                removed_statements.append((statement, block, found))
                rewrite.removed.append(found)
                break
            rewrite.renamed[name] = f"FLEET_{found.fleet.upper()}" if django else found.fleet
    lines = _rename(source, rewrite.renamed).splitlines(keepends=True)
    for statement, block, found in sorted(removed_statements, key=lambda s: -s[0].lineno):
        _comment_out(lines, statement, block, found)
    rewrite.text = "".join(lines)
    try:
        compile(rewrite.text, str(path), "exec")
    except SyntaxError as exc:  # pragma: no cover - a case this rewriter does not handle
        raise ConfigError(f"rewriting {path} would break it (line {exc.lineno}: {exc.msg})",
                          "edit it by hand; nothing was changed") from None
    return rewrite


def write(rewrite: Rewrite, backup: bool = True) -> Path | None:
    """Write the rewritten module in place (atomically, same permissions); with `backup`,
    keep the original as FILE.orig first. Returns the backup's path."""
    path = rewrite.path
    saved = None
    if backup:
        saved = path.with_name(path.name + ".orig")
        if saved.exists():
            raise UsageError(f"{saved} exists already",
                             "remove it, or pass --no-backup; nothing was changed")
        saved.write_text(rewrite.original)
    mode = path.stat().st_mode & 0o7777
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(rewrite.text)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return saved


def _assignments(body: list[ast.stmt]) -> list[tuple[ast.stmt, list[ast.stmt]]]:
    """Module-level assignments (also inside if/try/with blocks), with their block."""
    found = []
    for statement in body:
        if isinstance(statement, ast.Assign | ast.AnnAssign | ast.AugAssign):
            found.append((statement, body))
        for attribute in ("body", "orelse", "finalbody"):
            inner = getattr(statement, attribute, None)
            if isinstance(inner, list) and not isinstance(statement, ast.FunctionDef |
                                                          ast.AsyncFunctionDef | ast.ClassDef):
                found += _assignments(inner)
        for handler in getattr(statement, "handlers", ()):
            found += _assignments(handler.body)
    return found


def _targets(statement: ast.stmt) -> list[str]:
    targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
    return [target.id for target in targets if isinstance(target, ast.Name)]


def _rename(source: str, renamed: dict[str, str]) -> str:
    """Replace every use of the renamed names (not attributes: `x.BROKER_URL` stays)."""
    if not renamed:
        return source
    lines = source.splitlines(keepends=True)
    edits = []
    previous = None
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string in renamed and \
                not (previous is not None and previous.string == "."):
            edits.append(token)
        if token.type not in (tokenize.NL, tokenize.COMMENT):
            previous = token
    for token in reversed(edits):
        row, column = token.start
        line = lines[row - 1]
        lines[row - 1] = line[:column] + renamed[token.string] + \
            line[column + len(token.string):]
    return "".join(lines)


def _comment_out(lines: list[str], statement: ast.stmt, block: list[ast.stmt],
                 found: CeleryName) -> None:
    first, last = statement.lineno - 1, (statement.end_lineno or statement.lineno) - 1
    indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
    note = [f"{indent}# fleet: {found.given} has no equivalent ({found.reason})\n"]
    if len(block) == 1:  # the block would be empty without it
        note.append(f"{indent}pass\n")
    commented = [f"{indent}# {line[len(indent):]}" if line.strip() else line
                 for line in lines[first:last + 1]]
    lines[first:last + 1] = note + commented
