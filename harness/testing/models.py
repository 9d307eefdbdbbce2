"""Conformance checks of a model: on a small fitted instance per data kind it declares.

For each data kind in ``ModelSpec.data_kinds`` the model is fitted, as the runner would fit it
(``torch.manual_seed(seed)``, the factory with the profile's hyperparameters for that dataset and any
overrides, ``fit`` with a ``FitContext`` of that seed), on the first of the kit's tiny datasets of
that kind it accepts (:mod:`harness.testing.tiny`), then checked:

``fit``               the hyperparameters resolve and ``fit`` returns.
``samples``           ``sample(n, generator)`` gives a tensor of shape (n, *event_shape), dtype float32,
                      with values of the data kind: finite (continuous), integer levels 0..K-1
                      (discrete), 0 or 1 (binary); for a conditional model with and without labels.
``seed_reproducible`` the same generator seed gives the same samples, whatever the global random state
                      did in between; a second instance fitted with the same seed gives the same
                      samples and the same log-likelihoods.
``seed_varies``       two different generator seeds give different samples.
``log_likelihood``    a ``LogLikelihood`` of shape (N,), finite, of an allowed kind: the declared one or a
                      stronger one (exact > bound > estimate; a stronger claim gets the stronger check
                      below), or a bound where a model declaring ``exact`` scores discrete or binary data
                      through a continuous density (the dequantisation bound).
``normalised``        the density integrates to 1, judged by the likelihood kind reported
                      (:mod:`harness.testing.normalised`); for conditional models for p(x) and for
                      p(x | y) of each class.
``labels``            for conditional models: samples drawn for class 0 lie nearer (mean to mean) to the
                      training data of class 0 than of class 1, and vice versa; with a likelihood, the
                      class with the higher log p(x | y) is the true class for at least
                      :data:`MIN_LABEL_ACCURACY` of the test examples (the kit's classes are far apart).
``state_round_trip``  ``export_state()`` gives ``{name: tensor}``; a fresh instance from the factory (built
                      under another global seed) given ``restore_state`` of a copy samples the same for
                      the same generator and gives the same log-likelihoods.
"""

from __future__ import annotations

import math
import time
from typing import Mapping, Optional

import torch

from harness.contracts import Capability, DataKind, FitContext, LogLikelihood
from harness.testing.agreement import allowed_kinds, disturb_global_rng, generator, sample_problem, sameness
from harness.testing.normalised import check_normalised
from harness.testing.results import FAILED, PASSED, SKIPPED, CheckFailed, CheckResult, NotApplicable, run_check
from harness.testing.tiny import tiny_datasets

CHECKS = ("fit", "samples", "seed_reproducible", "seed_varies", "log_likelihood", "normalised", "labels",
          "state_round_trip")
KIND_ORDER = (DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY)

SAMPLES = 512  # samples per draw in the sample and seed checks
LABEL_SAMPLES = 500  # samples per class in the labels check
LL_EXAMPLES = 200  # test examples scored in the likelihood checks
SEED_A, SEED_B = 101, 202  # generator seeds of the draws compared
MIN_LABEL_ACCURACY = 0.75


