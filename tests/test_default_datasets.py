"""Default datasets: models choose datasets by name and by tag (``tagged``), resolved against the
installed datasets in registration order; every built-in model's defaults are the lists recorded
below (what they were when the models listed the toys by name); a profile a model's declaration does
not list is an error, and a tag nothing carries is a recorded skip."""

import pytest

from harness import DataKind, DatasetSpec, ModelSpec, UserError
from harness.contracts import Tagged, tagged
from harness.runner import select_pairs

TOYS = ["checkerboard", "8gaussians", "moons", "circles", "swissroll", "2spirals", "pinwheel"]

# Every built-in model's default datasets per profile, recorded from `python -m harness list --format
# json` before the models selected the toys by tag.
RECORDED = {
    "boltzmann": {"smoke": ["digits-binary"], "quick": ["digits-binary"],
                  "full": ["digits-binary", "mnist5k-binary"]},
    "cvae": {"smoke": ["digits-binary"], "quick": ["digits"], "full": ["digits", "mnist5k-binary", "mnist5k"]},
    "dbm": {"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
            "full": ["digits-binary", "mnist5k-binary"]},
    "dcgan": {"smoke": ["digits"], "quick": ["digits"], "full": ["digits", "mnist5k", "cifar10"]},
    "ddpm": {"smoke": ["8gaussians", "digits"], "quick": ["8gaussians", "digits"],
             "full": ["8gaussians", "checkerboard", "moons", "2spirals", "digits", "mnist5k"]},
    "flow-matching": {"smoke": ["8gaussians", "digits"], "quick": ["8gaussians", "digits"],
                      "full": ["8gaussians", "checkerboard", "moons", "2spirals", "digits", "mnist5k"]},
    "gan": {"smoke": ["8gaussians"], "quick": [*TOYS], "full": [*TOYS]},
    "gaussian": {"smoke": ["checkerboard", "8gaussians"], "quick": [*TOYS], "full": [*TOYS]},
    "glow": {"smoke": ["8gaussians", "digits"], "quick": [*TOYS, "digits"], "full": [*TOYS, "digits", "mnist5k"]},
    "gmm": {"smoke": ["checkerboard", "8gaussians"], "quick": [*TOYS], "full": [*TOYS]},
    "made": {"smoke": ["digits-binary", "8gaussians"], "quick": ["digits-binary", "digits", *TOYS],
             "full": ["digits-binary", "digits", *TOYS, "mnist5k-binary", "mnist5k"]},
    "maf": {"smoke": ["8gaussians", "digits"], "quick": [*TOYS, "digits"], "full": [*TOYS, "digits", "mnist5k"]},
    "nice": {"smoke": ["8gaussians", "digits"], "quick": [*TOYS, "digits"], "full": [*TOYS, "digits", "mnist5k"]},
    "pixelcnn": {"smoke": ["digits-binary"], "quick": ["digits-binary", "digits"],
                 "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"]},
    "planar": {"smoke": ["8gaussians"], "quick": [*TOYS], "full": [*TOYS]},
    "rbm": {"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
            "full": ["digits-binary", "mnist5k-binary"]},
    "realnvp": {"smoke": ["8gaussians", "digits"], "quick": [*TOYS, "digits"], "full": [*TOYS, "digits", "mnist5k"]},
    "score-sde": {"smoke": ["8gaussians", "digits"], "quick": ["8gaussians", "digits"],
                  "full": ["8gaussians", "checkerboard", "moons", "2spirals", "digits", "mnist5k"]},
    "spline": {"smoke": ["8gaussians"], "quick": [*TOYS], "full": [*TOYS]},
    "vae": {"smoke": ["8gaussians", "digits-binary"], "quick": [*TOYS, "digits"],
            "full": [*TOYS, "digits", "mnist5k-binary", "mnist5k"]},
    "wavenet": {"smoke": ["digits-binary"], "quick": ["digits-binary", "digits"],
                "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"]},
}


def test_every_built_in_model_keeps_its_default_datasets_in_order(host):
    plugins = {"gaussian", "gmm", "flows", "autoregressive", "vae", "gan", "ebm", "diffusion"}  # pyproject's
    built_in = {name for name in host.registry.models if host.owner("models", name) in plugins}
    assert built_in == set(RECORDED)
    for name, profiles in RECORDED.items():
        spec = host.registry.models[name]
        for profile, expected in profiles.items():
            assert spec.datasets_for(profile, host.registry.datasets) == expected, (name, profile)


def _spec(name, tags=()):
    return DatasetSpec(name=name, kind=DataKind.CONTINUOUS, event_shape=(2,), load=lambda root=None: None, tags=tags)


DATASETS = {"a": _spec("a", ("toy",)), "b": _spec("b"), "c": _spec("c", ("toy", "other")), "d": _spec("d", ("x",))}


def _model(default_datasets):
    return ModelSpec(name="m", family="f", factory=lambda s, h: None, data_kinds=[DataKind.CONTINUOUS],
                     default_datasets=default_datasets)


def test_a_tag_selects_the_datasets_that_carry_it_in_registration_order_each_once():
    model = _model({"smoke": ["b", tagged("toy")], "quick": [tagged("toy"), "a", "d"], "full": [tagged("none")]})
    assert model.datasets_for("smoke", DATASETS) == ["b", "a", "c"]
    assert model.datasets_for("quick", DATASETS) == ["a", "c", "d"]  # "a" once
    assert model.datasets_for("full", DATASETS) == []
    assert _model(["b", tagged("other")]).datasets_for("any", DATASETS) == ["b", "c"]  # a list: every profile
    assert tagged("toy") == Tagged("toy") and str(tagged("toy")) == "tagged('toy')"


def test_a_profile_the_declaration_does_not_list_is_an_error_naming_it():
    model = _model({"smoke": ["a"], "quick": ["b"]})
    with pytest.raises(UserError, match=r"default datasets for the profiles smoke, quick, not for 'full'"):
        model.datasets_for("full", DATASETS)


class _Host:
    def __init__(self, models):
        self.registry = type("Registry", (), {"models": models, "datasets": DATASETS})()


def test_select_pairs_records_a_tag_nothing_carries_and_an_unknown_profile_as_skips():
    models = {"tags": ModelSpec(name="tags", family="f", factory=None, data_kinds=[DataKind.CONTINUOUS],
                                default_datasets=[tagged("missing"), tagged("toy")]),
              "partial": ModelSpec(name="partial", family="f", factory=None, data_kinds=[DataKind.CONTINUOUS],
                                   default_datasets={"quick": ["a"]})}
    pairs = select_pairs(_Host(models), None, None, True, "smoke")
    reasons = {(m.name, d.name if d else None): reason for m, d, reason in pairs}
    assert reasons[("tags", None)] == "no installed dataset is tagged 'missing' (a default selection of tags)"
    assert reasons[("tags", "a")] is None and reasons[("tags", "c")] is None
    assert "not for 'smoke'" in reasons[("partial", None)]
