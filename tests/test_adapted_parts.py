"""The parts of adapting an object of the user's own code (harness.adapters): references, factories and
their hyperparameters, the duck-typed model (sampling calls and their seeding, log_prob layouts, state),
the picklable plugin a worker rebuilds, the stream of a generator function; and every refusal of a bad
reference or object through the CLI, exit 2 with the message and nothing written."""

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import distributions as D

from harness.adapters.factory import inspect_factory
from harness.adapters.model import AdaptedModel, AdaptError
from harness.adapters.plugin import AdaptedPlugin
from harness.adapters.reference import UNVERSIONED, is_reference, package_version, parse
from harness.adapters.stream import GeneratorPlugin
from harness.contracts import UserError
from harness.external import NotEnoughSamples
from harness.host import PluginHost, get_host

REF = "py:tests.adapted_models:"


@pytest.fixture(scope="module")
def spec():
    return get_host().dataset("8gaussians")


def test_references_parse_with_an_optional_label_and_refuse_bad_syntax():
    ref = parse("mine=py:tests.adapted_models:nsf")
    assert (ref.module, ref.attribute, ref.label, ref.name, ref.spelled) == \
        ("tests.adapted_models", "nsf", "mine", "mine", "mine=py:tests.adapted_models:nsf")
    assert parse("py:a.b:C.make").name == "make"
    assert is_reference("py:a:b") and is_reference("x=py:a:b") and not is_reference("gmm")
    for bad in ("py:nocolon", "py:a b:c", "py:a:", "bad label=py:a:b", "gmm"):
        with pytest.raises(UserError, match="py:PACKAGE.MODULE:FACTORY|label"):
            parse(bad)


def test_the_package_version_is_that_of_the_distribution_holding_the_module():
    zuko = pytest.importorskip("zuko")
    import tests.adapted_models

    assert package_version(zuko) == zuko.__version__  # installed
    assert package_version(tests.adapted_models) == UNVERSIONED  # another distribution ships a "tests" package


def test_the_factory_signature_declares_the_hyperparameters():
    factory = inspect_factory(parse(REF + "nsf"))
    assert factory.takes_spec
    assert factory.defaults == {"transforms": 2, "hidden": 32, "steps": 400, "lr": 3e-3, "batch": 256}
    hp = factory.hyperparameters
    assert hp.resolve("smoke", None, [("hidden", 8, "--set")])["hidden"] == 8
    with pytest.raises(UserError, match="takes an integer"):
        hp.resolve("smoke", None, [("hidden", "wide", "--set")])
    with pytest.raises(UserError, match="not a factory"):
        inspect_factory(parse("py:math:pi"))


class Generating:
    """Samples with generate(n, generator)."""

    def generate(self, n, generator):
        return torch.randn(n, 2, generator=generator, dtype=torch.float64)


class ShapeSampler:
    """sample(sample_shape) only, from torch's global generator; counts how it was called."""

    def __init__(self):
        self.calls = []

    def sample(self, shape):
        self.calls.append(type(shape).__name__)
        return torch.randn(*shape, 2)


