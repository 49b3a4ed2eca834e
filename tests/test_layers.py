"""The house reads top-down: every import goes to a lower layer (or within one, without a
circle), the core never loads a framework, and the benchmarks are not part of the package.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import zipfile
from graphlib import CycleError, TopologicalSorter

import pytest

from tests.helpers import ROOT

# Lower number, lower layer. A module may import its own layer or lower ones.
LAYERS = {
    "seqdata.errors": 0, "seqdata.checks": 0,
    "seqdata.spec": 1, "seqdata.sequences": 1, "seqdata.buckets": 1, "seqdata.progress": 1,
    "seqdata.generate": 2,
    "seqdata.store": 3,
    "seqdata.read": 4,
    "seqdata.tf": 5, "seqdata.torch": 5, "seqdata.jax": 5, "seqdata.keras": 5,
    "seqdata.cli_common": 6, "seqdata.plot": 6, "seqdata.cli": 6, "seqdata.__main__": 6,
    "seqdata": 7,  # the package's __init__: the public API, on top of everything
    "trainer": 8,
}
FRAMEWORKS = ("tensorflow", "keras", "torch", "jax")


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    """The layer of the longest matching prefix; None for modules outside the packages."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in LAYERS:
            return LAYERS[key]
    return None


def imports_of(path) -> set[str]:
    """Every module imported anywhere in the file (function bodies included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from seqdata.store import build` names a module too
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def package_files() -> dict:
    """Module name -> file, for every module of both packages."""
    files = sorted((ROOT / "seqdata").rglob("*.py")) + sorted((ROOT / "trainer").rglob("*.py"))
    return {module_name(p): p for p in files}


def package_modules() -> dict[str, set[str]]:
    """Module name -> the package modules it imports."""
    files = package_files()
    return {name: {i for i in imports_of(p) if i in files} for name, p in files.items()}


def test_every_package_module_has_a_layer():
    assert [m for m in package_modules() if layer_of(m) is None] == []


def test_imports_only_go_down():
    upward = [f"{m} -> {i}" for m, deps in package_modules().items() for i in deps
              if layer_of(i) > layer_of(m)]
    assert upward == []


def test_the_core_imports_no_framework_and_no_trainer():
    bad = [f"{m} -> {i}" for m, path in package_files().items() if layer_of(m) <= 4
           for i in imports_of(path) if i.split(".")[0] in (*FRAMEWORKS, "trainer")]
    assert bad == []


def test_no_import_circle():
    graph = {m: {d for d in deps if d != m} for m, deps in package_modules().items()}
    # A package's __init__ may re-export its children; children never import it back.
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as e:
        pytest.fail(f"import circle: {' -> '.join(e.args[1])}")


def test_no_framework_is_loaded_by_importing_the_core_or_the_bridges():
    modules = [m for m in package_files() if m.startswith("seqdata") and "__main__" not in m]
    code = ("import importlib, json, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
            f"{(*FRAMEWORKS, 'trainer')!r})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert json.loads(done.stdout) == []


def test_the_wheel_holds_the_packages_and_no_benchmark(tmp_path):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                           "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    (wheel,) = tmp_path.glob("seqdata-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "seqdata/read/dataset.py" in names and "trainer/train.py" in names
    assert [n for n in names if "bench" in n or n.startswith(("tests/", "benchmarks/"))] == []
