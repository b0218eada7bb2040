"""The layout holds: dependencies run one way, the libvirt layer stays free of Django, the typed
core type-checks. A new import circle, a second libvirt importer or a type error fails here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"tests", "bench", "migrations", ".venv", "node_modules", "var", ".git", "staticfiles", "docs", "deploy"}
# the order apps may import each other in: an app imports only apps before it
LAYERS = [
    "virt",
    "core",
    "audit",
    "accounts",
    "hosts",
    "jobs",
    "vms",
    "migration",
    "storage",
    "networks",
    "provisioning",
    "snapshots",
    "console",
    "dashboard",
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if any(part in SKIP for part in rel.parts) or len(rel.parts) == 1:
            continue
        name = ".".join(rel.with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(name: str, path: Path) -> set[str]:
    """Every project module ``name`` imports, function-local imports and TYPE_CHECKING blocks too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            module = _resolve(target)
            if module and module != name and not name.startswith(module + "."):
                found.add(module)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10000)
    for v in GRAPH:
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_through_others():
    assert _cycles() == []


def test_apps_import_only_the_layers_below_them():
    wrong = []
    for name, imported in GRAPH.items():
        app = name.split(".")[0]
        if app not in LAYERS:
            continue
        for module in imported:
            other = module.split(".")[0]
            if other in LAYERS and other != app and LAYERS.index(other) > LAYERS.index(app):
                wrong.append(f"{name} imports {module}")
    assert wrong == []


def test_every_app_has_its_place_in_the_layers():
    apps = {name.split(".")[0] for name in MODULES} - {"lab"}
    assert apps <= set(LAYERS), f"place {sorted(apps - set(LAYERS))} in LAYERS"


def test_virt_has_no_django_and_is_the_only_libvirt_importer():
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level}
        tops = {n.split(".")[0] for n in names}
        if name.startswith("virt"):
            assert not tops & {"django", "rest_framework", "channels", "celery"}, name
        elif not name.startswith("lab"):
            assert "libvirt" not in tops, f"{name} imports libvirt: go through virt/"


@pytest.mark.timeout(600)
def test_the_typed_core_type_checks():
    """mypy (with django-stubs) over the libvirt layer, the job engine and every events module."""
    targets = ["virt", "jobs", "core/realtime.py", "hosts/events.py", "vms/events.py", "migration/events.py", "networks/events.py",
               "hosts/inventory.py", "core/pages.py", "core/dispatch.py"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "mypy", *targets], cwd=ROOT, capture_output=True, text=True, timeout=580
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
