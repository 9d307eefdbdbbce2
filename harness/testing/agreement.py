"""What the model checks accept: samples of the data's kind, two results that are "the same", and the
likelihood kinds a declaration allows."""

from __future__ import annotations

from typing import Optional

import torch

from harness.contracts import DataKind, LikelihoodKind

DISTURBING_SEED = 918273645  # the global random state is moved here between draws that must agree
SAME_RTOL, SAME_ATOL = 1e-4, 1e-5  # "the same" for continuous values
SAME_SHARE = 0.99  # "the same" for discrete samples: this share of entries equal
STRENGTH = {LikelihoodKind.EXACT: 2, LikelihoodKind.BOUND: 1, LikelihoodKind.ESTIMATE: 0}


def allowed_kinds(declared: LikelihoodKind, data_kind: DataKind) -> set:
    """The kinds a model declaring ``declared`` may report: it or a stronger one, and a bound where an
    ``exact`` model scores discrete or binary data through a continuous density (dequantisation)."""
    kinds = {k for k in LikelihoodKind if STRENGTH[k] >= STRENGTH[declared]}
    if declared is LikelihoodKind.EXACT and data_kind is not DataKind.CONTINUOUS:
        kinds.add(LikelihoodKind.BOUND)
    return kinds


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def sample_problem(s, n: int, dspec) -> Optional[str]:
    """What is wrong with ``s`` as ``n`` samples of ``dspec``'s data, or None."""
    if not isinstance(s, torch.Tensor):
        return f"sample() returned {type(s).__name__}, not a torch.Tensor"
    want = (n, *dspec.event_shape)
    if tuple(s.shape) != want:
        return f"shape {tuple(s.shape)}, expected {want}"
    if s.dtype != torch.float32:
        return f"dtype {s.dtype}, expected torch.float32 (the data's dtype)"
    s = s.detach().cpu()
    if not torch.isfinite(s).all():
        return f"{int((~torch.isfinite(s)).sum())} non-finite values"
    if dspec.kind is DataKind.CONTINUOUS:
        return None
    levels = int(dspec.levels)
    bad = (s != s.round()) | (s < 0) | (s > levels - 1)
    if bad.any():
        wrong = s[bad].unique()[:5].tolist()
        allowed = "0 or 1" if dspec.kind is DataKind.BINARY else f"integer levels 0..{levels - 1}"
        return f"{int(bad.sum())} values are not {allowed} (e.g. {', '.join(f'{v:g}' for v in wrong)})"
    return None


def sameness(a: torch.Tensor, b: torch.Tensor, discrete: bool) -> tuple:
    """(whether ``a`` and ``b`` are the same, how they differ in words)."""
    a, b = a.detach().cpu().double(), b.detach().cpu().double()
    if a.shape != b.shape:
        return False, f"shapes {tuple(a.shape)} and {tuple(b.shape)}"
    if discrete:
        share = float((a == b).double().mean()) if a.numel() else 1.0
        return share >= SAME_SHARE, f"{100 * (1 - share):.1f}% of entries differ"
    close = torch.allclose(a, b, rtol=SAME_RTOL, atol=SAME_ATOL, equal_nan=True)
    diff = float((a - b).abs().nan_to_num(0.0).max()) if a.numel() else 0.0
    return close, f"max |difference| {diff:.3g}"


def disturb_global_rng() -> None:
    """Move the global random state somewhere unrelated (a model must not depend on it when given a
    generator)."""
    torch.manual_seed(DISTURBING_SEED)
    torch.rand(17)
