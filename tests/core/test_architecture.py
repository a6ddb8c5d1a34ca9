"""The shape of the code: no import circles, the core never reaches into the feature apps (only the
portal may), a small top level in billing_console/, and no oversized modules.

Read from the source with `ast` (nothing is imported), so a violation fails here before it shows up
as a confusing ImportError or a tangled change somewhere else.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT_APPS = ("billing_console", "deployments", "licensing", "dunning")
FEATURE_APPS = ("licensing", "deployments", "dunning")
MAX_TOP_LEVEL_MODULES = 15
MAX_LINES = 500
# Where long files are allowed: stand-ins, tests, benchmarks and generated migrations.
LONG_FILES_ALLOWED = ("sandbox", "tests", "bench", ".venv")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _project_modules() -> dict[str, Path]:
    modules = {}
    for app in PROJECT_APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                modules[_module_name(path)] = path
    return modules


def _imports(path: Path, *, module_level_only: bool) -> list[tuple[str, str | None]]:
    """(module, imported name) pairs; name is None for `import x.y`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found.extend((alias.name, None) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.module, alias.name) for alias in node.names)
    return found


def _import_graph() -> dict[str, set[str]]:
    modules = _project_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for module, imported in _imports(path, module_level_only=True):
            # `from pkg import mod` depends on pkg.mod when that is a module, else on pkg itself.
            target = f"{module}.{imported}" if imported and f"{module}.{imported}" in modules else module
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles_among_project_modules():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_a_feature_app_outside_the_portal():
    offenders = []
    for name, path in _project_modules().items():
        if not name.startswith("billing_console") or name.startswith("billing_console.portal"):
            continue
        for module, _ in _imports(path, module_level_only=False):
            if module.split(".")[0] in FEATURE_APPS:
                offenders.append(f"{name} imports {module}")
    assert offenders == []


def test_billing_console_keeps_a_small_top_level():
    top_level = sorted(p.name for p in (ROOT / "billing_console").glob("*.py"))
    assert len(top_level) <= MAX_TOP_LEVEL_MODULES, top_level


def test_no_module_outside_sandbox_tests_and_bench_is_over_500_lines():
    too_long = []
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in LONG_FILES_ALLOWED or "migrations" in parts or "node_modules" in parts:
            continue
        lines = len(path.read_text().splitlines())
        if lines > MAX_LINES:
            too_long.append(f"{path.relative_to(ROOT)}: {lines}")
    assert too_long == []
