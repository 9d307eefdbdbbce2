"""Every built-in model, dataset and metric passes the conformance kit (harness.testing), one test per
check (`pytest -k "model:vae"` runs one model's).

The models are fitted with the smoke profile's hyperparameters and fewer training steps (FEWER_STEPS):
the checks need a fitted model, not a good one. The cvae still gets enough steps to learn its labels
(its labels check), and the gans keep the smoke profile's: after a few dozen steps their binary or
discrete samples can collapse onto one point, which seed_varies reports.
"""

from harness.host import get_host
from harness.testing import conformance_suite

BUILT_IN = sorted(name for name, info in get_host().plugins.items() if info.module.startswith("harness_plugins."))

FEWER_STEPS = [
    "autoregressive.steps=40",
    "flow.steps=40",
    "vae.steps=150",
    "boltzmann.steps=300",
    "rbm.steps=300",
    "dbm.steps=200",
    "dbm.pretrain_steps=100",
]

# Every built-in, the ebm models included, passes the suite's save / restore round trip: the ebm
# models export their parameters, AIS base rates and fitted seed (the persistent training chains are
# not needed to sample or score).
test_built_in = conformance_suite(*BUILT_IN, overrides=FEWER_STEPS)
