"""The layout rules of docs/architecture.md, checked on the source:

- the core (harness/) never imports a built-in plugin and holds no metric name as a string literal
  (report, gate and --metric read the metrics' declarations);
- a built-in plugin imports only the public harness API and modules of its own group
  (harness_plugins/models, harness_plugins/datasets, harness_plugins/metrics), never another group.
"""

import ast
import io
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE = sorted((REPO / "harness").rglob("*.py"))
PLUGINS = sorted((REPO / "harness_plugins").rglob("*.py"))


def imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative: resolve against the file's package (level 1 is the package itself)
                package = path.relative_to(path.parents[len(path.relative_to(REPO).parts) - 2]).parent.parts
                package = package[: len(package) - (node.level - 1)]
                root = "harness_plugins" if path.is_relative_to(REPO / "harness_plugins") else "harness"
                names.add(".".join((root, *package, node.module)))
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(REPO)))
def test_the_core_imports_no_built_in_plugin(path):
    assert not [m for m in imported_modules(path) if m.split(".")[0] in ("harness_plugins", "plugins")]


# Strings in the core that equal a metric's name but mean something else (the word "density").
NOT_METRIC_NAMES = {
    ("harness/artifacts.py", "density"): "the key of an artifact's density-grid file",
    ("harness/testing/datasets.py", "density"): "the name of the kit's true-density check of a dataset",
}


def test_no_metric_name_is_a_string_literal_in_the_core(host):
    names = {name for spec in host.registry.metrics.values() for name in (spec.name, *spec.output_names)}
    assert {"nll", "bpd", "fid", "sample_throughput"} <= names  # the built-ins are loaded
    found = []
    for path in CORE:
        for tok in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
            if tok.type == tokenize.STRING:
                try:
                    value = ast.literal_eval(tok.string)
                except (ValueError, SyntaxError):
                    continue
                rel = path.relative_to(REPO).as_posix()
                if isinstance(value, str) and value.split("@")[0] in names and (rel, value) not in NOT_METRIC_NAMES:
                    found.append(f"{path.relative_to(REPO)}:{tok.start[0]} {tok.string}")
    assert not found, "metric names hard-coded in the core:\n" + "\n".join(found)


@pytest.mark.parametrize("path", PLUGINS, ids=lambda p: str(p.relative_to(REPO)))
def test_a_plugin_imports_only_the_harness_api_and_its_own_group(path):
    group = path.relative_to(REPO / "harness_plugins").parts[0]
    for module in imported_modules(path):
        parts = module.split(".")
        if parts[0] == "harness_plugins" and len(parts) > 1:
            assert parts[1] == group, f"{path.relative_to(REPO)} imports {module} from another plugin group"
        assert parts[0] != "plugins", f"{path.relative_to(REPO)} imports {module}: use harness_plugins"
