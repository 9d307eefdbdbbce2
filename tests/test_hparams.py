"""Hyperparameter declarations: resolution order, selectors, type checks, user overrides."""

import pytest

from harness import DataKind, DatasetSpec, Hyperparameters, ModelSpec, UserError
from harness.contracts import Split, Splits
from harness.hparams import Override, OverrideSet, parse_set, parse_value
from tests.fake_plugins.fakes import StandardNormal


def dataset(name="toy", kind=DataKind.CONTINUOUS, shape=(2,), tags=()):
    return DatasetSpec(name=name, kind=kind, event_shape=shape, levels=4 if kind is DataKind.DISCRETE else None,
                       tags=tags, load=lambda root: Splits(*(Split(None) for _ in range(3))))


HP = Hyperparameters(
    defaults={"steps": 100, "lr": 1e-3, "hidden": [64, 64], "arch": "auto", "latent": None, "warm": False},
    docs={"steps": "optimisation steps"},
    profiles={"smoke": {"steps": 10}, "full": {"steps": 10_000}},
    rules=[({"image": True}, {"lr": 3e-4, "arch": "conv"}),
           ({"profile": "smoke", "image": True}, {"steps": 5}),
           ({"dataset": ["digits", "mnist5k"], "kind": "discrete"}, {"latent": 16}),
           ({"tag": "hard"}, {"warm": True})],
    choices={"arch": ["auto", "mlp", "conv"]},
)


def test_resolution_order_defaults_then_profiles_then_rules_in_order():
    vector, image = dataset(), dataset("digits", DataKind.DISCRETE, (1, 8, 8))
    assert HP.resolve("quick", vector) == {"arch": "auto", "hidden": [64, 64], "latent": None, "lr": 1e-3,
                                           "steps": 100, "warm": False}
    assert HP.resolve("smoke", vector)["steps"] == 10
    smoke_image = HP.resolve("smoke", image)
    assert smoke_image["steps"] == 5 and smoke_image["lr"] == 3e-4 and smoke_image["arch"] == "conv"
    assert smoke_image["latent"] == 16  # dataset list and kind both match
    assert HP.resolve("full", image)["steps"] == 10_000  # the smoke-only image rule does not apply
    assert HP.resolve("quick", dataset("digits", DataKind.BINARY, (1, 8, 8)))["latent"] is None  # kind differs
    assert HP.resolve("quick", dataset(tags=("hard", "toy2d")))["warm"] is True


def test_overrides_win_and_are_type_checked():
    vector = dataset()
    values = HP.resolve("quick", vector, [("steps", 7, "--set m.steps=7"), ("lr", 1, "--set m.lr=1")])
    assert values["steps"] == 7 and values["lr"] == 1.0 and isinstance(values["lr"], float)
    with pytest.raises(UserError, match=r"--set m.steps=x: hyperparameter 'steps' takes an integer"):
        HP.resolve("quick", vector, [("steps", "x", "--set m.steps=x")])
    with pytest.raises(UserError, match="takes a boolean"):
        HP.resolve("quick", vector, [("warm", 1, "src")])
    with pytest.raises(UserError, match="one of 'auto', 'mlp', 'conv'"):
        HP.resolve("quick", vector, [("arch", "rnn", "src")])
    with pytest.raises(UserError, match="did you mean 'steps'"):
        HP.resolve("quick", vector, [("stpes", 3, "src")])
    assert HP.resolve("quick", vector, [("latent", 8, "src")])["latent"] == 8  # None default: anything


def test_bad_declarations_fail_at_registration():
    with pytest.raises(ValueError, match="did you mean 'steps'"):
        Hyperparameters(defaults={"steps": 1}, profiles={"smoke": {"step": 2}})
    with pytest.raises(ValueError, match="selects on model"):
        Hyperparameters(defaults={"steps": 1}, rules=[({"model": "x"}, {"steps": 2})])
    with pytest.raises(ValueError, match="takes an integer"):
        Hyperparameters(defaults={"steps": 1}, profiles={"quick": {"steps": 2.5}})
    with pytest.raises(ValueError, match="cannot be a table"):
        Hyperparameters(defaults={"image": {"steps": 2}})
    with pytest.raises(ValueError, match="undeclared"):
        Hyperparameters(defaults={"steps": 1}, docs={"stepz": "typo"})


def test_parse_value_reads_toml_scalars_and_falls_back_to_strings():
    assert parse_value("3") == 3 and parse_value("1e-3") == 1e-3 and parse_value("true") is True
    assert parse_value('"conv"') == "conv" and parse_value("conv") == "conv" and parse_value("[64, 64]") == [64, 64]
    o = parse_set("gmm.components=3")
    assert (o.target, o.key, o.value) == ("gmm", "components", 3)
    for bad in ("gmm=3", "components=3", "gmm.components"):
        with pytest.raises(UserError, match="MODEL.KEY=VALUE"):
            parse_set(bad)


def _models():
    def spec(name, family, defaults):
        return ModelSpec(name=name, family=family, factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS],
                         hyperparameters=Hyperparameters(defaults=defaults))
    return {"a": spec("a", "fam", {"steps": 1, "width": 4}), "b": spec("b", "fam", {"steps": 1}),
            "c": spec("c", "other", {"steps": 1})}


def test_family_overrides_apply_to_the_models_that_declare_the_key_and_model_overrides_win():
    models = _models()
    overrides = OverrideSet([parse_set("fam.steps=5"), parse_set("a.steps=9"), parse_set("fam.width=8")], models)
    assert models["a"].resolve_hparams("quick", dataset(), overrides.for_job(models["a"], "toy")) == \
        {"steps": 9, "width": 8}
    assert models["b"].resolve_hparams("quick", dataset(), overrides.for_job(models["b"], "toy")) == {"steps": 5}
    assert models["c"].resolve_hparams("quick", dataset(), overrides.for_job(models["c"], "toy")) == {"steps": 1}


def test_command_line_beats_a_config_file_and_pinned_values_apply_to_their_dataset_only():
    models = _models()
    file_pin = Override("a", "steps", 3, "config.toml [hparams.a.toy] steps", dataset="toy", priority=0)
    file_set = Override("a", "width", 2, "config.toml [set] a.width", priority=0)
    overrides = OverrideSet([parse_set("a.width=16"), file_pin, file_set], models)
    a = models["a"]
    assert a.resolve_hparams("quick", dataset("toy"), overrides.for_job(a, "toy")) == {"steps": 3, "width": 16}
    assert a.resolve_hparams("quick", dataset("other"), overrides.for_job(a, "other")) == {"steps": 1, "width": 16}


def test_unknown_targets_and_keys_are_user_errors_with_suggestions():
    models = _models()
    with pytest.raises(UserError, match="no model or family named 'aa'.*did you mean 'a'"):
        OverrideSet([parse_set("aa.steps=1")], models)
    with pytest.raises(UserError, match="'b' has no hyperparameter 'width'"):
        OverrideSet([parse_set("b.width=1")], models)
    with pytest.raises(UserError, match="no model of family 'fam' has a hyperparameter 'depth'"):
        OverrideSet([parse_set("fam.depth=1")], models)
    with pytest.raises(UserError, match="a: hyperparameter 'width' takes an integer"):
        OverrideSet([parse_set("fam.width=wide")], models)
