"""What a model's fit receives: the fit context (device, seed, deadline, progress) and per-example
log-likelihoods with their kind."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from harness.contracts.kinds import LikelihoodKind


@dataclass
class LogLikelihood:
    """Per-example log-likelihoods in nats, with their kind.

    ``values``: tensor (N,). ``kind``: exact, bound or estimate. ``shared_stderr``: an uncertainty
    common to every example (e.g. the standard error of an AIS estimate of log Z), added in
    quadrature to the across-example standard error of the mean. ``details``: free-form, what the
    evaluation found (e.g. the number of function evaluations, the estimate of log Z). ``protocol``: the
    settings of the evaluation that change what the number means (importance samples, AIS temperatures
    and chains, the ODE solver and its tolerances, Hutchinson probes, dequantisation), setting name ->
    a JSON scalar; the likelihood metrics record them in each measurement's protocol, and two numbers
    whose protocols differ are not compared.
    """

    values: torch.Tensor
    kind: LikelihoodKind
    shared_stderr: float = 0.0
    details: dict = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)

    def __post_init__(self):
        self.kind = LikelihoodKind(self.kind)


class FitContext:
    """What the runner hands to ``Model.fit``: device, seed, deadline and progress reporting.

    Models call :meth:`set_total_steps` once they know how many steps their training will take
    (pre-training included), then :meth:`step` once per optimisation step with the number of examples
    it used; these drive the progress bar and the training-throughput figures. :meth:`should_stop` is
    True once the job's time budget is spent; a model should then stop training early.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        seed: int = 0,
        total_steps: Optional[int] = None,
        deadline: Optional[float] = None,
        progress: Optional[Callable[[int, dict], None]] = None,
    ):
        self.device = torch.device(device)
        self.seed = seed
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.total_steps = total_steps
        self.deadline = deadline
        self._progress = progress
        self.steps = 0
        self.examples = 0
        self.started = time.perf_counter()
        self.ended: Optional[float] = None
        self.scalars: dict = {}

    def set_total_steps(self, total: Optional[int]) -> None:
        """How many :meth:`step` calls the model's training will make (None: unknown)."""
        self.total_steps = None if total is None else int(total)

    def step(self, examples: int, **scalars: float) -> None:
        self.steps += 1
        self.examples += int(examples)
        if scalars:
            self.scalars = {k: float(v) for k, v in scalars.items()}
        if self._progress is not None:
            self._progress(self.steps, self.scalars)

    def should_stop(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def finish(self) -> None:
        """Stop the clock (the runner calls this when ``fit`` returns)."""
        if self.ended is None:
            self.ended = time.perf_counter()

    @property
    def seconds(self) -> float:
        """Seconds spent in ``fit``: up to :meth:`finish` once it was called, else up to now."""
        return (self.ended if self.ended is not None else time.perf_counter()) - self.started
