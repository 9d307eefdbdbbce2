"""A damaged results store gets a clear answer: run --resume, report, evaluate and compare exit 2 with
what to do; `store check` names the damage; `store rebuild` makes a store whose report has the
original's tables, from the old store's readable rows, results.csv/json and the saved models."""

import json
import os
import shutil
import sqlite3
import struct

import pandas as pd
import pytest

from harness.cli import main
from harness.storage.salvage import salvage

RUN = ["run", "--model", "stdnormal", "sleepy", "boom", "--dataset", "tiny", "--seeds", "2", "--profile", "smoke",
       "--metric", "nll", "--set", "sleepy.sleep=0.01", "--no-progress"]


@pytest.fixture(autouse=True)
def fakes(monkeypatch):
    monkeypatch.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run (two ok models, one whose fit fails, two seeds) and its report's files."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HARNESS_PLUGINS", "tests.fake_plugins.fakes")
        out = tmp_path_factory.mktemp("damage") / "run"
        assert main(RUN + ["--out", str(out)]) == 1  # boom fails, by design
        assert main(["report", str(out)]) == 0
    return out, (out / "results.csv").read_text(), tables(out)


def tables(directory):
    """The table rows of report.md (what a reader compares; the page has timestamps elsewhere)."""
    return [line for line in (directory / "report.md").read_text().splitlines() if line.startswith("|")]


