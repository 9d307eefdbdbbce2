"""A plugin written against harness 0.1, as its author left it: a neural spline flow from zuko
(``zuko-nsf``) whose hyperparameters are 0.1's per-profile ``defaults=`` dictionaries, read with
``hparams.get(key, fallback)``. harness 0.2 maps them onto a Hyperparameters declaration and warns
once (harness.compat). Only what 0.1 offered is used: ModelSpec, Model, FitContext.step/should_stop,
LogLikelihood."""

from __future__ import annotations

import torch
import zuko

from harness import Capability, DataKind, LikelihoodKind, LogLikelihood, Model, ModelSpec, hookimpl


class ZukoNSF(Model):
    def __init__(self, spec, hparams):
        self.dim = int(torch.tensor(spec.event_shape).prod())
        self.shape = tuple(spec.event_shape)
        self.steps = hparams.get("steps", 200)
        self.lr = hparams.get("lr", 3e-3)
        self.flow = zuko.flows.NSF(features=self.dim, transforms=hparams.get("transforms", 2),
                                   hidden_features=[hparams.get("hidden", 32)] * 2)

    def fit(self, train, val, ctx):
        x = train.x.reshape(len(train), -1).to(self.device)
        opt = torch.optim.Adam(self.flow.parameters(), lr=self.lr)
        g = torch.Generator().manual_seed(ctx.seed)
        for _ in range(self.steps):
            if ctx.should_stop():
                break
            batch = x[torch.randint(len(x), (128,), generator=g)]
            loss = -self.flow().log_prob(batch).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            ctx.step(len(batch), loss=loss.item())

    def sample(self, n, generator, labels=None):
        z = torch.randn(n, self.dim, generator=generator).to(self.device)
        with torch.no_grad():
            return self.flow().transform.inv(z).reshape(n, *self.shape)

    def log_likelihood(self, x, labels=None):
        with torch.no_grad():
            return LogLikelihood(self.flow().log_prob(x.reshape(x.shape[0], -1)), LikelihoodKind.EXACT)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="zuko-nsf", family="zuko", factory=ZukoNSF, data_kinds=[DataKind.CONTINUOUS],
        capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT,
        defaults={"smoke": {"steps": 60, "hidden": 16}, "quick": {"steps": 600, "hidden": 32, "lr": 3e-3}},
        default_datasets=["8gaussians"],
        description="neural spline flow (zuko), written for harness 0.1",
    ))
