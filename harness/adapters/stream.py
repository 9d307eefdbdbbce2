"""Samples streamed from a function of the user's code (``evaluate-samples --generator py:MODULE:FUNCTION``):
batch by batch into the sample metrics, so a large set never has to be written to disk first.

The function is called as a factory is (:mod:`harness.adapters.factory`: with the dataset's spec if its
first parameter has no default) and returns an iterable of batches, typically a generator function that
``yield``\\ s arrays or tensors (B, *event_shape) (or flat rows (B, D), or channel-last images) in the
dataset's data space. Every batch is checked as a samples file is (:func:`harness.external.check_array`).

:class:`StreamedSamples` hands the samples out as :class:`harness.external.ExternalSamples` hands out a
file's: a draw (one generator object, also across a metric's chunks) starts at the first sample, so the
function is called again for each draw and must yield the same samples each time for the metrics to see
one set (as they see one file). A draw that needs more samples than the function yields fails and says
how many it needed. :class:`GeneratorPlugin` registers the stream under the user's label (family
``external``); it is picklable (a worker imports the function from its reference).
"""

from __future__ import annotations

import hashlib
from typing import Optional

import numpy as np
import torch

from harness import hookimpl
from harness.adapters.factory import FactoryReference
from harness.adapters.reference import Reference
from harness.contracts import Capability, DataKind, Model, ModelSpec
from harness.errors import UserError
from harness.external import FAMILY, NotEnoughSamples, check_array


class StreamedSamples(Model):
    """Hands out the function's samples in order, one draw at a time (see the module doc)."""

    def __init__(self, open_stream, spec, source: str):
        self.open_stream = open_stream
        self.spec = spec
        self.source = source
        self._draw: Optional[torch.Generator] = None
        self._batches = None
        self._pending: Optional[torch.Tensor] = None  # samples of the last batch not handed out yet
        self._used = 0  # samples handed out in this draw
        self._yielded = 0  # samples the function yielded in this draw

    def fit(self, train, val, ctx) -> None:
        raise RuntimeError("streamed samples are not fitted")

    def sample(self, n: int, generator: torch.Generator, labels=None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("streamed samples are unconditional: they cannot be drawn for given labels")
        if generator is not self._draw:  # a new draw starts at the first sample
            self._draw, self._batches, self._pending = generator, iter(self.open_stream()), None
            self._used = self._yielded = 0
        parts, missing = [], int(n)
        while missing > 0:
            if self._pending is None or len(self._pending) == 0:
                self._pending = self._next_batch(self._used + int(n))
            take = self._pending[:missing]
            parts.append(take)
            self._pending = self._pending[len(take):]
            missing -= len(take)
        self._used += int(n)
        return torch.cat(parts) if parts else torch.empty(0, *self.spec.event_shape)

    def _next_batch(self, needed: int) -> torch.Tensor:
        try:
            batch = next(self._batches)
        except StopIteration:
            raise NotEnoughSamples(f"{self.source} yielded {self._yielded} samples and this metric draws more (at "
                                   f"least {needed}): yield more, or use a profile that draws fewer (see `python -m "
                                   "harness evaluate-samples --help`)") from None
        batch = checked_batch(batch, self.spec, self.source)
        self._yielded += len(batch)
        return batch

    def export_state(self) -> dict:
        return {}


def checked_batch(batch, spec, source: str) -> torch.Tensor:
    """One yielded batch as float32 (B, *event_shape), checked as a samples file is."""
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().cpu().numpy()
    if not isinstance(batch, np.ndarray):
        raise UserError(f"{source} yielded a {type(batch).__name__}; yield batches as numpy arrays or tensors "
                        f"(B, {', '.join(map(str, spec.event_shape))})")
    if batch.ndim >= 1 and len(batch) == 1:  # a batch of one: checked beside itself (a check wants two)
        return check_array(np.concatenate([batch, batch]), spec, source)[:1]
    return check_array(batch, spec, source)


class GeneratorPlugin(FactoryReference):
    """Registers the stream of one function as model ``label`` (family ``external``)."""

    def __init__(self, reference: Reference, label: str, kind: DataKind):
        super().__init__(reference)
        self.label, self.kind = label, DataKind(kind)

    def stream(self, spec):
        """A fresh iterator over the function's batches for ``spec``."""
        batches = self.factory.call(spec, {})
        try:
            return iter(batches)
        except TypeError:
            raise UserError(f"{self.reference.text} returned a {type(batches).__name__}, not an iterable of batches "
                            "(write it as a generator function: yield one batch at a time)") from None

    def build(self, dataset_spec, hparams) -> StreamedSamples:
        return StreamedSamples(lambda: self.stream(dataset_spec), dataset_spec, self.source)

    def first_batch(self, spec) -> torch.Tensor:
        """The first batch, checked (the plan-time check): :class:`UserError` for one that does not fit."""
        try:
            batches = self.stream(spec)
            batch = next(batches)
        except StopIteration:
            raise UserError(f"{self.reference.text} yielded no samples") from None
        except UserError:
            raise
        except Exception as exc:
            raise UserError(f"{self.reference.text} raised {type(exc).__name__}: {exc}") from None
        return checked_batch(batch, spec, f"{self.reference.text}, first batch")

    def digest(self, spec) -> str:
        """What identifies these samples in the job's key: the reference, its version and the first batch."""
        h = hashlib.sha256(self.source.encode())
        h.update(self.first_batch(spec).numpy().tobytes())
        return h.hexdigest()

    @hookimpl
    def harness_register_models(self, register):
        register(ModelSpec(name=self.label, family=FAMILY, factory=self.build, data_kinds=[self.kind],
                           capabilities=[Capability.SAMPLE],
                           description=f"samples streamed from {self.source} (another generator)"))
