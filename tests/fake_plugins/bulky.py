"""A fake model whose saved state is large (``bulky``: ``megabytes`` of float32 weights), for the
disk-full tests; it uses the ``tiny`` dataset of tests.fake_plugins.fakes and N(0, I) as its density."""

from __future__ import annotations

import torch

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from tests.fake_plugins.fakes import StandardNormal


class Bulky(StandardNormal):
    def __init__(self, spec, hparams):
        super().__init__(spec, hparams)
        self.weights = torch.zeros(int(hparams["megabytes"] * 2**20) // 4)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(name="bulky", family="fake", factory=Bulky, data_kinds=[DataKind.CONTINUOUS],
                       capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT, default_datasets=["tiny"],
                       hyperparameters=Hyperparameters(defaults={"megabytes": 2.0},
                                                       docs={"megabytes": "size of the saved state"})))