def test_sampling_calls_and_their_seeding(spec):
    model = AdaptedModel(Generating(), spec, "src")
    x = model.sample(5, torch.Generator().manual_seed(3))
    assert x.dtype == torch.float32 and x.shape == (5, 2) and model.reproducibility()[0] is True
    shaped = ShapeSampler()
    model = AdaptedModel(shaped, spec, "src")
    a = model.sample(4, torch.Generator().manual_seed(1))
    b = model.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and shaped.calls == ["int", "Size", "Size"]  # the call that works is learnt once
    dist = AdaptedModel(D.Normal(torch.zeros(2), torch.ones(2)), spec, "src")
    before = torch.get_rng_state()
    x = dist.sample(6, torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is left as it was
    assert torch.equal(x, dist.sample(6, torch.Generator().manual_seed(1)))
    assert not torch.equal(x, dist.sample(6, torch.Generator().manual_seed(2)))
    images = AdaptedModel(D.Normal(torch.zeros(2), torch.ones(2)), get_host().dataset("digits"), "src")
    with pytest.raises(AdaptError, match=r"gave shape \(6, 2\); digits needs \(6, 1, 8, 8\) or \(6, 64\)"):
        images.sample(6, torch.Generator())


def test_log_prob_of_a_callable_giving_a_distribution_and_its_state(spec):
    """A module whose call gives a distribution (zuko's form): log_prob on the dataset's layout, a
    per-coordinate log_prob refused with the fix, and the module's state through export / restore."""

    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.loc = torch.nn.Parameter(torch.randn(2))

        def forward(self):
            return D.Independent(D.Normal(self.loc, torch.ones(2)), 1)

    model = AdaptedModel(Module(), spec, "src", likelihood="exact")
    x = torch.randn(7, 2)
    expected = D.Independent(D.Normal(model.object.loc.detach(), torch.ones(2)), 1).log_prob(x)
    assert torch.allclose(model.log_likelihood(x).values, expected)
    other = AdaptedModel(Module(), spec, "src", likelihood="exact")
    other.restore_state(model.export_state())
    assert torch.allclose(other.log_likelihood(x).values, expected)
    per_coordinate = AdaptedModel(D.Normal(torch.zeros(2), torch.ones(2)), spec, "src", likelihood="exact")
    with pytest.raises(AdaptError, match="Independent"):
        per_coordinate.log_likelihood(x)


def test_the_plugin_travels_by_its_reference_and_builds_the_same_model(spec):
    plugin = AdaptedPlugin(parse(REF + "gaussian_module"))
    plugin.declare(plugin.likelihood_for(plugin.build(spec, {"steps": 1, "lr": 0.1}))[0], True)
    copy = pickle.loads(pickle.dumps(plugin))
    assert copy._factory is None  # the user's code is imported again, never pickled
    host = PluginHost.from_sources([("adapted:gaussian_module", copy)])
    mspec = host.model("gaussian_module")
    assert mspec.likelihood.value == "exact" and mspec.family == "adapted"
    assert mspec.hyperparameters.defaults == {"steps": 300, "lr": 0.05}
    torch.manual_seed(0)
    a = mspec.factory(spec, {"steps": 1, "lr": 0.1})
    torch.manual_seed(0)
    b = plugin.build(spec, {"steps": 1, "lr": 0.1})
    assert a.export_state().keys() == b.export_state().keys()


def test_a_stream_hands_out_one_draw_in_order_across_batches(spec):
    from tests.adapted_models import held_out_batches

    plugin = GeneratorPlugin(parse(REF + "held_out_batches"), "held", spec.kind)
    model = plugin.build(spec, {})
    data = torch.from_numpy(np.concatenate(list(held_out_batches(spec))))
    draw = torch.Generator()
    assert torch.equal(torch.cat([model.sample(100, draw), model.sample(150, draw)]), data[:250])
    assert torch.equal(model.sample(10, torch.Generator()), data[:10])  # a new draw starts again
    with pytest.raises(NotEnoughSamples, match="yielded 5000 samples and this metric draws more"):
        model.sample(5001, torch.Generator())


def test_a_factory_that_raises_exits_2_naming_its_call(tmp_path, capsys):
    from harness.cli import main

    out = tmp_path / "out"
    assert main(["run", "--model", REF + "raising", "--set", "raising.path=gone.pt", "--dataset", "8gaussians",
                 "--profile", "smoke", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "py:tests.adapted_models:raising on 8gaussians: raising(spec, path='gone.pt') raised " \
           "FileNotFoundError: no weights at gone.pt (at " in err
    assert not out.exists()


# ----------------------------------------------------------------------------- refusals through the CLI


@pytest.mark.parametrize("args, message", [
    (["--model", "py:tests.adapted_broken:factory"],
     r"importing tests.adapted_broken failed: ModuleNotFoundError: No module named 'not_a_package_anyone_has'"),
    (["--model", "py:tests.no_such_module:f"], r"cannot import tests.no_such_module \(ModuleNotFoundError"),
    (["--model", REF + "no_such_factory"], r"tests.adapted_models has no attribute 'no_such_factory'"),
    (["--model", REF + "mute"], r"Mute, which has neither log_prob nor a way to sample"),
    (["--model", REF + "wrong_shape"], r"sample\(8\) gave shape \(8, 3\); 8gaussians needs \(8, 2\)"),
    (["--model", REF + "complex_samples"], r"sample\(8\) gave torch.complex64 samples; samples must be real"),
    (["--model", REF + "undeclared"], r"has log_prob but does not say what kind of log-likelihood .*--likelihood"),
    (["--model", REF + "gaussian_module", "--set", "gaussian_module.step=3"],
     r"'gaussian_module' has no hyperparameter 'step'; did you mean 'steps'\? \(its hyperparameters: lr, steps\)"),
    (["--model", REF + "true_8gaussians", "--model", "gmm", "--name", "a", "--model", REF + "nsf"],
     r"--name names one py: model and 2 are given"),
    (["--model", "gmm", "--likelihood", "exact"], r"--likelihood apply to objects of your own code"),
])
def test_bad_references_and_objects_exit_2_before_any_work(cli_env, tmp_path, args, message):
    import re

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", "--dataset", "8gaussians", "--profile", "smoke",
                           "--out", str(out), "--no-progress", *args], env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_a_generator_that_yields_the_wrong_shape_exits_2(cli_env, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "harness", "evaluate-samples", "--generator", REF + "wrong_batches",
                           "--dataset", "8gaussians", "--out", str(out)], env=cli_env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert "wrong_batches, first batch: samples have shape (10, 3); 8gaussians needs (N, 2)" in proc.stderr
    assert not out.exists()
