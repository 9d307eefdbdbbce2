"""A fake model with a hyperparameter of every declared type (integer, number, boolean, string with
choices, list, automatic None), for the fuzz tests of --set and config files; it fits nothing (N(0, I)
on the ``tiny`` dataset of tests.fake_plugins.fakes), so any value it accepts runs in milliseconds."""

from __future__ import annotations

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from tests.fake_plugins.fakes import StandardNormal


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="typed", family="fake", factory=StandardNormal, data_kinds=[DataKind.CONTINUOUS],
        capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT, default_datasets=["tiny"],
        hyperparameters=Hyperparameters(
            defaults={"steps": 10, "rate": 0.5, "flag": True, "arch": "mlp", "widths": [8, 8], "auto": None},
            docs={"steps": "an integer", "rate": "a number", "flag": "a boolean", "arch": "a choice",
                  "widths": "a list of integers", "auto": "None means automatic"},
            choices={"arch": ["mlp", "conv"]},
            profiles={"smoke": {"steps": 2}},
        ),
    ))