class ModelKindChecks:
    """The checks of one model on one data kind (see the module doc)."""

    def __init__(self, spec, kind: DataKind, profile: str = "smoke", overrides: Mapping = None, seed: int = 0,
                 device="cpu", datasets=(), data_root=None):
        self.spec = spec
        self.kind = DataKind(kind)
        self.profile = profile
        self.overrides = dict(overrides or {})
        self.seed = seed
        self.device = torch.device(device)
        self.candidates = [d for d in datasets if d.kind is self.kind] + tiny_datasets(self.kind)
        self.subject = f"model:{spec.name}"
        self.data_root = data_root
        self.model = None
        self.dspec = self.splits = self.hparams = None

    # ------------------------------------------------------------------ helpers
    @property
    def samples(self) -> bool:
        return Capability.SAMPLE in self.spec.capabilities

    @property
    def likelihood(self) -> bool:
        return self.spec.likelihood is not None

    @property
    def conditional(self) -> bool:
        return Capability.CONDITIONAL in self.spec.capabilities and self.dspec.num_classes >= 2

    @property
    def discrete(self) -> bool:
        return self.kind is not DataKind.CONTINUOUS

    def labels(self, n: int, value: Optional[int] = None) -> torch.Tensor:
        if value is not None:
            return torch.full((n,), int(value), dtype=torch.long)
        return torch.arange(n, dtype=torch.long) % self.dspec.num_classes

    def build(self, seed: int):
        torch.manual_seed(seed)
        model = self.spec.factory(self.dspec, dict(self.hparams))
        model.to(self.device)
        return model

    def fit_instance(self):
        model = self.build(self.seed)
        ctx = FitContext(self.device, self.seed)
        model.fit(self.splits.train, self.splits.val, ctx)
        ctx.finish()
        return model

    def draw(self, model, n: int, seed: int, labels=None) -> torch.Tensor:
        with torch.no_grad():
            s = model.sample(n, generator(seed), None if labels is None else labels.to(model.device))
        return s.detach().cpu() if isinstance(s, torch.Tensor) else s

    def score(self, model, x: torch.Tensor, labels=None) -> LogLikelihood:
        with torch.no_grad():
            ll = model.log_likelihood(x.to(model.device), None if labels is None else labels.to(model.device))
        if not isinstance(ll, LogLikelihood):
            raise CheckFailed(f"log_likelihood() returned {type(ll).__name__}, not a harness.LogLikelihood")
        return ll

    def test_examples(self):
        test = self.splits.test
        n = min(LL_EXAMPLES, len(test))
        return test.x[:n], (test.y[:n] if test.y is not None else None)

    def result(self, name: str, status: str, message: str, seconds: float = 0.0) -> CheckResult:
        return CheckResult(self.subject, name, status, message, variant=self.kind.value, seconds=seconds)

    # ------------------------------------------------------------------ running
    def run(self) -> list:
        chosen, reasons = None, []
        for d in self.candidates:
            reason = self.spec.incompatibility(d)
            if reason is None:
                chosen = d
                break
            reasons.append(f"{d.name} {'x'.join(map(str, d.event_shape))}: {reason}")
        if chosen is None:
            why = (f"{self.spec.name} declares {self.kind.value} data but accepts none of the kit's "
                   f"{self.kind.value} datasets ({'; '.join(reasons)}); pass one it accepts (datasets=)")
            return [self.result(name, SKIPPED, why) for name in CHECKS]
        self.dspec = chosen
        self.splits = chosen.load(self.data_root)
        out = [self._fit()]
        if out[0].status != PASSED:
            return out + [self.result(name, SKIPPED, "fit failed") for name in CHECKS[1:]]
        for name in CHECKS[1:]:
            out.append(self._run(name, getattr(self, f"check_{name}")))
        return out

    def _run(self, name, check) -> CheckResult:
        return self.result(name, *run_check(check))

    def _fit(self) -> CheckResult:
        start = time.perf_counter()
        try:
            overrides = [(k, v, f"override {self.spec.name}.{k}={v!r}") for k, v in self.overrides.items()]
            self.hparams = self.spec.resolve_hparams(self.profile, self.dspec, overrides)
            self.model = self.fit_instance()
        except Exception as exc:
            return self.result("fit", FAILED, f"on {self.dspec.name}: raised {type(exc).__name__}: {exc}",
                               time.perf_counter() - start)
        seconds = time.perf_counter() - start
        shape = "x".join(map(str, self.dspec.event_shape))
        given = "".join(f", {k}={v!r}" for k, v in self.overrides.items())
        return self.result("fit", PASSED, f"fitted on {self.dspec.name} (shape {shape}, {len(self.splits.train)} "
                                          f"training examples; profile {self.profile}{given}) in {seconds:.2f} s",
                           seconds)

    # ------------------------------------------------------------------ the checks
    def check_samples(self) -> str:
        if not self.samples:
            raise NotApplicable(f"{self.spec.name} does not declare the sample capability")
        cases = [("without labels", None)]
        if self.conditional:
            cases.append(("with labels", self.labels(SAMPLES)))
        problems = []
        for what, labels in cases:
            problem = sample_problem(self.draw(self.model, SAMPLES, SEED_A, labels), SAMPLES, self.dspec)
            if problem:
                problems.append(f"{what}: {problem}")
        if problems:
            raise CheckFailed(f"sample({SAMPLES}) on {self.dspec.name}: " + "; ".join(problems))
        return f"shape, dtype and {self.kind.value} values as declared ({' and '.join(c for c, _ in cases)})"

    def check_seed_reproducible(self) -> str:
        labels = self.labels(SAMPLES) if self.conditional else None
        checked = []
        if self.samples:
            first = self.draw(self.model, SAMPLES, SEED_A, labels)
            disturb_global_rng()
            again = self.draw(self.model, SAMPLES, SEED_A, labels)
            same, how = sameness(first, again, self.discrete)
            if not same:
                raise CheckFailed(f"two draws with generators of the same seed differ ({how}): sample() must take "
                                  "its randomness from the generator it is given, not the global random state")
            checked.append("the same generator seed gives the same samples")
        twin = self.fit_instance()
        disturb_global_rng()
        if self.samples:
            same, how = sameness(self.draw(self.model, SAMPLES, SEED_A, labels),
                                 self.draw(twin, SAMPLES, SEED_A, labels), self.discrete)
            if not same:
                raise CheckFailed(f"two instances fitted with seed {self.seed} sample differently ({how}): fit() must "
                                  "take its randomness from ctx.generator (or the global state the runner seeds "
                                  "before building the model)")
        if self.likelihood:
            x, _ = self.test_examples()
            a = self.score(self.model, x).values
            disturb_global_rng()
            b = self.score(twin, x).values
            same, how = sameness(a, b, False)
            if not same:
                raise CheckFailed(f"two instances fitted with seed {self.seed} give different log-likelihoods "
                                  f"({how}): fit() and log_likelihood() must not depend on unseeded randomness")
        checked.append(f"two instances fitted with seed {self.seed} agree")
        return "; ".join(checked)

    def check_seed_varies(self) -> str:
        if not self.samples:
            raise NotApplicable(f"{self.spec.name} does not declare the sample capability")
        labels = self.labels(SAMPLES) if self.conditional else None
        a = self.draw(self.model, SAMPLES, SEED_A, labels)
        b = self.draw(self.model, SAMPLES, SEED_B, labels)
        if a.shape == b.shape and torch.equal(a, b):
            raise CheckFailed(f"generators seeded {SEED_A} and {SEED_B} give identical samples: sample() ignores "
                              "its generator (or the fitted model puts all its mass on one point)")
        return f"generators seeded {SEED_A} and {SEED_B} give different samples"

    def check_log_likelihood(self) -> str:
        if not self.likelihood:
            raise NotApplicable(f"{self.spec.name} declares no likelihood")
        x, y = self.test_examples()
        cases = [("log p(x)", None)]
        if self.conditional and y is not None:
            cases.append(("log p(x | y)", y))
        allowed = allowed_kinds(self.spec.likelihood, self.kind)
        kinds = []
        for what, labels in cases:
            ll = self.score(self.model, x, labels)
            values = ll.values
            if not isinstance(values, torch.Tensor) or tuple(values.shape) != (len(x),):
                shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise CheckFailed(f"{what}: values of shape {shape}, expected ({len(x)},)")
            bad = int((~torch.isfinite(values.detach().cpu())).sum())
            if bad:
                raise CheckFailed(f"{what}: {bad} of {len(x)} values are not finite on test examples of "
                                  f"{self.dspec.name}")
            if ll.kind not in allowed:
                raise CheckFailed(f"{what}: kind {ll.kind.value}, but {self.spec.name} declares "
                                  f"{self.spec.likelihood.value} (allowed on {self.kind.value} data: "
                                  f"{', '.join(sorted(k.value for k in allowed))})")
            if not (math.isfinite(ll.shared_stderr) and ll.shared_stderr >= 0):
                raise CheckFailed(f"{what}: shared_stderr {ll.shared_stderr!r} is not a finite number >= 0")
            kinds.append(f"{what} {ll.kind.value}")
        return f"shape ({len(x)},), finite; " + ", ".join(kinds) + f" (declared {self.spec.likelihood.value})"

    def check_normalised(self) -> str:
        return check_normalised(self)

    def check_labels(self) -> str:
        if Capability.CONDITIONAL not in self.spec.capabilities:
            raise NotApplicable(f"{self.spec.name} is not conditional")
        train = self.splits.train
        if not self.conditional or train.y is None:
            raise NotApplicable(f"{self.dspec.name} has fewer than two classes")
        flat = train.x.reshape(len(train), -1).double()
        centres = [flat[train.y == c].mean(0) for c in (0, 1)]
        lines = []
        if self.samples:
            for c, seed in ((0, SEED_A), (1, SEED_B)):
                s = self.draw(self.model, LABEL_SAMPLES, seed, self.labels(LABEL_SAMPLES, c))
                mean = s.reshape(len(s), -1).double().mean(0)
                own, other = float((mean - centres[c]).norm()), float((mean - centres[1 - c]).norm())
                if not own < other:
                    raise CheckFailed(f"samples drawn for class {c} have their mean {own:.3g} from class {c}'s data and "
                                      f"{other:.3g} from class {1 - c}'s: sample() does not follow its labels")
            lines.append("samples follow their labels")
        if self.likelihood:
            test = self.splits.test
            keep = (test.y == 0) | (test.y == 1)
            x, y = test.x[keep][:LL_EXAMPLES], test.y[keep][:LL_EXAMPLES]
            scores = torch.stack([self.score(self.model, x, self.labels(len(x), c)).values.detach().cpu().double()
                                  for c in (0, 1)], 1)
            right = scores.gather(1, y[:, None]).squeeze(1) > scores.gather(1, (1 - y)[:, None]).squeeze(1)
            accuracy = float(right.double().mean())
            if accuracy < MIN_LABEL_ACCURACY:
                raise CheckFailed(f"log p(x | y) is higher for the true class on {accuracy:.0%} of {len(x)} test "
                                  f"examples, expected at least {MIN_LABEL_ACCURACY:.0%} (a tie counts as wrong): "
                                  "log_likelihood() does not use its labels")
            lines.append(f"log p(x | y) prefers the true class on {accuracy:.0%} of test examples")
        return "; ".join(lines)

    def check_state_round_trip(self) -> str:
        state = self.model.export_state()
        if not isinstance(state, Mapping):
            raise CheckFailed(f"export_state() returned {type(state).__name__}, expected a dict of tensors")
        bad = [f"{k!r}: {type(v).__name__}" for k, v in state.items()
               if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckFailed(f"export_state() must give {{name: tensor}}; not tensors: {', '.join(bad[:5])}")
        copy = {k: v.detach().cpu().clone() for k, v in state.items()}
        fresh = self.build(self.seed + 1)
        try:
            fresh.restore_state(copy)
        except Exception as exc:
            raise CheckFailed(f"restore_state() into a fresh instance raised {type(exc).__name__}: {exc}") from None
        checked, note = [], ""
        if self.samples:
            labels = self.labels(SAMPLES) if self.conditional else None
            restored = self._restored(lambda: self.draw(fresh, SAMPLES, SEED_A, labels), "sample")
            original = self.draw(self.model, SAMPLES, SEED_A, labels)
            if sameness(original, self.draw(self.model, SAMPLES, SEED_A, labels), self.discrete)[0]:
                same, how = sameness(original, restored, self.discrete)
                if not same:
                    raise CheckFailed(f"the restored instance samples differently from the fitted one ({how}); "
                                      "export_state() misses fitted state")
                checked.append("samples")
            else:
                note = "samples not compared: the fitted model's own are not reproducible (see seed_reproducible)"
        if self.likelihood:
            x, _ = self.test_examples()
            restored = self._restored(lambda: self.score(fresh, x).values, "score")
            same, how = sameness(self.score(self.model, x).values, restored, False)
            if not same:
                raise CheckFailed(f"the restored instance gives different log-likelihoods ({how}); export_state() "
                                  "misses fitted state")
            checked.append("log-likelihoods")
        text = f"{len(copy)} tensors; the restored instance gives the same {' and '.join(checked) or 'state'}"
        return f"{text}; {note}" if note else text

    @staticmethod
    def _restored(call, what: str):
        try:
            return call()
        except CheckFailed:
            raise
        except Exception as exc:
            raise CheckFailed(f"the restored instance cannot {what}: {type(exc).__name__}: {exc} (export_state() "
                              "misses fitted state)") from None
