"""Normalising flows: planar, NICE, RealNVP, Glow, MAF and the neural spline flow, trained by maximum likelihood.

A flow is an invertible map f from data x to a latent z of the same shape with z ~ N(0, I); by the
change of variables

    log p(x) = log N(f(x); 0, I) + log |det df/dx|.

Every layer implements ``forward(x) -> (z, log|det dz/dx|)`` (the normalising direction, one
log-determinant per example) and ``inverse(z) -> x`` (the generative direction, used to sample); a
model is a :class:`~harness_plugins.models.flows.layers.Chain` of layers, so every Jacobian term of
every layer enters the likelihood.

The package: ``layers`` (the layer interface, chains, preprocessing, squeeze and multi-scale),
``networks`` (the networks inside couplings), one module per architecture (``planar``, ``nice``,
``realnvp``, ``glow``, ``maf``, ``spline``; the paper, what is left out and how its body is built),
``model`` (training, likelihood, sampling, data handling), and here the six registrations with their
hyperparameters.

Factored-out latents use the standard normal (Glow's learned split prior is left out).
"""

from __future__ import annotations

from typing import Optional

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from harness_plugins.models._blocks import TOYS
from harness_plugins.models.flows.glow import build_glow
from harness_plugins.models.flows.maf import build_maf
from harness_plugins.models.flows.model import FlowModel
from harness_plugins.models.flows.nice import build_nice
from harness_plugins.models.flows.planar import build_planar
from harness_plugins.models.flows.realnvp import build_realnvp
from harness_plugins.models.flows.spline import build_spline

# ============================================================================ hyperparameters

TRAINING = {
    "steps": 1000,
    "batch_size": 256,
    "lr": 1e-3,
    "warmup": 50,
    "grad_clip": 10.0,
    "val_every": 250,
    "val_examples": 2000,
    "eval_batch": 2048,
    "dequant_draws": 1,
    "logit_alpha": 0.05,
    "init_batch": 512,
    "temperature": 1.0,
}

DOCS = {
    "steps": "optimisation steps (fewer if the job's deadline comes first)",
    "batch_size": "training examples per step",
    "lr": "peak Adam learning rate",
    "warmup": "steps of linear learning-rate warm-up, then cosine decay to zero",
    "grad_clip": "gradient-norm clip, on the gradient of the NLL in nats per dimension",
    "val_every": "steps between validation NLL checks; the best parameters are kept",
    "val_examples": "validation examples used for those checks",
    "eval_batch": "examples per pass when evaluating and sampling",
    "dequant_draws": "dequantisation draws averaged in log_likelihood (discrete data)",
    "logit_alpha": "a of the logit preprocessing y -> logit(a + (1 - 2a) y) (discrete data)",
    "init_batch": "examples for actnorm's data-dependent initialisation",
    "temperature": "scale of the base draws when sampling",
    "layers": "number of flow layers",
    "couplings": "coupling layers (per scale on images)",
    "hidden": "hidden units of the coupling / MADE networks",
    "depth": "hidden layers of the coupling / MADE networks",
    "channels": "hidden channels of the convolutional coupling networks (images)",
    "scales": "scales of the multi-scale architecture (images)",
    "steps_per_scale": "flow steps (actnorm, 1x1 convolution, coupling) per scale",
    "bins": "bins of each rational-quadratic spline",
    "tail_bound": "the splines act on [-B, B] (standardised data), identity outside: this is B",
    "variant": "coupling (halves condition each other) or autoregressive (MADE: each entry on those before it)",
}


def _declare(architecture: dict, profiles: dict, images: dict, choices=None, rules=()) -> Hyperparameters:
    """The training hyperparameters plus ``architecture`` (the model's own keys and base values);
    ``profiles`` per profile; ``images`` per profile, for image datasets (after the profile's values);
    ``rules``: further (selector, values) rules, after those."""
    defaults = {**TRAINING, **architecture}
    return Hyperparameters(
        defaults=defaults,
        docs={k: DOCS[k] for k in defaults},
        profiles=profiles,
        rules=[*(({"profile": p, "image": True}, values) for p, values in images.items()), *rules],
        choices=choices or {},
    )


