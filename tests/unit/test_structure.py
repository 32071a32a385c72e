"""The shape of the code, checked by walking fleet/ with `ast`: no module over 600 lines, no
class over 400, no function over 60 (counted from the `def` line to the last line of its
body, docstring included); no import circle inside the engine; the engine never imports the
layers above it; and a web process that sends tasks loads no node code."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "fleet"

MAX_MODULE, MAX_CLASS, MAX_FUNCTION = 600, 400, 60

#: Exceptions to the size limits, each with its reason ("path" or "path:Qualified.name").
#: Empty: every module, class and function in fleet/ is within the limits.
ALLOWED: set[str] = set()

#: What the engine must never import: the layers above it.
ABOVE_THE_ENGINE = ("fleet.cli", "fleet.inspect", "fleet.report", "fleet.multi",
                    "fleet.worker_setup", "fleet.app_options", "fleet.config_file",
                    "fleet.dashboard")

#: The node side of the engine: a process that only sends tasks never loads these.
NODE_SIDE = ("fleet.engine.worker", "fleet.engine.node", "fleet.engine.pool",
             "fleet.engine.execute", "fleet.engine.lifecycle", "fleet.engine.control",
             "fleet.engine.event_sender",
             "fleet.engine.beat", "fleet.engine.autoscale", "fleet.engine.health",
             "fleet.engine.sd_notify", "fleet.engine.log")


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _oversized() -> list[str]:
    """Every module, class and function over its limit, as 'path[:name] (N lines)'."""
    found = []
    for path in _modules().values():
        where = path.relative_to(ROOT).as_posix()
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MAX_MODULE:
            found.append((where, lines))
        found += [(f"{where}:{name}", size) for name, size, limit in _definitions(source)
                  if size > limit]
    return [f"{where} ({size} lines)" for where, size in found if where not in ALLOWED] + \
        [f"{where}: allowed but no longer too big, take it off ALLOWED" for where in
         ALLOWED - {where for where, _ in found}]


def _definitions(source: str) -> list[tuple[str, int, int]]:
    """(qualified name, lines, limit) of every class and function."""
    result = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                limit = MAX_CLASS if isinstance(child, ast.ClassDef) else MAX_FUNCTION
                result.append((name, child.end_lineno - child.lineno + 1, limit))
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return result


def _imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The fleet modules `module` imports when it runs (at the top or inside functions;
    not under `if TYPE_CHECKING:`)."""
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.Import):
                names.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and not child.level:
                names.add(child.module)
                names.update(f"{child.module}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    found = set()
    for name in names:
        owner = name
        while owner and owner not in known:
            owner = owner.rpartition(".")[0]
        if owner and owner != module:
            found.add(owner)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (strongly connected parts of more than one module)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def connect(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in graph[module]:
            if other not in index:
                connect(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            part = []
            while True:
                other = stack.pop()
                part.append(other)
                if other == module:
                    break
            if len(part) > 1:
                circles.append(sorted(part))

    for module in graph:
        if module not in index:
            connect(module)
    return circles


def _engine_graph() -> dict[str, set[str]]:
    known = _modules()
    return {module: _imports(module, path, known) for module, path in known.items()
            if module.startswith("fleet.engine")}


def test_no_module_class_or_function_is_too_big():
    assert _oversized() == []


def test_nothing_in_the_engine_is_allowed_to_be_too_big_outside_the_transports():
    assert all(where.startswith("fleet/engine/transport/") or
               not where.startswith("fleet/engine/") for where in ALLOWED)


def test_the_engine_has_no_import_circle():
    graph = _engine_graph()
    inside = {module: {other for other in imported if other in graph}
              for module, imported in graph.items()}
    assert _cycles(inside) == []


def test_the_engine_never_imports_the_layers_above_it():
    wrong = {module: sorted(other for other in imported if other.startswith(ABOVE_THE_ENGINE))
             for module, imported in _engine_graph().items()}
    assert {module: others for module, others in wrong.items() if others} == {}


def test_the_checks_find_what_they_look_for():
    sizes = _definitions("class A:\n    def f(self):\n        return 1\n")
    assert sizes == [("A", 3, MAX_CLASS), ("A.f", 2, MAX_FUNCTION)]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


WEB_PROCESS = """
import json, sys
from fleet import Fleet, chain, group
app = Fleet("web", broker="memory://web", task_send_sent_event=True)

@app.task
def add(x, y):
    return x + y

result = add.delay(1, 2)
result.state
add.apply_async((1, 2), countdown=10, expires=60)
chain(add.s(1, 2), add.s(3)).delay()
group(add.s(i, i) for i in range(3)).delay()
add.map([(1, 2)]).delay()
app.send_task("other.task", (1,))
result.revoke()
app.control.ping(timeout=0.1)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("fleet"))))
"""


def test_a_web_process_that_sends_tasks_loads_no_node_code():
    ran = subprocess.run([sys.executable, "-c", WEB_PROCESS], capture_output=True, text=True,
                         cwd=ROOT, timeout=60, check=False)
    assert ran.returncode == 0, ran.stderr
    loaded = json.loads(ran.stdout)
    assert "fleet.engine.sending" in loaded and "fleet.engine.remote" in loaded
    assert [name for name in loaded if name.startswith(NODE_SIDE + ABOVE_THE_ENGINE)] == []
