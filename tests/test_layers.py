"""The package's layers (docs/architecture.md): every import of a tinyproto module, including
those inside functions, points to the same layer or one below; no module imports itself back
through others (no cycles); and every module imports alone in a fresh interpreter."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "tinyproto"

# bottom to top; a module may import its own layer and the layers below it. Each entry is a
# module or subpackage under tinyproto (a subpackage covers everything inside it).
LAYERS: list[tuple[str, ...]] = [
    ("paper", "cps", "aps", "models", "timing", "plots"),  # the method and its figures
    ("comm",),  # messages and their checks
    ("config",),  # the typed Config, profiles, who takes part in a round
    ("data",),  # datasets, partitions
    ("store",),  # run folders
    ("algorithms",),  # the methods' client and server steps
    ("runtime",),  # setup, the round, clients in processes, the engine, the bench
    ("sweep", "flower", "privacy"),  # many runs; Flower apps; the attack on a run's uploads
    ("scorecard",),  # claims judged on finished runs
    ("cli", "nbtools", "__main__"),  # what a user calls
]
# the package's own __init__ imports Config eagerly and the rest lazily, by name (checked
# below): it sits in the config layer


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODULES = modules()


def resolve(name: str) -> str:
    """The module a dotted name lives in (``tinyproto.comm.Message`` -> ``tinyproto.comm``)."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def imports(mod: str) -> set[str]:
    """Every tinyproto module ``mod`` imports, anywhere in its code (functions included)."""
    path = MODULES[mod]
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                full = ".".join(base + ([node.module] if node.module else []))
            else:
                full = node.module or ""
            names = [f"{full}.{a.name}" if f"{full}.{a.name}" in MODULES else full for a in node.names]
        else:
            continue
        found |= {resolve(n) for n in names if n.split(".")[0] == "tinyproto"}
    found.discard(mod)
    return found


GRAPH = {m: imports(m) for m in MODULES}


def layer(mod: str) -> int:
    if mod == "tinyproto":
        return layer("tinyproto.config")
    first = mod.split(".")[1]
    for i, names in enumerate(LAYERS):
        if first in names:
            return i
    raise AssertionError(f"{mod}: in no layer of tests/test_layers.py (add it)")


def test_every_module_has_a_layer():
    for mod in MODULES:
        layer(mod)


def test_imports_only_point_down():
    upward = [
        f"{m} (layer {layer(m)}) imports {t} (layer {layer(t)})"
        for m, targets in GRAPH.items()
        for t in sorted(targets)
        if layer(t) > layer(m)
    ]
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_the_top_package_imports_only_config_eagerly():
    """``import tinyproto`` loads Config; run / RunResult / load_runs come lazily."""
    tree = ast.parse(MODULES["tinyproto"].read_text())
    top = {resolve(n.module) for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top <= {"tinyproto.config"}, top


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles(GRAPH)
    assert not found, f"import cycles: {found}"


def test_the_cycle_finder_finds_a_cycle():  # the check above can fail
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer("tinyproto.cli.run") > layer("tinyproto.runtime.engine")


FRESH = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for m in [m for m in sys.modules if m == "tinyproto" or m.startswith("tinyproto.")]:
        del sys.modules[m]
    try:
        importlib.import_module(name)
    except Exception as e:
        failed.append(f"{name}: {type(e).__name__}: {e}")
print("\\n".join(failed))
"""


@pytest.mark.parametrize("group", ["flower", "rest"])
def test_every_module_imports_alone(group):
    """Each module imported first, with nothing of tinyproto loaded before it (a partially
    initialised module, as ``import tinyproto.fewshot`` once was, fails here). One interpreter
    per group; tinyproto's modules are dropped from sys.modules before each import."""
    names = [
        m
        for m in MODULES
        if not m.endswith("__main__") and (m.startswith("tinyproto.flower") == (group == "flower"))
    ]
    if group == "flower":
        pytest.importorskip("flwr")
    r = subprocess.run(
        [sys.executable, "-c", FRESH, *names], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert not r.stdout.strip(), r.stdout


def test_the_public_api_is_reachable_from_the_top_package_alone():
    """``import tinyproto`` and nothing else gives run, Config, RunResult and load_runs (the
    last used to need ``import tinyproto.store`` first), without loading torch's training
    stack until one of them is used."""
    code = (
        "import sys, tinyproto\n"
        "assert 'tinyproto.runtime.engine' not in sys.modules\n"
        "assert callable(tinyproto.run) and callable(tinyproto.load_runs)\n"
        "assert tinyproto.RunResult.__name__ == 'RunResult' and tinyproto.Config\n"
        "assert set(tinyproto.__all__) <= set(dir(tinyproto))\n"
        "try:\n"
        "    tinyproto.nothing_here\n"
        "except AttributeError as e:\n"
        "    assert 'nothing_here' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
