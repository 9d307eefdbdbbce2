"""User overrides and config files: `run --set`, `run --config`, DIR/config.toml reproducing job keys."""

import json
import sqlite3

import pytest

from harness.cli import main
from harness.config import RunConfig, dumps, read_config
from harness.hparams import Override

SMOKE = ["run", "--model", "gmm", "--dataset", "8gaussians", "--profile", "smoke", "--metric", "nll",
         "--no-progress"]


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def jobs(directory):
    db = sqlite3.connect(directory / "results.sqlite")
    try:
        return {key: json.loads(hp) for key, hp in db.execute("SELECT key, hparams FROM jobs")}
    finally:
        db.close()


def test_set_is_stored_written_to_config_and_reproduced(capsys, tmp_path):
    d, d2 = tmp_path / "D", tmp_path / "D2"
    code, _, err = cli(capsys, *SMOKE, "--set", "gmm.components=3", "--out", d)
    assert code == 0, err
    (key, hparams), = jobs(d).items()
    assert hparams["components"] == 3
    config = read_config(d / "config.toml")
    assert config.run["models"] == ["gmm"] and config.run["seeds"] == [0] and config.run["profile"] == "smoke"
    pinned = {o.key: o.value for o in config.overrides if o.dataset == "8gaussians"}
    assert pinned["components"] == 3 and set(pinned) == set(hparams) - {k for k, v in hparams.items() if v is None}
    assert "\"gmm.components\" = 3" in (d / "config.toml").read_text()

    code, _, err = cli(capsys, "run", "--config", d / "config.toml", "--out", d2, "--no-progress")
    assert code == 0, err
    assert set(jobs(d2)) == {key}


def test_unknown_key_exits_2_with_a_suggestion(capsys, tmp_path):
    code, _, err = cli(capsys, *SMOKE, "--set", "gmm.componets=3", "--out", tmp_path / "x")
    assert code == 2
    assert "did you mean 'components'" in err and "--set gmm.componets=3" in err
    assert not (tmp_path / "x" / "results.sqlite").exists()
    code, _, err = cli(capsys, *SMOKE, "--set", "gmm.components=three", "--out", tmp_path / "y")
    assert code == 2 and "takes an integer" in err


def test_flags_win_over_the_file(capsys, tmp_path):
    conf = tmp_path / "bench.toml"
    conf.write_text('[run]\nmodels = ["gaussian"]\ndatasets = ["8gaussians"]\nprofile = "smoke"\nmetrics = ["nll"]\n'
                    '[set]\n"gmm.components" = 2\n')
    code, _, err = cli(capsys, "run", "--config", conf, "--model", "gmm", "--set", "gmm.components=4",
                       "--out", tmp_path / "o", "--no-progress")
    assert code == 0, err
    (hparams,) = jobs(tmp_path / "o").values()
    assert hparams["components"] == 4
    written = read_config(tmp_path / "o" / "config.toml")
    assert written.run["models"] == ["gmm"]


@pytest.mark.parametrize("text, message", [
    ("[run]\nmodels = [\"gmm\"] x\n", "not valid TOML.*line 2"),
    ("[run]\nmodel = [\"gmm\"]\n", "\\[run\\] has no key 'model'"),
    ("[run]\nseeds = \"3\"\n", "\\[run\\] seeds = '3' has the wrong type"),
    ("[runs]\n", "unknown table"),
    ("[set]\n\"gmm.components\" = \"many\"\n", "\\[set\\] gmm.components: gmm: hyperparameter 'components' takes"),
    ("[hparams.gmm.8gaussians]\ncomponents = 1.5\n", "\\[hparams.gmm.8gaussians\\] components"),
])
def test_bad_config_files_exit_2_naming_the_line_or_key(capsys, tmp_path, text, message):
    import re

    conf = tmp_path / "bad.toml"
    conf.write_text(text)
    code, _, err = cli(capsys, "run", "--config", conf, "--model", "gmm", "--profile", "smoke",
                       "--out", tmp_path / "o", "--no-progress")
    assert code == 2
    assert re.search(message, err), err
    assert "Traceback" not in err


def test_config_text_round_trips_through_toml():
    config = RunConfig({"models": ["vae"], "all": False, "seeds": [0, 2], "profile": "quick", "job_timeout": 60.0},
                       [Override("vae", "arch", "conv", "--set"), Override("flow", "lr", 1e-3, "--set")])
    resolved = {"vae": {"digits": {"arch": "conv", "latent": None, "hidden": [64, 64], "beta": 1.0, "k": 5,
                                   "weird key": "a \"quoted\" \\ value"}}}
    text = dumps(config, resolved, header="a header")
    path_config = read_config_text(text)
    assert path_config.run == config.run
    sets = {(o.target, o.key): o.value for o in path_config.overrides if o.dataset is None}
    assert sets == {("vae", "arch"): "conv", ("flow", "lr"): 1e-3}
    pinned = {o.key: o.value for o in path_config.overrides if o.dataset == "digits"}
    assert pinned == {k: v for k, v in resolved["vae"]["digits"].items() if v is not None}
    assert "# automatic (None): latent" in text


def read_config_text(text, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.toml"
        p.write_text(text)
        return read_config(p)
