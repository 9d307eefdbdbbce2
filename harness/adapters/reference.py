"""References to Python objects in the user's own code: ``py:PACKAGE.MODULE:FACTORY``.

:func:`parse` checks the syntax (an optional ``LABEL=`` in front names the model in the tables);
:meth:`Reference.load` imports the module and finds the attribute, turning every failure into a
:class:`harness.UserError` that shows the import error, the missing attribute or what the attribute is
instead of a function. The current directory is searched as ``python -m`` searches it (also when the
harness runs as the ``harness`` script), and the folder the module was found under travels with the
reference (:attr:`Reference.path_entry`), so a worker process imports the same file.

:func:`package_version` is the version every result records: that of the installed distribution whose files
hold the module (``importlib.metadata``), or ``unversioned`` for code that is not installed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from harness.errors import UserError

PREFIX = "py:"
UNVERSIONED = "unversioned"
SYNTAX = "py:PACKAGE.MODULE:FACTORY (e.g. py:my_models:make_flow)"
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LABEL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def is_reference(text) -> bool:
    """Whether a ``--model`` value is a reference (``py:...`` or ``LABEL=py:...``) rather than a name."""
    if not isinstance(text, str):
        return False
    _, _, rest = text.partition("=") if "=" in text else ("", "", text)
    return rest.startswith(PREFIX)


@dataclass(frozen=True)
class Reference:
    """``py:MODULE:ATTRIBUTE`` with an optional label; ``text`` is the reference without the label."""

    module: str
    attribute: str
    label: Optional[str] = None
    path_entry: Optional[str] = None  # the sys.path folder the module was imported from (set by located)

    @property
    def text(self) -> str:
        return f"{PREFIX}{self.module}:{self.attribute}"

    @property
    def name(self) -> str:
        """The name in the tables: the label, else the attribute's own name."""
        return self.label or self.attribute.rsplit(".", 1)[-1]

    @property
    def spelled(self) -> str:
        """How the user writes it on the command line and in config.toml (label included)."""
        return f"{self.label}={self.text}" if self.label else self.text

    @property
    def package(self) -> str:
        return self.module.split(".")[0]

    def load(self) -> Any:
        """The referenced attribute; :class:`UserError` saying why it cannot be had."""
        module = import_module(self.module, self.text, self.path_entry)
        obj = module
        for i, part in enumerate(self.attribute.split(".")):
            if not hasattr(obj, part):
                where = self.module + "".join("." + p for p in self.attribute.split(".")[:i])
                raise UserError(f"{self.text}: {where} has no attribute {part!r}{_offer(obj)}")
            obj = getattr(obj, part)
        return obj

    def located(self) -> "Reference":
        """This reference with :attr:`path_entry` set to where the module is imported from."""
        module = import_module(self.module, self.text, self.path_entry)
        return Reference(self.module, self.attribute, self.label, _path_entry(module, self.module))


def parse(text: str, what: str = "--model") -> Reference:
    """``[LABEL=]py:PACKAGE.MODULE:FACTORY`` -> :class:`Reference`; :class:`UserError` on bad syntax."""
    label = None
    body = text
    if "=" in text and not text.startswith(PREFIX):
        label, _, body = text.partition("=")
        if not _LABEL.match(label):
            raise UserError(f"{what} {text}: the label {label!r} must be letters, digits, _ . + - (a model name)")
    if not body.startswith(PREFIX):
        raise UserError(f"{what} {text}: expected {SYNTAX}")
    module, colon, attribute = body[len(PREFIX):].partition(":")
    if not colon or not _DOTTED.match(module) or not _DOTTED.match(attribute):
        raise UserError(f"{what} {text}: expected {SYNTAX}; the module is a dotted import path and FACTORY a "
                        "function (or class) in it")
    return Reference(module, attribute, label)


def import_module(name: str, reference: str, path_entry: Optional[str] = None):
    """Import ``name``; the current directory (and ``path_entry``) are searched after ``sys.path``. An
    import that fails is a :class:`UserError` that shows the error and where the module was looked for."""
    for folder in (os.getcwd(), path_entry):
        if folder and folder not in sys.path:
            sys.path.append(folder)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise UserError(f"{reference}: cannot import {name} ({type(exc).__name__}: {exc}); the module must be "
                            f"importable from the current directory ({os.getcwd()}) or PYTHONPATH") from None
        raise UserError(f"{reference}: importing {name} failed: {type(exc).__name__}: {exc}{_origin(exc)}") from None
    except Exception as exc:  # the module's own code failed (ImportError of a dependency, SyntaxError, ...)
        raise UserError(f"{reference}: importing {name} failed: {type(exc).__name__}: {exc}{_origin(exc)}") from None


def _origin(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if "importlib" not in f.filename]
    if not user:
        return ""
    last = user[-1]
    return f" (at {last.filename}:{last.lineno})"


def _path_entry(module, name: str) -> Optional[str]:
    """The folder on sys.path under which ``name`` lives (the parent of its top-level package)."""
    path = getattr(module, "__file__", None)
    if not path:
        return None
    folder = Path(path).resolve().parent
    depth = name.count(".") + (1 if Path(path).name == "__init__.py" else 0)
    for _ in range(depth):
        folder = folder.parent
    return str(folder)


def _offer(obj) -> str:
    names = sorted(n for n, v in vars(obj).items() if callable(v) and not n.startswith("_")) \
        if hasattr(obj, "__dict__") else []
    shown = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
    return f" (its functions and classes: {shown})" if names else ""


def package_version(module) -> str:
    """The version of the installed distribution that provides the imported ``module`` (its file must
    be one the distribution installed, or lie under an editable install's folder), else ``unversioned``:
    a top-level name alone proves nothing (several distributions ship a package named ``tests``)."""
    path = getattr(module, "__file__", None)
    if not path:
        return UNVERSIONED
    path = Path(path).resolve()
    top = module.__name__.split(".")[0]
    try:
        names = importlib.metadata.packages_distributions().get(top, [])
    except Exception:  # a broken metadata folder somewhere on the path
        names = []
    for name in dict.fromkeys(names):
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if _provides(dist, path):
            return dist.version
    return UNVERSIONED


def _provides(dist, path: Path) -> bool:
    for file in dist.files or []:
        if file.parts and file.parts[-1] == path.name:
            try:
                if Path(dist.locate_file(file)).resolve() == path:
                    return True
            except OSError:
                continue
    try:
        import json

        origin = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return False
    url = origin.get("url", "")
    if origin.get("dir_info", {}).get("editable") and url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return path.is_relative_to(Path(unquote(urlparse(url).path)).resolve())
    return False
