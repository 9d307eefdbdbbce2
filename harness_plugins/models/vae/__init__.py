"""Variational autoencoders (vae, cvae): their hyperparameters and registration.

``vae`` and the label-conditional ``cvae`` are the family ``vae``.

Model. z ~ N(0, I) in ``latent`` dimensions, x ~ p(x | z) with a decoder network, and an encoder
q(z | x) = N(mu(x), diag sigma^2(x)) trained jointly by maximising the ELBO with the
reparametrisation trick (Kingma & Welling 2014). The networks follow the data's shape
(``arch="auto"``): MLPs for vectors (2-D toys) and for images under 16 pixels a side (8x8 digits,
flattened), strided convolutions / transposed convolutions for larger images; ``arch="mlp"`` or
``"conv"`` forces one. ``kl_warmup`` (a fraction of the steps) anneals the KL weight from 0 to 1
during training only; every reported bound uses the full KL.

Likelihood p(x | z) by data kind, always an exact distribution over the data as given:
  - binary: independent Bernoulli per dimension;
  - discrete with K levels: discretised logistic per dimension (the logistic's mass over each
    level's bin, the two end bins open; PixelCNN++-style), so p(x | z) sums to one over the K levels
    and no dequantisation is involved;
  - continuous: Gaussian with a mean and a learned (decoder-output) variance per dimension. The data
    are standardised with training-split statistics; the Jacobian of that map is added back, so the
    values are densities of the original data.

Evaluation. Both numbers are lower bounds on log p(x) (kind ``bound``):
  - ``elbo(x)``: E_q[log p(x|z)] - KL(q(z|x) || p(z)), the KL in closed form, the expectation by
    Monte Carlo;
  - ``iwae(x, k)``: the importance-weighted bound log (1/k) sum_i p(x, z_i) / q(z_i | x),
    z_i ~ q(z|x) (Burda, Grosse & Salakhutdinov 2016); its expectation never decreases with k and
    tends to log p(x).
``log_likelihood`` reports the IWAE bound with ``iwae_k`` samples (details ``{"k", "estimator":
"iwae"}``), so the core ``nll`` metric shows it; the ``elbo_nll`` metric of the metrics group
(``harness_plugins.metrics.elbo``) reports -ELBO for the vae family, so both bounds appear in the
results.

``cvae`` conditions encoder and decoder on the one-hot class label. ``log_likelihood(x, labels)``
is then the conditional bound on log p(x | y) (details ``{"conditional": True}``); without labels it
is the bound on log p(x) = log sum_y p(y) p(x | y) with the training-split class frequencies p(y)
(a lower bound, since every term is). ``sample(n, generator, labels)`` honours the labels and draws
them uniformly when none are given.

Samples are draws from the model, z ~ p(z) then x ~ p(x | z) (not the decoder mean), so they come
from the distribution whose likelihood is reported. Hyperparameter ``sample_mode="mean"`` returns
the decoder mode instead (quantised for discrete data).

The package: :mod:`.heads` (the likelihood heads), :mod:`.networks` (encoders, decoders,
standardisation), :mod:`.model` (the model: training, bounds, sampling), and here the hyperparameters
and the two registrations.
"""

from __future__ import annotations

from typing import Optional

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from harness_plugins.models._blocks import TOYS
from harness_plugins.models.vae.model import CVAEModel, VAEModel

# ----------------------------------------------------------------------------- hyperparameters

