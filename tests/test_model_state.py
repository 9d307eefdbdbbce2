"""Model.export_state / restore_state: every built-in model, fitted briefly, survives a round trip through
a safetensors file into a model the factory builds afresh (from other random initial weights): the same
state, the same samples for the same generator, the same log-likelihoods."""

from pathlib import Path

import pytest
import torch

from harness.artifacts import load_state, save_state
from harness.contracts import Capability, FitContext
from harness.host import get_host
from harness.dataset_cache import DatasetCache

# Declared hyperparameters made small where a model declares them, so each fit, draw and score takes
# a moment: a couple of training steps still move every parameter away from its initial value.
SMALL = {"steps": 3, "pretrain_steps": 1, "chain_burn_in": 1, "sample_burn_in": 2, "ais_betas": 10, "ais_chains": 4,
         "max_iter": 3, "n_init": 1, "val_every": 2, "eval_every": 2, "val_examples": 20, "init_batch": 64, "batch_size": 16,
         "eval_mean_field_iters": 5, "iwae_k": 2, "warmup": 1}
HOST = get_host()


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared machine torch's thread pool spends more time waiting than working."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(host, name):
    spec = host.model(name)
    dspec = host.dataset(spec.datasets_for("smoke", host.registry.datasets)[0])
    data = DatasetCache(Path("datasets")).get(dspec)
    overrides = [(k, v, "test") for k, v in SMALL.items() if spec.hyperparameters.declares(k)]
    hparams = spec.resolve_hparams("smoke", dspec, overrides)
    return spec, data, hparams


@pytest.mark.parametrize("name", sorted(HOST.registry.models))
def test_every_built_in_model_round_trips_through_a_safetensors_file(name, tmp_path):
    spec, data, hparams = small_model(HOST, name)
    torch.manual_seed(0)
    fitted = spec.factory(data.spec, dict(hparams))
    fitted.fit(data.train, data.val, FitContext("cpu", seed=3))
    state = fitted.export_state()
    assert state and all(isinstance(v, torch.Tensor) for v in state.values())
    save_state(tmp_path / "state.safetensors", state)

    torch.manual_seed(1)  # other initial weights: only the restored state can make the two agree
    restored = spec.factory(data.spec, dict(hparams))
    restored.restore_state(load_state(tmp_path / "state.safetensors"))
    again = restored.export_state()
    assert sorted(again) == sorted(state)
    for key in state:
        assert torch.equal(again[key], state[key]), key

    labels = torch.arange(4) % data.spec.num_classes if Capability.CONDITIONAL in spec.capabilities else None
    with torch.no_grad():
        a = fitted.sample(4, torch.Generator().manual_seed(5), labels=labels)
        b = restored.sample(4, torch.Generator().manual_seed(5), labels=labels)
        assert torch.equal(a, b)
        if Capability.LOG_LIKELIHOOD in spec.capabilities:
            x = data.test.x[:6]
            assert torch.equal(fitted.log_likelihood(x).values, restored.log_likelihood(x).values)


def test_a_boltzmann_machine_refuses_a_state_of_the_wrong_shape():
    spec, data, hparams = small_model(HOST, "rbm")
    model = spec.factory(data.spec, dict(hparams))
    model.fit(data.train, data.val, FitContext("cpu", seed=0))
    state = model.export_state()
    state["params.W"] = state["params.W"][:, :3]
    fresh = spec.factory(data.spec, dict(hparams))
    with pytest.raises(ValueError, match=r"parameter W must have shape \(64, 16\), not \(64, 3\)"):
        fresh.restore_state(state)
    del state["seed"]
    with pytest.raises(KeyError, match="needs params"):
        fresh.restore_state(state)
