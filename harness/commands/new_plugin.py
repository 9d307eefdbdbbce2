"""`harness new-plugin NAME [--kind model|dataset|metric] [--dir DIR]`: write a plugin package that
installs and passes `harness check NAME` as generated.

DIR/NAME/ gets pyproject.toml (the entry point in the group ``harness``), README.md, the package
``harness_<name>`` with the plugin module (a working diagonal-Gaussian model, synthetic dataset with
its true density, or sample-mean metric, all named NAME) and tests/ with a test that runs the
conformance kit. An existing DIR/NAME, a bad NAME, or a NAME already registered is a usage error
(exit 2); the files are written to a temporary directory and moved into place, so nothing is left
half-written.
"""

from __future__ import annotations

import os
import re
import shutil
import string
import tempfile
from importlib import resources
from pathlib import Path

from harness import __version__
from harness.cli_support.output import emit
from harness.contracts import UserError

NAME = "new-plugin"
HELP = "write a new plugin package (model, dataset or metric) with a test that runs the conformance kit"
KINDS = ("model", "dataset", "metric")
VALID_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
KIND_TEXT = {
    "model": ("A diagonal Gaussian model fitted in closed form (a harness model plugin).",
              "python -m harness run --model {name} --profile smoke   # train and measure it"),
    "dataset": ("A correlated 2-D Gaussian dataset with its true density (a harness dataset plugin).",
                "python -m harness run --dataset {name} --model gaussian --profile smoke   # a model on it"),
    "metric": ("The distance between the means of model samples and test data (a harness metric plugin).",
               "python -m harness run --model gaussian --dataset 8gaussians --metric {name} --profile smoke"),
}


def configure(parser) -> None:
    parser.add_argument("name", metavar="NAME",
                        help="the plugin's name: lowercase letters, digits, - and _, starting with a letter; it "
                             "names the entry point and what the plugin registers")
    parser.add_argument("--kind", choices=KINDS, default="model", help="what the plugin adds (default model)")
    parser.add_argument("--dir", type=Path, default=Path("."), help="where to create NAME/ (default: here)")
    parser.add_argument("--format", choices=["table", "json"], default="table",
                        help="table for people (default), json for machines (what was written)")


def files(name: str, kind: str) -> dict:
    """{relative path: text} of the package for ``name`` and ``kind``."""
    ident = name.replace("-", "_")
    package = f"harness_{ident}"
    description, try_it = KIND_TEXT[kind]
    values = {
        "name": name, "ident": ident, "package": package, "dist": f"harness-{name}", "kind": kind,
        "description": description, "try_it": try_it.format(name=name),
        "class_name": "".join(part.capitalize() for part in re.split(r"[-_]", name)) + "Model",
        "harness_requirement": _compatible(__version__),
    }
    layout = {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        f"{package}/__init__.py": "__init__.py.tmpl",
        f"{package}/plugin.py": f"{kind}.py.tmpl",
        f"tests/test_{ident}.py": "test_plugin.py.tmpl",
    }
    root = resources.files("harness.commands") / "templates" / "new_plugin"
    return {path: string.Template((root / template).read_text()).substitute(values)
            for path, template in layout.items()}


def _compatible(version: str) -> str:
    """The requirement a plugin written against harness ``version`` declares: this minor release and its
    patches (before 1.0 a minor release may change the contracts, as 0.2 changed ModelSpec)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    return f"harness>={major}.{minor},<{major}.{minor + 1}" if major == 0 else f"harness>={major}.{minor},<{major + 1}"


def _refuse(name: str, target: Path, host) -> None:
    if not VALID_NAME.match(name):
        raise UserError(f"plugin name {name!r}: use lowercase letters, digits, - and _, starting with a letter "
                        "(at most 40 characters)")
    reg = host.registry
    for what, table in (("model", reg.models), ("dataset", reg.datasets), ("metric", reg.metrics)):
        if name in table:
            raise UserError(f"a {what} named {name!r} is already registered (by plugin "
                            f"{host.owner(what + 's', name)!r}); choose another name")
    if name in host.plugins:
        raise UserError(f"a plugin named {name!r} is already installed; choose another name")
    if target.exists():
        raise UserError(f"{target} already exists; refusing to overwrite it (remove it or choose another name)")
    if not target.parent.is_dir():
        raise UserError(f"--dir {target.parent} is not a directory")


def _readable(root: Path) -> None:
    """Give the staging directory (created private) the permissions a new directory normally gets."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _shell_path(path: Path) -> str:
    """``path`` as pip must be given it: a bare name would be looked up in the package index."""
    text = path.as_posix()
    return text if path.is_absolute() or text.startswith(".") else f"./{text}"


def execute(args, host) -> int:
    target = args.dir / args.name
    _refuse(args.name, target, host)
    content = files(args.name, args.kind)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.name}-", dir=target.parent))
    try:
        for path, text in content.items():
            out = staging / path
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text)
        _readable(staging)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    written = sorted(str(target / p) for p in content)
    if args.format == "json":
        emit({"name": args.name, "kind": args.kind, "directory": str(target), "files": written}, "json")
        return 0
    print(f"wrote a {args.kind} plugin in {target}/:")
    for path in written:
        print(f"  {path}")
    print("\nnext:")
    print(f"  python -m pip install {_shell_path(target)}")
    print(f"  python -m harness check {args.name}")
    print(f"  {KIND_TEXT[args.kind][1].format(name=args.name)}")
    print(f"  python -m pytest {_shell_path(target)}")
    return 0
