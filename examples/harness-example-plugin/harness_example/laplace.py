"""A third-party model plugin in a few dozen lines: independent Laplace marginals.

Fitted in closed form (per-dimension median and mean absolute deviation), exact likelihood on
continuous data. Installed with `pip install examples/harness-example-plugin`, it appears in
`python -m harness list` and runs with `python -m harness run --model laplace`. Its one
hyperparameter is declared with the model (``--set laplace.min_scale=1e-3`` changes it).
"""

import torch

from harness import Capability, DataKind, Hyperparameters, LikelihoodKind, LogLikelihood, Model, ModelSpec, hookimpl


class IndependentLaplace(Model):
    def __init__(self, spec, hparams):
        self.spec = spec
        self.min_scale = float(hparams["min_scale"])  # the core passes every declared key, resolved
        # Fitted state lives in tensor attributes from the start, so the default export_state() /
        # restore_state() carry it into a fresh instance (the kit's state_round_trip check).
        self.loc = torch.zeros(spec.dim, dtype=torch.float64)
        self.scale = torch.ones(spec.dim, dtype=torch.float64)

    def fit(self, train, val, ctx):
        ctx.set_total_steps(1)  # one closed-form step
        x = train.x.reshape(len(train), -1).double()
        self.loc = x.quantile(0.5, dim=0)
        self.scale = (x - self.loc).abs().mean(0).clamp(min=self.min_scale)
        ctx.step(len(train))

    def log_likelihood(self, x, labels=None):
        x = x.reshape(x.shape[0], -1).double().cpu()
        lp = -(x - self.loc).abs() / self.scale - torch.log(2 * self.scale)
        return LogLikelihood(lp.sum(1).float(), LikelihoodKind.EXACT)

    def sample(self, n, generator, labels=None):
        u = torch.rand(n, self.loc.shape[0], generator=generator, dtype=torch.float64) - 0.5
        x = self.loc - self.scale * torch.sign(u) * torch.log1p(-2 * u.abs())
        return x.float().reshape(n, *self.spec.event_shape)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="laplace",
        family="example",
        factory=IndependentLaplace,
        data_kinds=[DataKind.CONTINUOUS],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=Hyperparameters(
            defaults={"min_scale": 1e-6},
            docs={"min_scale": "lower bound on each fitted scale (keeps constant dimensions finite)"},
        ),
        default_datasets=["8gaussians", "checkerboard"],
        description="Independent Laplace marginals (third-party example plugin).",
    ))
