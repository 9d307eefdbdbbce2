"""Which test examples every metric evaluates on: a fixed permutation, the same for every model and seed."""

from __future__ import annotations

from typing import Optional

import torch

# The fixed permutation behind every evaluation subset: independent of the job's seed, so every model
# in a table is measured on the same test examples.
EVALUATION_SUBSET_SEED = 0


def evaluation_indices(size: int, n: Optional[int]) -> torch.Tensor:
    """Indices of the evaluation subset of a split of ``size`` examples: all of them when ``n`` is None,
    0 or not smaller, else the first ``n`` of a fixed permutation, sorted. A smaller subset is always
    contained in a larger one."""
    if not n or n >= size:
        return torch.arange(size)
    perm = torch.randperm(size, generator=torch.Generator().manual_seed(EVALUATION_SUBSET_SEED))
    return perm[:n].sort().values