@pytest.fixture
def copy(finished, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    return out


def page_of(path, table):
    """Byte offset and size of ``table``'s root page."""
    db = sqlite3.connect(path)
    try:
        size = db.execute("PRAGMA page_size").fetchone()[0]
        root = db.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        db.close()
    return (root - 1) * size, size


def overwrite(path, offset, data=b"\xde\xad\xbe\xef\x00\xff\x13\x37"):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_damaged_store_exits_2_with_advice_and_rebuild_gives_the_same_tables(finished, copy, capsys, tmp_path):
    _, csv_before, tables_before = finished
    store = copy / "results.sqlite"
    overwrite(store, page_of(store, "jobs")[0])  # the jobs table's page header: "malformed"

    for args in (RUN + ["--out", copy, "--resume"], ["report", copy], ["evaluate", copy, "--out", tmp_path / "e"],
                 ["compare", copy, "--baseline", "reports/baseline/smoke.json"]):
        code, _, err = cli(capsys, *args)
        assert code == 2, args
        assert "is damaged (database disk image is malformed)" in err and f"store rebuild {copy}" in err, args
        assert "Traceback" not in err
    assert not (tmp_path / "e").exists()

    code, out, _ = cli(capsys, "store", "check", copy)
    assert code == 1 and "error results.sqlite" in out and "malformed" in out

    code, out, _ = cli(capsys, "store", "rebuild", copy)
    assert code == 0, out
    assert "6 from results.csv" in out and "0 from saved models alone" in out
    assert list(copy.glob("results.sqlite.damaged-*"))  # the damaged file is kept
    assert cli(capsys, "store", "check", copy)[0] == 0
    assert cli(capsys, "report", copy)[0] == 0
    assert (copy / "results.csv").read_text() == csv_before
    assert tables(copy) == tables_before

    # The rebuilt jobs kept their keys (from the saved models): --resume trains nothing again, and the failed
    # job, whose key was lost, is replaced by its rerun rather than listed twice.
    code, out, _ = cli(capsys, *RUN, "--out", copy, "--resume")
    assert code == 1 and "4 reused" in out
    db = sqlite3.connect(store)
    assert db.execute("SELECT COUNT(*), SUM(key LIKE 'rebuilt-%') FROM jobs").fetchone() == (6, 0)
    db.close()


def test_a_store_whose_header_is_overwritten_is_rebuilt_from_the_export_and_the_models(finished, copy, capsys):
    _, csv_before, tables_before = finished
    overwrite(copy / "results.sqlite", 0)
    code, _, err = cli(capsys, "report", copy)
    assert code == 2 and "does not start with SQLite's header" in err
    code, out, _ = cli(capsys, "store", "rebuild", copy)
    assert code == 0 and "0 job(s) read from the old store" in out
    assert cli(capsys, "report", copy)[0] == 0
    assert (copy / "results.csv").read_text() == csv_before
    # The run's record was on the lost pages: its environment is gone, the results tables are not.
    assert [t for t in tables(copy)] == tables_before


def test_bytes_changed_inside_a_value_are_found_by_check_and_repaired_by_rebuild(finished, copy, capsys):
    _, csv_before, _ = finished
    store = copy / "results.sqlite"
    db = sqlite3.connect(store)
    value = db.execute("SELECT value FROM measurements WHERE value IS NOT NULL LIMIT 1").fetchone()[0]
    db.close()
    raw = store.read_bytes()
    assert raw.count(struct.pack(">d", value)) >= 1
    store.write_bytes(raw.replace(struct.pack(">d", value), struct.pack(">d", value + 1.0)))  # SQLite cannot tell
    code, out, _ = cli(capsys, "store", "check", copy)  # the store reads whole: only the exports tell
    assert code == 1 and "value" in out and "in the store" in out
    assert cli(capsys, "store", "rebuild", copy)[0] == 0
    assert cli(capsys, "store", "check", copy)[0] == 0
    assert cli(capsys, "report", copy)[0] == 0
    assert (copy / "results.csv").read_text() == csv_before


def test_a_foreign_sqlite_file_is_named_as_such(tmp_path, capsys):
    out = tmp_path / "elsewhere"
    out.mkdir()
    db = sqlite3.connect(out / "results.sqlite")
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    code, _, err = cli(capsys, "report", out)
    assert code == 2 and "is not a harness results store (its tables: invoices)" in err
    code, _, err = cli(capsys, *RUN, "--out", out, "--resume")
    assert code == 2 and "not a harness results store" in err
    db = sqlite3.connect(out / "results.sqlite")
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["invoices"]  # left as it was
    db.close()


def test_check_names_an_altered_artifact_and_notes_stale_exports(copy, capsys):
    folder = next((copy / "artifacts").glob("stdnormal-*"))
    overwrite(folder / "state.safetensors", 10, b"\x00\x01")
    code, out, _ = cli(capsys, "store", "check", copy)
    assert code == 1 and f"artifacts/{folder.name}" in out and "sha256" in out
    shutil.rmtree(folder)
    os.utime(copy / "results.json", (0, 0))  # written before the store's jobs: a run killed before its reports
    code, out, _ = cli(capsys, "store", "check", copy, "--format", "json")
    findings = json.loads(out)["findings"]
    assert code == 1
    assert any(f["severity"] == "error" and "missing" in f["message"] for f in findings)
    assert any(f["subject"] == "results.json" and f["severity"] == "note" and "older" in f["message"]
               for f in findings)


def test_salvage_reads_every_row_but_those_of_a_damaged_page(tmp_path):
    path = tmp_path / "many.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE measurements (key TEXT, metric TEXT, value REAL)")
    db.executemany("INSERT INTO measurements VALUES (?, ?, ?)", [(f"k{i}", "nll", i / 7) for i in range(3000)])
    db.commit()
    size = db.execute("PRAGMA page_size").fetchone()[0]
    leaves = [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'measurements' AND pagetype = 'leaf' "
                                       "ORDER BY pageno")]
    victim = leaves[len(leaves) // 2]
    every = {r[0] for r in db.execute("SELECT key FROM measurements")}
    db.close()
    overwrite(path, (victim - 1) * size)
    found = salvage(path)
    keys = [r[0] for r in found["measurements"]]
    assert found["lost"]["measurements"]
    assert set(keys) < every and len(keys) == len(set(keys))
    assert len(every) - len(keys) <= size // 10  # at most one page of rows (each row takes > 10 bytes)
    assert keys[0] == "k0" and keys[-1] == "k2999"  # rows after the damaged page are read too
    assert pd.Series([int(k[1:]) for k in keys]).is_monotonic_increasing
