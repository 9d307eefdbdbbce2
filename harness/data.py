"""Shared data helpers: provenance hashes, uniform dequantisation and bits per dimension.

Semantics (docs/architecture.md, README): a continuous density p fitted to dequantised data y = (x + u) / K,
u ~ U[0,1)^D, gives for the discrete data
    log P(x) >= E_u[ log p((x + u) / K) ] - D ln K,
so the value returned by :func:`dequantized_log_likelihood` is a *lower bound* on the discrete
log-likelihood (its NLL an upper bound), and is labelled ``bound``.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from harness.contracts import Split, Splits

LN2 = math.log(2.0)
DATA_ROOT_ENV = "HARNESS_DATA_ROOT"
DEFAULT_DATA_ROOT = "datasets"


def resolve_data_root(explicit=None) -> Path:
    """Where user-supplied data lives: ``explicit`` (``--data-root``) if given, else
    ``$HARNESS_DATA_ROOT``, else ``./datasets``."""
    return Path(explicit or os.environ.get(DATA_ROOT_ENV) or DEFAULT_DATA_ROOT)


def provenance_hash(splits: Splits, extra: str = "") -> str:
    """sha256 over the exact bytes, dtypes and shapes of every split (x and y), plus ``extra``."""
    h = hashlib.sha256()
    h.update(extra.encode())
    for name in ("train", "val", "test"):
        split: Split = getattr(splits, name)
        for arr in (split.x, split.y):
            if arr is None:
                h.update(b"none")
                continue
            a = np.ascontiguousarray(arr.detach().cpu().numpy())
            h.update(f"{name}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def dequantize(x: torch.Tensor, levels: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Map integer levels 0..K-1 to [0, 1) with uniform noise: (x + u) / K."""
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    return (x.float() + u) / levels


def quantize(y: torch.Tensor, levels: int) -> torch.Tensor:
    """Inverse of :func:`dequantize`: continuous values in [0, 1) back to levels 0..K-1."""
    return torch.clamp(torch.floor(y * levels), 0, levels - 1)


def dequantized_log_likelihood(
    log_density: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    levels: int,
    generator: Optional[torch.Generator] = None,
    draws: int = 1,
) -> torch.Tensor:
    """Lower bound on log P(x) for discrete x from a density on [0,1)^D, averaged over ``draws``
    dequantisation draws: mean_u log p((x+u)/K) - D ln K (per example, nats)."""
    dim = math.prod(x.shape[1:])
    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for _ in range(draws):
        total += log_density(dequantize(x, levels, generator)).detach().double().cpu()
    return (total / draws - dim * math.log(levels)).float()


def bits_per_dim(nll_nats: float, dim: int) -> float:
    """Negative log-likelihood in nats per example -> bits per dimension."""
    return nll_nats / (dim * LN2)


class ContinuousView:
    """How a continuous-density model sees a dataset.

    Continuous data pass through unchanged and likelihoods are exact. Discrete and binary data are
    dequantised to [0, 1)^D (a fresh draw every call of :meth:`model_input`), samples are quantised
    back to levels, and likelihoods are the dequantisation lower bound, labelled ``bound``, whose
    protocol names the dequantisation and its draws.
    """

    def __init__(self, spec):
        from harness.contracts import DataKind

        self.spec = spec
        self.levels = None if spec.kind is DataKind.CONTINUOUS else int(spec.levels)

    @property
    def dequantized(self) -> bool:
        return self.levels is not None

    def model_input(self, x: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return x if self.levels is None else dequantize(x, self.levels, generator)

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        return y if self.levels is None else quantize(y, self.levels)

    def log_likelihood(self, log_density, x: torch.Tensor, generator: Optional[torch.Generator] = None,
                       draws: int = 1):
        """Wrap ``log_density`` (model space) into a :class:`harness.LogLikelihood` for data ``x``."""
        from harness.contracts import LikelihoodKind, LogLikelihood

        if self.levels is None:
            return LogLikelihood(log_density(x).detach().float().cpu(), LikelihoodKind.EXACT)
        values = dequantized_log_likelihood(log_density, x, self.levels, generator, draws=draws)
        return LogLikelihood(values, LikelihoodKind.BOUND,
                             details={"dequantized": True, "levels": self.levels, "draws": draws},
                             protocol={"dequantisation": "uniform", "dequantisation_draws": int(draws)})
