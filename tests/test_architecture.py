"""The dependency rules of docs/ARCHITECTURE.md, checked on the source.

Every ``import`` of every module of the project (at module level and inside
functions) is read with ``ast``; each package may import only the packages its rule
lists, nothing imports ``tests``, and the module graph has no circle. Then, in a fresh
interpreter, the RTL and ``make verilog``'s generator run without torch or numpy.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: package -> the project packages its modules may import (itself included). A module
#: may import a listed package or anything below it.
ALLOWED = {
    "golden.format": {"golden.format"},
    "golden.llm": {"golden.llm"},
    "golden.pipeline": {"golden.pipeline", "golden.format", "golden.llm"},
    "golden": {"golden.format"},  # the package face: the format's names, lazily
    "hw": {"hw", "golden.format.params"},
    "sim": {"sim", "hw", "golden.format"},
    "fpga": {"fpga", "hw", "golden.format"},
    "bench": {"bench", "sim", "hw", "golden"},
}
PROJECT = ("golden", "hw", "sim", "fpga", "bench", "tests")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for top in ("golden", "hw", "sim", "fpga", "bench"):
        for path in sorted((REPO / top).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Project modules (or packages) that ``name`` imports, anywhere in its source."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            # `from package import module` imports the module
            targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in MODULES else source
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t.split(".")[0] in PROJECT)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _rule(module: str) -> str:
    """The most specific package of ALLOWED that holds ``module``."""
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)


def _within(target: str, package: str) -> bool:
    return target == package or target.startswith(package + ".")


def test_every_module_is_under_a_rule():
    assert len(MODULES) > 40
    for module in MODULES:
        assert _rule(module), module


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_arrow_runs_back_up(package):
    broken = [f"{module} imports {target}"
              for module, targets in GRAPH.items() if _rule(module) == package
              for target in sorted(targets) if not any(_within(target, ok) for ok in ALLOWED[package])]
    assert not broken, f"{package} may import only {sorted(ALLOWED[package])}:\n" + "\n".join(broken)


def test_nothing_imports_tests():
    assert not [m for m, targets in GRAPH.items() if any(_within(t, "tests") for t in targets)]


def test_no_import_circle():
    done, active, path = set(), set(), []

    def visit(module):
        if module in active:
            cycle = path[path.index(module):] + [module]
            raise AssertionError("import circle: " + " -> ".join(cycle))
        if module in done:
            return
        active.add(module)
        path.append(module)
        for target in sorted(GRAPH.get(module, ())):
            if target in MODULES:
                visit(target)
        path.pop()
        active.discard(module)
        done.add(module)

    for module in MODULES:
        visit(module)


def test_the_checker_sees_violations():
    """The rules above can fail: a planted back-arrow and a planted circle are found."""
    assert "golden.format.params" in GRAPH["hw.decoder"]
    assert "golden.format.container" in GRAPH["golden.format.codec"]
    assert any(_within(t, "golden.format") for t in GRAPH["golden.pipeline.encoded_model"])
    assert not any(_within(t, ok) for t in ["golden.format.codec"] for ok in ALLOWED["hw"])
    assert not any(_within(t, ok) for t in ["golden.pipeline.cli"] for ok in ALLOWED["golden.llm"])


RTL_WITHOUT_TORCH = """
import sys, tempfile
import hw.axis, hw.decoder, hw.encoder, hw.simulation, hw.verilog
import golden
assert golden.FormatParams is hw.decoder.FormatParams
status = hw.verilog.main(["--out", tempfile.mkdtemp(), "--no-lint"])
assert status == 0, status
heavy = sorted(m for m in ("torch", "numpy") if m in sys.modules)
assert not heavy, f"the RTL imported {heavy}"
"""


def test_rtl_and_make_verilog_need_no_torch():
    """``hw/`` and ``make verilog``'s generator run in an interpreter that never
    imports torch or numpy (a subprocess: this one has imported them already)."""
    result = subprocess.run([sys.executable, "-c", RTL_WITHOUT_TORCH], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "cassandra_decoder.v" in result.stdout


def test_public_api_resolves_lazily():
    """The README's import works, and ``import golden`` alone stays light."""
    result = subprocess.run([sys.executable, "-c", (
        "import sys, golden\n"
        "assert 'torch' not in sys.modules\n"
        "from golden import FormatParams, encode, decode, magnitude_topk_mask, keep_count, EncodedTensor\n"
        "import golden.format.codec as codec, golden.format.container as container\n"
        "assert encode is codec.encode and EncodedTensor is container.EncodedTensor\n"
        "assert set(golden.__all__) <= set(dir(golden))\n"
        "try:\n    golden.no_such_name\nexcept AttributeError as error:\n    assert 'no_such_name' in str(error)\n"
        "else:\n    raise SystemExit('no AttributeError')\n")], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
