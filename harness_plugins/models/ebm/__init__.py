"""Energy-based models on binary data: Boltzmann machines with Gibbs sampling and estimated log Z.

Three models, family ``ebm``, all on 0/1 data (images are flattened to D visible units). Each
defines an unnormalised log-probability log p*(v) = log sum_h exp(-E(v, h)):

``boltzmann``  fully visible:  E(v) = -1/2 v^T W v - b^T v   (W symmetric, zero diagonal)
``rbm``        restricted:     E(v, h) = -v^T W h - a^T v - c^T h
``dbm``        deep, 2 layers: E(v, h1, h2) = -v^T W1 h1 - h1^T W2 h2 - a^T v - b1^T h1 - b2^T h2

Training is maximum likelihood by stochastic gradient ascent with momentum; the gradient is a data
expectation minus a model expectation of the sufficient statistics. The model term comes from
Gibbs chains: persistent chains (PCD) for ``boltzmann`` and ``dbm``, CD-k or PCD for ``rbm``
(hparam ``training``). The ``dbm`` is pre-trained greedily as two RBMs with the doubling trick of
Salakhutdinov & Hinton (2009), then trained jointly with a mean-field data term. Sampling runs
Gibbs chains from the base-rate model for ``sample_burn_in`` sweeps: systematic-scan single-unit
sweeps (``boltzmann``), block Gibbs v <-> h (``rbm``), alternating odd {v, h2} / even {h1} layers
(``dbm``).

Log-likelihood: log p(v) = log p*(v) - log Z, in nats.

* log Z is exact (kind ``exact``) when a sum over at most 2^``exact_max_units`` states suffices:
  all visible states of a small ``boltzmann``; the hidden states of an ``rbm`` (visibles summed out
  analytically; or its visible states if D is the smaller); the h1 states of a ``dbm`` (v and h2
  are conditionally independent given h1, so both are summed out analytically).
* Otherwise log Z is estimated by annealed importance sampling (Salakhutdinov & Murray 2008) from
  the base-rate model (independent units whose biases match the training marginals) with
  ``ais_betas`` temperatures and ``ais_chains`` chains; the ``dbm`` anneals the marginal over h1
  (v and h2 summed out analytically, as for its exact log Z). The estimate is log mean exp of the
  importance weights; its standard error (delta method: std(w) / mean(w) / sqrt(chains)) is the
  LogLikelihood's ``shared_stderr`` and the kind is ``estimate``. The log of an unbiased estimate
  of Z is biased low, and with too few temperatures the weights are heavy-tailed and the delta
  method understates the error, so log p(v) estimates err on the optimistic side.
* The conservative end: beside that optimistic AIS figure, the ``nll_upper`` metric registered here
  (module ``bracket``) reports the NLL by reverse annealing from the test examples (RAISE, Burda,
  Grosse & Salakhutdinov 2015; ``raise_betas`` temperatures, ``raise_chains`` chains per example,
  on ``raise_examples`` test examples), pessimistic in expectation, and ``nll_bracket``, the width of
  the interval; see :meth:`machine.BoltzmannModel.raise_log_likelihood`.
* log p*(v) is exact for ``boltzmann`` and ``rbm``. For ``dbm`` it is exact by enumerating the
  smaller hidden layer when that has at most ``exact_max_units`` units; otherwise it is the
  mean-field lower bound, and the reported value is that bound minus the AIS log Z, as in
  Salakhutdinov & Hinton (2009); ``details["log_p_unnormalized"]`` says which.

The package: ``common`` (dtypes, Bernoulli draws, enumeration of states, the base-rate model, the
AIS schedule, Gibbs sweeps, momentum ascent), ``machine`` (what the three models share: fitting,
log Z, log-likelihood, RAISE, sampling), one module per machine (``fvbm``, ``rbm``, ``dbm``),
``bracket`` (the ``nll_upper`` metric), and here the hyperparameters and the registrations.

Hyperparameters (declared with their documentation at the end of this module): the shared
:data:`COMMON` ones (``steps``, ``batch_size``, ``lr`` (decays linearly to 0), ``momentum``,
``weight_decay``, ``init_scale``, ``chains``, ``exact_max_units``, ``ais_betas``, ``ais_chains``,
``ais_seed``, ``raise_betas``, ``raise_chains``, ``raise_examples``, ``sample_burn_in``,
``eval_batch``) and each machine's own: ``boltzmann``: ``sweeps_per_step``; ``rbm``: ``hidden``,
``training`` ("cd" or "pcd"), ``k``; ``dbm``: ``hidden1``, ``hidden2``, ``pretrain_steps`` (per
layer), ``pretrain_lr``, ``pretrain_momentum``, ``k``, ``mean_field_iters``,
``eval_mean_field_iters``, ``chain_burn_in``. Rules for ``digits-binary`` give
its 64 visible units a small machine whose log Z is exact, while MNIST gets a larger one estimated
by AIS.
"""

