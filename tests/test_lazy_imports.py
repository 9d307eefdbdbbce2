"""The pytest plugin pytest loads in every session where harness is installed imports no torch, and the
public names of ``harness`` and ``harness.testing``, imported on first use, are the ones type checkers
see and resolve to their defining modules' objects."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_loading_the_pytest_plugin_imports_neither_torch_nor_the_kit():
    code = ("import sys, harness.testing.pytest_plugin; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('harness.testing.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['harness.testing.pytest_plugin']"


def type_checking_names(path: Path) -> dict:
    """name -> module of the imports under ``if TYPE_CHECKING:`` in ``path``."""
    tree = ast.parse(path.read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body for alias in node.names}


@pytest.mark.parametrize("package, path", [("harness", "harness/__init__.py"),
                                           ("harness.testing", "harness/testing/__init__.py")])
def test_public_names_resolve_lazily_to_what_type_checkers_see(package, path):
    module = importlib.import_module(package)
    seen = type_checking_names(ROOT / path)
    assert module._EXPORTS == seen
    assert set(module.__all__) - {"__version__", "hookimpl"} == set(seen)
    for name, source in seen.items():
        assert getattr(module, name) is getattr(importlib.import_module(source), name)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        getattr(module, "nothing_here")