DEFAULTS = {
    "steps": 1000, "batch_size": 128, "lr": 1e-3, "kl_warmup": 0.0, "hidden": 128, "depth": 2, "channels": 32,
    "latent": None, "arch": "auto", "iwae_k": 64, "eval_rows": None, "eval_seed": 12345, "sample_mode": "sample",
}
DOCS = {
    "steps": "optimisation steps (fewer if the job's deadline comes first)",
    "batch_size": "training examples per step (at most the training split)",
    "lr": "Adam learning rate",
    "kl_warmup": "fraction of the steps over which the KL weight rises from 0 to 1 (training only)",
    "hidden": "hidden units of the MLP layers (and of the conv nets' dense layer)",
    "depth": "hidden layers of the MLP encoder and decoder",
    "channels": "channels of the first conv layer (doubling per halving, at most 4x); arch conv",
    "latent": "latent dimensions (None: 2 for data of at most 4 dimensions, else 16)",
    "arch": "network type: auto (conv for images at least 16 pixels a side, else mlp), mlp or conv",
    "iwae_k": "importance samples of the IWAE bound that log_likelihood reports",
    "eval_rows": "decoder rows (examples x importance samples) per evaluation pass, bounds memory "
                 "(None: 512 for conv, 8192 for mlp)",
    "eval_seed": "seed of the Monte Carlo draws in elbo and iwae when no generator is given",
    "sample_mode": "sample: draws from p(x|z); mean: the decoder's mode",
}
CHOICES = {"arch": ["auto", "mlp", "conv"], "sample_mode": ["sample", "mean"]}

# Per-step CPU cost is ~5-10 ms for the MLPs at batch 128 (single thread), so quick is ~15-20 s a
# dataset; full is meant for a GPU.
PROFILES = {
    "smoke": {"steps": 300, "batch_size": 128, "hidden": 64, "depth": 2, "channels": 16, "iwae_k": 8,
              "lr": 2e-3, "kl_warmup": 0.2},
    "quick": {"steps": 2000, "batch_size": 128, "hidden": 256, "depth": 2, "channels": 32, "iwae_k": 64,
              "lr": 1e-3, "kl_warmup": 0.2},
    "full": {"steps": 50000, "batch_size": 128, "hidden": 512, "depth": 3, "channels": 64, "iwae_k": 1000,
             "lr": 5e-4, "kl_warmup": 0.1},
}
# The seven 2-D toys (every one a quick default) take 1200 steps, which keeps run --all within its
# budget at a cost of a few hundredths of a nat of nll_gap (docs/benchmarks.md).
VAE_HYPERPARAMETERS = Hyperparameters(defaults=DEFAULTS, docs=DOCS, profiles=PROFILES, choices=CHOICES,
                                      rules=[({"profile": "quick", "tag": "toy2d"}, {"steps": 1200})])
CVAE_HYPERPARAMETERS = Hyperparameters(defaults=DEFAULTS, docs=DOCS, choices=CHOICES,
                                       profiles={**PROFILES, "quick": {**PROFILES["quick"], "steps": 3000}})


# ----------------------------------------------------------------------------- registration


def _needs_labels(spec) -> Optional[str]:
    if spec.num_classes == 0:
        return f"cvae conditions on class labels; {spec.name} is unlabelled"
    return None


@hookimpl
def harness_register_models(register):
    kinds = [DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY]
    register(ModelSpec(
        name="vae",
        family="vae",
        factory=VAEModel,
        data_kinds=kinds,
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.BOUND,
        hyperparameters=VAE_HYPERPARAMETERS,
        default_datasets={"smoke": ["8gaussians", "digits-binary"], "quick": [TOYS, "digits"],
                          "full": [TOYS, "digits", "mnist5k-binary", "mnist5k"]},
        description="VAE (MLP or conv by data shape; Bernoulli / discretised logistic / Gaussian p(x|z)); "
                    "IWAE bound.",
    ))
    register(ModelSpec(
        name="cvae",
        family="vae",
        factory=CVAEModel,
        data_kinds=kinds,
        capabilities=[Capability.SAMPLE, Capability.CONDITIONAL],
        likelihood=LikelihoodKind.BOUND,
        hyperparameters=CVAE_HYPERPARAMETERS,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits"],
                          "full": ["digits", "mnist5k-binary", "mnist5k"]},
        accepts=_needs_labels,
        description="Class-conditional VAE (one-hot label into encoder and decoder); IWAE bound on log p(x|y).",
    ))
