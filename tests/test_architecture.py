"""The layout rules of docs/architecture.md, checked on the source:

- the core (harness/) never imports a built-in plugin and holds no metric name as a string literal
  (report, gate and --metric read the metrics' declarations), and compares no unit with a string (what a
  number is comes from its output's declared role and scaling);
- the report and the regression gate do not import each other (both use harness.comparison);
- a built-in plugin imports only the public harness API and modules of its own group
  (harness_plugins/models, harness_plugins/datasets, harness_plugins/metrics), never another group;
- the module map of docs/architecture.md lists every module of the core and every module or package of
  a plugin group, and nothing else;
- every module is under 400 lines and starts with a docstring.
"""

import ast
import io
import re
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


# ---------------------------------------------------------------------------- the module map

MAP_HEADING = "## Module map"
MAP_ENTRY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.py|/)) {2,}(?P<concept>\S.*)$")


def module_map() -> dict:
    """path -> concept of every line of the map's code block (folders end in "/"); a line that is not
    ``name  concept`` indented two spaces a level under its folder fails."""
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text[text.index(MAP_HEADING):].split("```text\n", 1)[1].split("```", 1)[0]
    entries, folders = {}, []
    for number, line in enumerate(block.splitlines(), 1):
        match = MAP_ENTRY.match(line)
        assert match and len(match["indent"]) % 2 == 0, f"map line {number} is not 'name  concept': {line!r}"
        depth = len(match["indent"]) // 2
        assert depth <= len(folders), f"map line {number} is indented deeper than its folder: {line!r}"
        folders = folders[:depth]
        path = "".join(folders) + match["name"]
        assert path not in entries, f"{path} is listed twice in the module map"
        entries[path] = match["concept"]
        if path.endswith("/"):
            folders.append(match["name"])
    return entries


def required_entries() -> set:
    """Every module and package of the core; every plugin group, and each module or package in it."""
    required = set()
    for path in CORE:
        rel = path.relative_to(REPO)
        required |= {rel.as_posix()} | {f"{p.as_posix()}/" for p in rel.parents if p != Path(".")}
    required.add("harness_plugins/")
    for group in sorted(p for p in (REPO / "harness_plugins").iterdir() if (p / "__init__.py").is_file()):
        required.add(f"harness_plugins/{group.name}/")
        for member in group.iterdir():
            if member.suffix == ".py" and member.name != "__init__.py":
                required.add(f"harness_plugins/{group.name}/{member.name}")
            elif (member / "__init__.py").is_file():
                required.add(f"harness_plugins/{group.name}/{member.name}/")
    return required


def test_the_module_map_lists_every_module():
    missing = sorted(required_entries() - set(module_map()))
    assert not missing, "docs/architecture.md's module map does not list:\n" + "\n".join(missing)


def test_the_module_map_lists_only_modules_that_exist():
    gone = [path for path in module_map() if not ((REPO / path).is_dir() if path.endswith("/")
                                                  else (REPO / path).is_file())]
    assert not gone, "docs/architecture.md's module map lists what does not exist:\n" + "\n".join(gone)


# ---------------------------------------------------------------------------- module size and docstring

LINE_LIMIT = 400


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("path", CORE + PLUGINS, ids=lambda p: str(p.relative_to(REPO)))
def test_a_module_is_under_the_line_limit_and_starts_with_its_concept(path):
    tree = ast.parse(path.read_text())
    first = tree.body[0] if tree.body else None
    docstring = ast.get_docstring(tree)
    assert isinstance(first, ast.Expr) and docstring and docstring.splitlines()[0].strip(), \
        f"{path.relative_to(REPO)} does not start with a docstring whose first line states its concept"
    assert line_count(path) < LINE_LIMIT, f"{path.relative_to(REPO)} has {line_count(path)} lines"


def _modules_under(package: str) -> list:
    return sorted((REPO / "harness" / package).rglob("*.py"))


@pytest.mark.parametrize("package, other", [("report", "regression"), ("regression", "report")])
def test_report_and_regression_do_not_import_each_other(package, other):
    """Both read harness.comparison and harness.summary; neither reaches into the other, not even inside a
    function (every import statement of the file counts)."""
    found = [f"{path.relative_to(REPO)} imports {module}" for path in _modules_under(package)
             for module in imported_modules(path) if module == f"harness.{other}" or
             module.startswith(f"harness.{other}.")]
    assert not found, "\n".join(found)


def _names_bound_to_strings(tree) -> set:
    """Module-level names assigned a string, or a tuple, list or set of strings."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and _is_strings(node.value, set()):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def _is_strings(node, names: set) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return bool(node.elts) and all(_is_strings(e, names) for e in node.elts)
    return isinstance(node, ast.Name) and node.id in names


def _is_unit(node) -> bool:
    """``unit``, ``x.unit``, ``x["unit"]`` or ``x.get("unit")``."""
    if isinstance(node, ast.Name):
        return node.id == "unit"
    if isinstance(node, ast.Attribute):
        return node.attr == "unit"
    if isinstance(node, ast.Subscript):
        return isinstance(node.slice, ast.Constant) and node.slice.value == "unit"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get":
        return bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == "unit"
    return False


@pytest.mark.parametrize("path", CORE, ids=lambda p: str(p.relative_to(REPO)))
def test_the_core_reads_no_unit_string(path):
    """Units are for people: what a number is (a likelihood, a speed figure, a rate or a duration) comes
    from its output's declared role and scaling, never from comparing its unit with a string."""
    source = path.read_text()
    tree = ast.parse(source)
    strings = _names_bound_to_strings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            if any(_is_unit(o) for o in operands) and any(_is_strings(o, strings) for o in operands):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    assert not found, "unit strings compared in the core:\n" + "\n".join(found)
    assert "time_dependence" not in source, "how a speed figure scales is its output's declared scaling"