# 2-D jobs are dominated by per-operation overhead, so they take large batches (1024) and a few hundred
# cheap steps at a high rate; image jobs (the image rules) take small batches. Quick aims at about 5 s
# of single-thread training per 2-D toy (every 2-D model runs on all seven, within run --all's budget)
# and 10 s per image set, smoke at about a second; the spline flow, the toys' reference, gets more.
# docs/benchmarks.md gives the nll_gap these budgets reach on the toys.
PLANAR = _declare(
    {"layers": 16},
    profiles={
        "smoke": {"layers": 8, "steps": 150, "lr": 1e-2, "val_every": 150},
        "quick": {"layers": 16, "steps": 350, "batch_size": 1024, "lr": 2e-2},
        "full": {"layers": 64, "steps": 20000, "lr": 3e-3, "batch_size": 512, "val_every": 1000},
    },
    images={},
)
NICE = _declare(
    {"couplings": 8, "hidden": 64, "depth": 2},
    profiles={
        "smoke": {"couplings": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 3e-3, "val_every": 150},
        "quick": {"couplings": 8, "hidden": 64, "depth": 2, "steps": 400, "batch_size": 1024, "lr": 1e-2},
        "full": {"couplings": 8, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3, "val_every": 1000},
    },
    images={
        "smoke": {"hidden": 64, "steps": 60, "batch_size": 32, "lr": 1e-2},
        "quick": {"couplings": 4, "hidden": 256, "depth": 3, "steps": 900, "batch_size": 64, "lr": 1e-3},
        "full": {"couplings": 4, "hidden": 1000, "depth": 5, "steps": 30000, "batch_size": 128},
    },
)
REALNVP = _declare(
    {"couplings": 6, "hidden": 64, "depth": 2, "channels": 32, "scales": 2},
    profiles={
        "smoke": {"couplings": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150},
        "quick": {"couplings": 6, "hidden": 64, "depth": 2, "steps": 400, "batch_size": 1024, "lr": 1e-2},
        "full": {"couplings": 8, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3, "val_every": 1000},
    },
    images={
        "smoke": {"couplings": 2, "channels": 8, "scales": 2, "steps": 60, "batch_size": 32, "lr": 1e-2},
        "quick": {"couplings": 3, "channels": 32, "scales": 2, "steps": 300, "batch_size": 64, "lr": 2e-3},
        "full": {"couplings": 3, "channels": 128, "scales": 3, "steps": 30000, "batch_size": 64},
    },
)
GLOW = _declare(
    {"steps_per_scale": 6, "hidden": 64, "depth": 2, "channels": 32, "scales": 2},
    profiles={
        "smoke": {"steps_per_scale": 3, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150},
        "quick": {"steps_per_scale": 6, "hidden": 64, "depth": 2, "steps": 350, "batch_size": 1024, "lr": 1e-2},
        "full": {"steps_per_scale": 10, "hidden": 256, "depth": 3, "steps": 20000, "lr": 1e-3, "val_every": 1000},
    },
    images={
        "smoke": {"steps_per_scale": 2, "channels": 8, "scales": 2, "steps": 60, "batch_size": 32, "lr": 1e-2},
        "quick": {"steps_per_scale": 4, "channels": 32, "scales": 2, "steps": 350, "batch_size": 64, "lr": 2e-3},
        "full": {"steps_per_scale": 16, "channels": 256, "scales": 3, "steps": 30000, "batch_size": 64},
    },
)
MAF = _declare(
    {"layers": 6, "hidden": 64, "depth": 2},
    profiles={
        "smoke": {"layers": 4, "hidden": 32, "depth": 2, "steps": 150, "lr": 1e-2, "val_every": 150},
        "quick": {"layers": 6, "hidden": 64, "depth": 2, "steps": 800, "lr": 3e-3},
        "full": {"layers": 10, "hidden": 256, "depth": 2, "steps": 20000, "lr": 1e-3, "val_every": 1000},
    },
    images={
        "smoke": {"hidden": 64, "steps": 60, "batch_size": 32, "lr": 1e-2},
        "quick": {"layers": 5, "hidden": 256, "steps": 800, "batch_size": 64, "lr": 1e-3},
        "full": {"layers": 10, "hidden": 1024, "steps": 30000, "batch_size": 128},
    },
)
# The spline flow is the 2-D toys' reference model: quick is tuned so that it comes within 0.05 nats of
# each toy's entropy (paired nll_gap; about 0.02-0.035 nats at 400 steps). Deeper, narrower coupling
# networks (4 x 48) sharpen checkerboard's edges more per step than wider ones, and checkerboard, whose
# density jumps at every square's edge, takes 600 steps to be as close.
SPLINE = _declare(
    {"couplings": 6, "hidden": 64, "depth": 2, "bins": 8, "tail_bound": 4.0, "variant": "coupling"},
    profiles={
        "smoke": {"couplings": 4, "hidden": 32, "depth": 2, "bins": 8, "steps": 150, "lr": 1e-2, "val_every": 150},
        "quick": {"couplings": 4, "hidden": 48, "depth": 4, "bins": 32, "steps": 400, "batch_size": 1024,
                  "lr": 1e-2},
        "full": {"couplings": 8, "hidden": 128, "depth": 4, "bins": 32, "steps": 20000, "batch_size": 1024,
                 "lr": 1e-3, "val_every": 1000},
    },
    images={},
    choices={"variant": ["coupling", "autoregressive"]},
    rules=[({"profile": "quick", "dataset": "checkerboard"}, {"steps": 600})],
)

