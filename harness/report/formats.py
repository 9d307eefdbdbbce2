"""Report formats: what a plugin registers to render a summarised run (:class:`ReportFormatSpec`,
through ``harness_register_report_formats``), and writing the formats a run writes.

A format renders a :class:`~harness.report.summarised.SummarisedRun` to text and either names the file
that text goes into (``report.html``) or :data:`STDOUT` (printed, like the terminal summary). The
formats declared ``every_run`` are written (files) and printed (stdout, in the table view) at the end
of every ``run``, ``evaluate`` and ``evaluate-samples`` and by ``report DIR``; any format is rendered
on request with ``report DIR --format NAME``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable

log = logging.getLogger(__name__)

STDOUT = "stdout"


@dataclass(frozen=True)
class ReportFormatSpec:
    """A report format a plugin registers.

    ``render(run: SummarisedRun) -> str``; it may raise :class:`~harness.contracts.UserError` when the
    run holds nothing it can show. ``file``: the name of the file it writes into the output directory,
    or :data:`STDOUT`. ``every_run``: written (or printed) at the end of every run and by ``report
    DIR``. ``prints``: ``report DIR --format NAME`` prints the text as well as writing its file (text
    meant to be pasted elsewhere, like LaTeX tables).
    """

    name: str
    render: Callable
    file: str = STDOUT
    description: str = ""
    every_run: bool = False
    prints: bool = False

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a report format needs a name, not {self.name!r}")
        if not callable(self.render):
            raise ValueError(f"report format {self.name!r}: render must be callable")
        if not self.file or PurePath(self.file).name != self.file or self.file in (".", ".."):
            raise ValueError(f"report format {self.name!r}: file must be a file name (no folder) or "
                             f"{STDOUT!r}, not {self.file!r}")

    @property
    def to_stdout(self) -> bool:
        return self.file == STDOUT


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file, so a reader never sees half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write(spec: ReportFormatSpec, run, out: Path) -> Path:
    """Render ``run`` in a file format and write it into ``out``; the path."""
    path = Path(out) / spec.file
    atomic_write(path, spec.render(run))
    return path


def every_run(formats) -> list:
    """The specs among ``formats`` (name -> spec, the registry's) declared ``every_run``, by name."""
    return [formats[name] for name in sorted(formats) if formats[name].every_run]


def write_every_run(run, formats, out: Path) -> dict:
    """Write every file format declared ``every_run`` into ``out``: format name -> path. A format that
    fails is logged and left out: one broken format never costs a run the others."""
    paths = {}
    for spec in every_run(formats):
        if spec.to_stdout:
            continue
        try:
            paths[spec.name] = write(spec, run, out)
        except Exception as exc:
            log.warning("report format %r could not be written: %s: %s", spec.name, type(exc).__name__, exc,
                        exc_info=True)
    return paths


def printed_every_run(run, formats) -> list:
    """The texts of the stdout formats declared ``every_run`` (the terminal summary), by name."""
    return [spec.render(run) for spec in every_run(formats) if spec.to_stdout]
