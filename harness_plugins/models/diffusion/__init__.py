"""Diffusion, score-based and flow-matching models: ``ddpm``, ``score-sde`` and ``flow-matching``.

- ``ddpm`` (Ho et al. 2020): noise prediction, ancestral sampling, the variational bound of its
  T-step chain as ``nll`` (kind ``bound``; a discretised decoder on discrete data).
- ``score-sde`` (Song et al. 2021): a score model of the VP SDE; log-likelihood from the
  probability-flow ODE.
- ``flow-matching`` (Lipman et al. 2023): optimal-transport conditional flow matching; the same ODE
  likelihood.

The ODE likelihood is ``exact`` (to the solver's tolerance, given in details) on continuous data of
low dimension, an ``estimate`` by Hutchinson's trace estimator above ``exact_divergence_dims``
dimensions, and a ``bound`` on discrete data (dequantisation).

``sampling_steps`` is each model's number of sampling steps; ``sampling_sweep`` lists further step
counts measured in the same job as sampling variants (``fid@2000[steps=10]``, ...), so the report
shows sample quality against samples per second for each.

The package: ``schedules`` (VP noise schedules), ``networks`` (MLP with a time embedding for vectors,
a small U-Net for images), ``model`` (data handling, training, sampling, variants), ``ddpm``,
``ode`` (the instantaneous change of variables), ``ode_model`` (the ODE models' likelihood and its
marks), ``score_sde``, ``flow_matching``, and here the hyperparameters and registrations.
"""

from __future__ import annotations

from typing import Optional

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from harness_plugins.models.diffusion.ddpm import DDPM
from harness_plugins.models.diffusion.flow_matching import FlowMatching
from harness_plugins.models.diffusion.score_sde import ScoreSDE

# ============================================================================ hyperparameters

COMMON = {
    "steps": 3000,
    "batch_size": 256,
    "lr": 2e-3,
    "warmup": 100,
    "grad_clip": 1.0,
    "val_every": 500,
    "val_examples": 2000,
    "eval_batch": 5000,
    "network": "auto",
    "hidden": 128,
    "depth": 3,
    "channels": 32,
    "time_dim": 32,
    "sampling_steps": 100,
    "sampling_sweep": [10],
}
ODE = {
    "ode_rtol": 1e-5,
    "ode_atol": 1e-5,
    "exact_divergence_dims": 8,
    "probes": 2,
    "dequant_draws": 1,
}

DOCS = {
    "steps": "optimisation steps (fewer if the job's deadline comes first)",
    "batch_size": "training examples per step",
    "lr": "peak Adam learning rate",
    "warmup": "steps of linear learning-rate warm-up, then cosine decay to zero",
    "grad_clip": "gradient-norm clip",
    "val_every": "steps between validation-loss checks; the best parameters are kept",
    "val_examples": "validation examples used for those checks",
    "eval_batch": "examples per pass when evaluating likelihoods and sampling",
    "network": "auto (a U-Net for images, an MLP for vectors), unet, or mlp (images flattened)",
    "hidden": "hidden units of the MLP",
    "depth": "hidden layers of the MLP",
    "channels": "channels of the U-Net's top level (images)",
    "time_dim": "size of the sinusoidal time embedding",
    "sampling_steps": "sampling steps (ddpm: also the steps of the chain whose bound is the nll)",
    "sampling_sweep": "further sampling-step counts measured as sampling variants of the fitted model ([] for none)",
    "logsnr_min": "log signal-to-noise ratio at t = 1 (the prior end)",
    "logsnr_max": "log signal-to-noise ratio at t = 0, where the decoder reads the data (decoder std "
                  "exp(-logsnr_max / 2)); automatic: 2 log(3 (K - 1)) on K levels, 10 on continuous data",
    "beta_min": "beta(0) of the VP SDE",
    "beta_max": "beta(1) of the VP SDE",
    "t_eps": "the time where the data lies (the likelihood's lower limit and training's smallest time)",
    "sigma_min": "the width of the optimal-transport path at the data end",
    "sampler": "score-sde: sde (Euler-Maruyama on the reverse SDE) or ode (Heun on the probability-flow "
               "ODE); flow-matching: euler or heun",
    "ode_rtol": "relative tolerance of the likelihood's ODE solver (RK45)",
    "ode_atol": "absolute tolerance of the likelihood's ODE solver (RK45)",
    "exact_divergence_dims": "exact divergence up to this many dimensions, Hutchinson's estimator above",
    "probes": "Hutchinson probes per example (their spread gives probe_stderr)",
    "dequant_draws": "dequantisation draws averaged in the likelihood (discrete data)",
}


def _declare(extra: dict, choices: Optional[dict] = None, profiles: Optional[dict] = None,
             rules: Optional[list] = None) -> Hyperparameters:
    defaults = {**COMMON, **extra}
    choices = {"network": ["auto", "unet", "mlp"], **(choices or {})}
    return Hyperparameters(defaults=defaults, docs={k: DOCS[k] for k in defaults}, choices=choices,
                           profiles=profiles or {}, rules=rules or [])