# ============================================================================ registration

DEFAULT_DATASETS_IMAGES = {"smoke": ["8gaussians", "digits"], "quick": [TOYS, "digits"],
                           "full": [TOYS, "digits", "mnist5k"]}


def _planar_accepts(spec) -> Optional[str]:
    if spec.is_image or len(spec.event_shape) != 1 or spec.dim > 16:
        return (f"planar flows have no closed-form inverse and are only run on low-dimensional vectors; "
                f"{spec.name} has shape {spec.event_shape}")
    return None


def _spline_accepts(spec) -> Optional[str]:
    if len(spec.event_shape) != 1 or spec.dim < 2:
        return (f"the spline flow here couples halves of a feature vector (at least two features); "
                f"{spec.name} has shape {spec.event_shape}")
    return None


def _vector_or_image(spec) -> Optional[str]:
    if len(spec.event_shape) not in (1, 3):
        return f"flows here take vectors or (C, H, W) images; {spec.name} has shape {spec.event_shape}"
    return None


def _glow_accepts(spec) -> Optional[str]:
    reason = _vector_or_image(spec)
    if reason is None and spec.is_image and (spec.event_shape[1] % 2 or spec.event_shape[2] % 2):
        reason = f"glow squeezes 2x2 blocks and needs even image sides; {spec.name} is {spec.event_shape}"
    if reason is None and len(spec.event_shape) == 1 and spec.dim < 2:
        reason = "glow couplings need at least two dimensions"
    return reason


def _at_least_2d(accepts):
    def check(spec):
        reason = accepts(spec)
        if reason is None and spec.dim < 2:
            reason = f"coupling and autoregressive flows need at least two dimensions; {spec.name} has one"
        return reason
    return check


def _factory(build):
    def make(spec, hparams):
        return FlowModel(spec, hparams, build)
    return make


ALL_KINDS = [DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY]

MODELS = [
    dict(
        name="planar", build=build_planar, accepts=_planar_accepts, hyperparameters=PLANAR,
        default_datasets={"smoke": ["8gaussians"], "quick": [TOYS], "full": [TOYS]},
        description="Planar flow (Rezende & Mohamed 2015), density by numerical inversion of each layer.",
    ),
    dict(
        name="nice", build=build_nice, accepts=_at_least_2d(_vector_or_image), hyperparameters=NICE,
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="NICE (Dinh et al. 2014): additive couplings and a diagonal scaling; Gaussian base.",
    ),
    dict(
        name="realnvp", build=build_realnvp, accepts=_at_least_2d(_vector_or_image), hyperparameters=REALNVP,
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="RealNVP (Dinh et al. 2017): affine couplings; multi-scale with squeeze on images.",
    ),
    dict(
        name="glow", build=build_glow, accepts=_glow_accepts, hyperparameters=GLOW,
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="Glow (Kingma & Dhariwal 2018): actnorm, LU 1x1 convolution, affine coupling; multi-scale.",
    ),
    dict(
        name="spline", build=build_spline, accepts=_spline_accepts, hyperparameters=SPLINE,
        default_datasets={"smoke": ["8gaussians"], "quick": [TOYS], "full": [TOYS]},
        description="Neural spline flow (Durkan et al. 2019): rational-quadratic spline couplings with linear "
                    "tails; vectors.",
    ),
    dict(
        name="maf", build=build_maf, accepts=_at_least_2d(_vector_or_image), hyperparameters=MAF,
        default_datasets=DEFAULT_DATASETS_IMAGES,
        description="MAF (Papamakarios et al. 2017): MADE autoregressive layers with order reversal.",
    ),
]


@hookimpl
def harness_register_models(register):
    for m in MODELS:
        register(ModelSpec(
            name=m["name"],
            family="flow",
            factory=_factory(m["build"]),
            data_kinds=ALL_KINDS,
            capabilities=[Capability.SAMPLE],
            likelihood=LikelihoodKind.EXACT,
            hyperparameters=m["hyperparameters"],
            default_datasets=m["default_datasets"],
            accepts=m["accepts"],
            description=m["description"],
        ))