from __future__ import annotations

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, ModelSpec, hookimpl
from harness_plugins.models.ebm.bracket import nll_bracket_metric
from harness_plugins.models.ebm.dbm import DeepBoltzmann
from harness_plugins.models.ebm.fvbm import FullyVisibleBoltzmann
from harness_plugins.models.ebm.rbm import RestrictedBoltzmann

__all__ = ["FullyVisibleBoltzmann", "RestrictedBoltzmann", "DeepBoltzmann", "harness_register_models"]


# --------------------------------------------------------------------------- hyperparameters


COMMON = {
    "steps": 500, "batch_size": 100, "lr": 0.1, "momentum": 0.5, "weight_decay": 1e-4, "init_scale": 0.01,
    "chains": 100, "exact_max_units": 20, "ais_betas": 2000, "ais_chains": 100, "ais_seed": 0,
    "raise_betas": 2000, "raise_chains": 1, "raise_examples": 100,
    "sample_burn_in": 500, "eval_batch": 500,
}
DOCS = {
    "steps": "training steps (joint steps for the dbm; fewer if the job's deadline comes first)",
    "batch_size": "training examples per step",
    "lr": "learning rate, decaying linearly to 0",
    "momentum": "momentum of the gradient ascent",
    "weight_decay": "L2 weight decay on the couplings",
    "init_scale": "standard deviation of the initial weights",
    "chains": "persistent Gibbs chains for the model expectation",
    "exact_max_units": "log Z and log p*(v) are enumerated exactly over at most 2^this states, else AIS",
    "ais_betas": "AIS inverse temperatures",
    "ais_chains": "AIS chains",
    "ais_seed": "seed of the AIS and RAISE chains (combined with the job's seed)",
    "raise_betas": "RAISE inverse temperatures (the AIS schedule's shape), for nll_upper",
    "raise_chains": "RAISE chains per test example",
    "raise_examples": "test examples RAISE runs on (the first of the evaluation split; 0: all of them)",
    "sample_burn_in": "Gibbs sweeps from the base-rate model before a sample is taken",
    "eval_batch": "examples per pass when evaluating log-likelihoods",
    "sweeps_per_step": "Gibbs sweeps of the persistent chains per training step",
    "hidden": "hidden units",
    "training": "cd (chains restart at the data) or pcd (persistent chains)",
    "k": "Gibbs steps of the negative phase per training step",
    "hidden1": "units of the first hidden layer",
    "hidden2": "units of the second hidden layer",
    "pretrain_steps": "greedy pre-training steps per layer (0: none)",
    "pretrain_lr": "learning rate of pre-training, decaying linearly to 0",
    "pretrain_momentum": "momentum of pre-training",
    "mean_field_iters": "mean-field iterations for the data term of a training step",
    "eval_mean_field_iters": "mean-field iterations at most for the bound on log p*(v) in evaluation",
    "chain_burn_in": "Gibbs steps that bring the persistent chains near the pre-trained model",
}


def _declare(own: dict, profiles: dict, digits_binary: dict, choices=None) -> Hyperparameters:
    """:data:`COMMON` plus the machine's ``own`` keys (which win); ``digits_binary``: per profile, the
    values for the 64-unit digits-binary set (after the profile's)."""
    defaults = {**COMMON, **own}
    return Hyperparameters(
        defaults=defaults,
        docs={k: DOCS[k] for k in defaults},
        profiles=profiles,
        rules=[({"profile": p, "dataset": "digits-binary"}, values) for p, values in digits_binary.items()],
        choices=choices or {},
    )


