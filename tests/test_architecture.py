"""The package's structure, read from its own imports: no circles (imports inside functions counted), every import
inside a function says why it is there, there are fewer than 100 of them, and the light paths stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "pacebench"
MAX_FUNCTION_IMPORTS = 100


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue  # Alembic loads these by path
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def target(name: str, mods: dict[str, Path], own: str) -> str | None:
    """The package module an imported name lands in (its longest known prefix), or None outside the package."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name if name and name != own else None


def imports(path: Path) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement of a module with whether it sits inside a function (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text())
    inside, typing_only = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            inside |= {id(child) for child in ast.walk(node) if child is not node}
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(child) for child in ast.walk(node)}
    return [
        (n, id(n) in inside)
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom) and id(n) not in typing_only
    ]


def graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports. `from pkg import a, b` reaches each of a, b that is a module (else
    pkg itself); and importing a module first runs every package above it (its `__init__`), so an import of
    `x.y.z` also reaches `x.y` and `x` (a module's own packages run before it anyway and are left out)."""
    mods = modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for node, _ in imports(path):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                    base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                reached = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                reached = [alias.name for alias in node.names]
            for candidate in reached:
                if candidate.split(".")[0] != "pacebench" or not (t := target(candidate, mods, name)):
                    continue
                parts = t.split(".")
                for i in range(2, len(parts) + 1):
                    step = ".".join(parts[:i])
                    if step in mods and step != name and not name.startswith(step + "."):
                        edges[name].add(step)
    return edges


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_circle_counting_imports_inside_functions():
    edges = graph()
    assert sum(len(e) for e in edges.values()) > 100, "the graph was read"  # a parser that finds nothing passes
    assert circles(edges) == []


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def comment(lines: list[str], first: int, last: int) -> str:
    """The first comment on lines first..last (1-based, inclusive) or on the line just above them, "" if none."""
    above = lines[first - 2].strip() if first > 1 else ""
    if above.startswith("#"):
        return above.lstrip("# ")
    for line in lines[first - 1 : last]:
        if "#" in line and line.split("#", 1)[1].strip():
            return line.split("#", 1)[1].strip()
    return ""


def function_imports() -> list[tuple[Path, int, str]]:
    """(file, line, the reason it gives, "" if none) of every import inside a function. One reason covers a run of
    imports written together (`from a import x` / `from b import y`): it sits on the first of them or above it."""
    out = []
    for path in modules().values():
        lines = path.read_text().splitlines()
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for body in (n.body for n in ast.walk(node) if hasattr(n, "body") and isinstance(n.body, list)):
                block: list[ast.stmt] = []
                for stmt in [*body, None]:
                    if isinstance(stmt, ast.Import | ast.ImportFrom):
                        block.append(stmt)
                        continue
                    if block:
                        why = comment(lines, block[0].lineno, block[0].end_lineno or block[0].lineno)
                        out += [(path, n.lineno, why) for n in block]
                    block = []
    return sorted(set(out))


def test_imports_inside_functions_are_few_and_each_says_why():
    found = function_imports()
    assert len(found) < MAX_FUNCTION_IMPORTS, f"{len(found)} imports inside functions"
    silent = [f"{p.relative_to(PACKAGE.parent)}:{line}" for p, line, reason in found if not reason]
    assert silent == [], "an import inside a function keeps a heavy or optional package off a light path; say which"


def test_plan_and_the_cli_do_not_import_torch_at_module_level():
    """`pacebench --help` and planning's pure parts start without torch; only function bodies may reach it."""
    heavy = {"torch", "timm", "transformers", "peft", "matplotlib"}
    light = [
        p
        for name, p in modules().items()
        if name.startswith("pacebench.cli") or name in ("pacebench.plan.spec", "pacebench.plan.suites")
    ]
    for path in light:
        for node, inside in imports(path):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            assert inside or not any(n.split(".")[0] in heavy for n in names), f"{path.name}: {names}"


def test_help_never_imports_torch_pandas_or_sqlalchemy():
    """What keeps `pacebench --help` under half the time of `import torch` (benchmarks/cli_startup.py measures it):
    the command line's own modules load no heavy package (a command's help that lists a registry, `run --help`'s
    methods say, loads that registry when it is shown)."""
    code = (
        "import sys\nfrom pacebench.cli import main\n"
        "for argv in (['--help'], ['status', '--help'], ['db', '--help']):\n"
        "    sys.argv = ['pacebench', *argv]\n    try:\n        main()\n    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'pandas', 'sqlalchemy', 'timm', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