# Budgets. quick: about 4 s of single-thread training per model and dataset (toys: 1500 steps of a
# 3x128 MLP; digits: 700 steps of a 3x256 MLP on the flattened image), so the three models on
# 8gaussians and digits take about a minute with their evaluation; smoke: a second or two a job;
# full: the U-Net on images and long training (GPU scale). Image rules come after the profile's, so
# they win on images.
TRAIN = {
    "smoke": {"steps": 150, "lr": 3e-3, "val_every": 150, "hidden": 64},
    "quick": {"steps": 1500},
    "full": {"steps": 30000, "lr": 1e-3, "val_every": 2000, "hidden": 256, "depth": 4},
}
IMAGES = [
    ({"image": True, "profile": "smoke"}, {"network": "mlp", "hidden": 128, "steps": 100}),
    ({"image": True, "profile": "quick"}, {"network": "mlp", "hidden": 256, "steps": 700}),
    ({"image": True, "profile": "full"}, {"steps": 50000, "batch_size": 128, "channels": 64, "eval_batch": 500}),
]
# The likelihood's ODE tolerance: 1e-3 at smoke and quick (on the quick toys the NLL moves by about
# 0.001 nats from 1e-3 to 1e-5, far inside its standard error, at a sixth of the evaluations), 1e-5
# (Song et al.) at full.
ODE_TOLERANCE = {"smoke": {"ode_rtol": 1e-3, "ode_atol": 1e-3}, "quick": {"ode_rtol": 1e-3, "ode_atol": 1e-3}}


def _profiles(sampling: dict, ode: bool) -> dict:
    """Per profile: the training budget, the sampling steps and sweep, and the ODE tolerance."""
    return {p: {**TRAIN[p], **sampling[p], **(ODE_TOLERANCE.get(p, {}) if ode else {})} for p in TRAIN}


DDPM_HP = _declare(
    {"logsnr_min": -10.0, "logsnr_max": None},
    profiles=_profiles({"smoke": {"sampling_steps": 20, "sampling_sweep": []},
                        "quick": {"sampling_steps": 100, "sampling_sweep": []},
                        "full": {"sampling_steps": 1000, "sampling_sweep": [10, 50, 200]}}, ode=False),
    rules=IMAGES,
)
SCORE_SDE_HP = _declare(
    {"beta_min": 0.1, "beta_max": 20.0, "t_eps": 1e-5, "sampler": "sde", **ODE},
    choices={"sampler": ["sde", "ode"]},
    profiles=_profiles({"smoke": {"sampling_steps": 20, "sampling_sweep": []},
                        "quick": {"sampling_steps": 100, "sampling_sweep": []},
                        "full": {"sampling_steps": 1000, "sampling_sweep": [10, 50, 200]}}, ode=True),
    # The conformance kit checks that the density integrates to the share of the model's own samples in a
    # box, which holds only when samples and density describe one distribution: the likelihood is the
    # probability-flow ODE's, and with an imperfect score the reverse SDE samples from another (on the
    # kit's tiny set at smoke: 0.99 of SDE samples inside the box against an ODE mass of 0.84, which ODE
    # samples match, 0.85). So the kit's instance samples by the ODE.
    rules=IMAGES + [({"tag": "conformance"}, {"sampler": "ode"})],
)
# flow-matching carries the quick profile's steps-versus-quality sweep (sampling is cheapest there).
FLOW_MATCHING_HP = _declare(
    {"sigma_min": 1e-4, "sampler": "euler", **ODE},
    choices={"sampler": ["euler", "heun"]},
    profiles=_profiles({"smoke": {"sampling_steps": 10, "sampling_sweep": []},
                        "quick": {"sampling_steps": 20, "sampling_sweep": [2, 5, 10]},
                        "full": {"sampling_steps": 100, "sampling_sweep": [2, 5, 10, 20, 50]}}, ode=True),
    rules=IMAGES,
)

# ============================================================================ registration

DEFAULT_DATASETS = {"smoke": ["8gaussians", "digits"], "quick": ["8gaussians", "digits"],
                    "full": ["8gaussians", "checkerboard", "moons", "2spirals", "digits", "mnist5k"]}


def _vector_or_image(spec) -> Optional[str]:
    if len(spec.event_shape) not in (1, 3):
        return f"the diffusion models take vectors or (C, H, W) images; {spec.name} has shape {spec.event_shape}"
    return None


MODELS = [
    dict(name="ddpm", cls=DDPM, hyperparameters=DDPM_HP, likelihood=LikelihoodKind.BOUND,
         description="DDPM (Ho et al. 2020): noise prediction, ancestral sampling; nll is the variational bound "
                     "of its T-step chain (discretised decoder on discrete data)."),
    dict(name="score-sde", cls=ScoreSDE, hyperparameters=SCORE_SDE_HP, likelihood=LikelihoodKind.EXACT,
         description="Score-based model of the VP SDE (Song et al. 2021): reverse-SDE sampling; likelihood from "
                     "the probability-flow ODE (exact divergence in low dimension, Hutchinson above)."),
    dict(name="flow-matching", cls=FlowMatching, hyperparameters=FLOW_MATCHING_HP, likelihood=LikelihoodKind.EXACT,
         description="Flow matching with optimal-transport paths (Lipman et al. 2023): Euler sampling; likelihood "
                     "from the ODE (exact divergence in low dimension, Hutchinson above)."),
]


@hookimpl
def harness_register_models(register):
    for m in MODELS:
        register(ModelSpec(
            name=m["name"],
            family="diffusion",
            factory=m["cls"],
            data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
            capabilities=[Capability.SAMPLE],
            likelihood=m["likelihood"],
            hyperparameters=m["hyperparameters"],
            default_datasets=DEFAULT_DATASETS,
            accepts=_vector_or_image,
            description=m["description"],
        ))