BOLTZMANN = _declare(
    {"sweeps_per_step": 1},
    profiles={
        "smoke": {"steps": 1000, "ais_betas": 500, "ais_chains": 50, "sample_burn_in": 100},
        "quick": {"steps": 3000, "ais_betas": 3000, "ais_chains": 100, "sample_burn_in": 200},
        "full": {"steps": 20000, "ais_betas": 20000, "ais_chains": 200, "sample_burn_in": 1000},
    },
    digits_binary={},
)
RBM = _declare(
    {"hidden": 100, "training": "pcd", "k": 1},
    profiles={
        "smoke": {"hidden": 16, "steps": 1500, "sample_burn_in": 100, "ais_betas": 300, "ais_chains": 50},
        # 4000 temperatures each way bring the AIS / RAISE interval on mnist5k-binary to 0.64 +- 0.41
        # nats (2000: 1.62 +- 0.53; the AIS nll rises from 101.2 to 102.2) for about 8 s more a job.
        "quick": {"hidden": 200, "steps": 2500, "sample_burn_in": 100, "ais_betas": 4000, "ais_chains": 100,
                  "raise_betas": 4000},
        "full": {"hidden": 500, "steps": 50000, "sample_burn_in": 1000, "ais_betas": 14500, "ais_chains": 100},
    },
    digits_binary={
        "quick": {"hidden": 20, "steps": 3000, "sample_burn_in": 200},
        "full": {"hidden": 20, "steps": 20000},
    },
    choices={"training": ["cd", "pcd"]},
)
# Pre-training (CD-1) takes large steps with high momentum; joint PCD needs smaller, less accelerated
# steps, or it undoes what pre-training found.
DBM = _declare(
    {"hidden1": 100, "hidden2": 50, "pretrain_steps": 1500, "pretrain_lr": 0.1, "pretrain_momentum": 0.9,
     "lr": 0.05, "momentum": 0.5, "k": 1, "mean_field_iters": 10, "eval_mean_field_iters": 100,
     "chain_burn_in": 100},
    profiles={
        "smoke": {"hidden1": 16, "hidden2": 8, "pretrain_steps": 500, "steps": 800, "sample_burn_in": 100,
                  "ais_betas": 300, "ais_chains": 50},
        "quick": {"hidden1": 200, "hidden2": 100, "pretrain_steps": 500, "steps": 2000, "sample_burn_in": 100,
                  "ais_betas": 2000, "ais_chains": 100},
        "full": {"hidden1": 500, "hidden2": 1000, "pretrain_steps": 20000, "steps": 100000,
                 "sample_burn_in": 1000, "ais_betas": 20000, "ais_chains": 100},
    },
    digits_binary={
        "quick": {"hidden1": 20, "hidden2": 10, "pretrain_steps": 1500, "sample_burn_in": 200},
        "full": {"hidden1": 20, "hidden2": 20, "pretrain_steps": 5000, "steps": 20000},
    },
)


# --------------------------------------------------------------------------- registration


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="boltzmann",
        family="ebm",
        factory=FullyVisibleBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=BOLTZMANN,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Fully visible Boltzmann machine (pairwise couplings), PCD with Gibbs sweeps; "
                    "log Z exact for <= 20 units, else AIS.",
    ))
    register(ModelSpec(
        name="rbm",
        family="ebm",
        factory=RestrictedBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=RBM,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Restricted Boltzmann machine, CD-k or PCD (default); log Z exact for <= 20 hidden units, "
                    "else AIS.",
    ))
    register(ModelSpec(
        name="dbm",
        family="ebm",
        factory=DeepBoltzmann,
        data_kinds=[DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.ESTIMATE,
        hyperparameters=DBM,
        default_datasets={"smoke": ["digits-binary"], "quick": ["digits-binary", "mnist5k-binary"],
                          "full": ["digits-binary", "mnist5k-binary"]},
        description="Two-hidden-layer deep Boltzmann machine: greedy pre-training, then PCD with mean-field; "
                    "log Z exact for <= 20 units in h1, else AIS; mean-field bound on log p*(v) when both "
                    "hidden layers are large.",
    ))


@hookimpl
def harness_register_metrics(register):
    register(nll_bracket_metric())
