"""`report DIR --format latex`: booktabs tabulars for a paper. The structure is checked line by line
(rules in order, as many cells per row as the column spec says, LaTeX specials escaped, balanced
braces and math), the marks, the ± and the bold best cells against the report's own best-in-column
decision; where pdflatex and booktabs are installed, the tables compile inside a document."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from harness.cli import main
from harness.contracts import QUALITY
from harness.host import get_host
from harness.report import SummarisedRun
from harness.report.latex import escape
from tests import report_fixtures as fx

CELL_SPLIT = re.compile(r"(?<!\\)&")


@pytest.fixture(scope="module")
def tex(tmp_path_factory):
    root = tmp_path_factory.mktemp("latex")
    directory = fx.build(root / "run", get_host(), seeds=(0, 1), artifacts=False)
    return directory, root / "out"


def write(tex, capsys) -> str:
    directory, out = tex
    assert main(["report", str(directory), "--format", "latex", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    text = (out / "tables.tex").read_text()
    assert captured.out == text and "tables.tex" in captured.err
    return text


def tabulars(text: str) -> list:
    """(comment naming it, lines from \\begin{tabular} to \\end{tabular})."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(r"\begin{tabular}"):
            end = next(j for j in range(i, len(lines)) if lines[j].startswith(r"\end{tabular}"))
            found.append((lines[i - 1], lines[i:end + 1]))
    return found


def test_every_table_is_a_booktabs_tabular_with_consistent_rows(tex, capsys):
    text = write(tex, capsys)
    tables = tabulars(text)
    assert [c for c, _ in tables] == [f"% dataset: {d} ({p})" for d in (fx.TOY, fx.IMAGES)
                                      for p in ("quality", "speed")]
    for _, lines in tables:
        spec = re.match(r"\\begin\{tabular\}\{([lrc]+)\}$", lines[0]).group(1)
        assert spec[0] == "l" and set(spec[1:]) == {"r"}
        assert lines[1] == r"\toprule" and lines[3] == r"\midrule" and lines[-2] == r"\bottomrule"
        rows = [lines[2]] + lines[4:-2]
        assert len(rows) >= 3  # a header and at least two models
        for row in rows:
            assert row.endswith(r"\\")
            body = row[:-2]
            assert len(CELL_SPLIT.split(body)) == len(spec)
            assert not re.search(r"(?<!\\)[_%#]", body), row  # specials escaped
            assert body.count("{") == body.count("}") and body.replace(r"\$", "").count("$") % 2 == 0


def test_cells_carry_the_error_the_marks_and_bold_best(tex, capsys):
    text = write(tex, capsys)
    directory, _ = tex
    table = SummarisedRun.read(directory).tables(QUALITY)[fx.TOY]  # best marks by the report's own rules
    (_, lines), = [t for t in tabulars(text) if t[0] == f"% dataset: {fx.TOY} (quality)"]
    header = [h.strip() for h in CELL_SPLIT.split(lines[2][:-2])]
    assert header[:2] == ["model", "seeds"]
    assert header[2:] == [escape(c.label) + (f" [{escape(c.unit)}]" if c.unit else "")
                          + {"higher": r" $\uparrow$", "lower": r" $\downarrow$"}[c.direction] for c in table.columns]
    body = {row.split("&")[0].strip(): [c.strip() for c in CELL_SPLIT.split(row[:-2])[2:]] for row in lines[4:-2]}
    assert set(body) == set(table.models)
    for model, cells in body.items():
        for col, cell in zip(table.columns, cells):
            c = table.cell(model, col.label)
            if c is None:
                assert cell == ""
                continue
            assert cell.startswith(r"$\mathbf{") == c.best, (model, col.label, cell)
            assert cell.endswith(f"({c.mark})") == bool(c.mark)
    assert r"\pm" in text and "(x)" in text and "(b)" in text and "(e)" in text
    modes = [h for h in header if h.startswith(r"modes\_covered")][0]
    k = header.index(modes)
    assert body["alpha"][k - 2] in (r"$8$", r"$\mathbf{8}$")  # an integer, not 8.000


@pytest.mark.skipif(not shutil.which("pdflatex"), reason="pdflatex is not installed (apt-get install "
                                                         "texlive-latex-recommended)")
def test_the_tables_compile(tex, capsys, tmp_path):
    if subprocess.run(["kpsewhich", "booktabs.sty"], capture_output=True, text=True).stdout.strip() == "":
        pytest.skip("booktabs.sty is not installed")
    write(tex, capsys)
    _, out = tex
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\\usepackage{booktabs}\\usepackage[landscape,margin=1cm]{geometry}\n"
                   f"\\begin{{document}}\\tiny\\input{{{out / 'tables.tex'}}}\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000
