"""FLOP counting: torch's FLOP formulas per operation, plus matrix-vector products and triangular solves."""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

FLOP_COUNTER_NOTE = ("the FLOP formulas of torch.utils.flop_counter (matrix products, convolutions, attention), plus "
                     "matrix-vector products and triangular solves; elementwise operations are not counted")


def _mv_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]


def _addmv_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0] * a_shape[1]  # like torch's addmm formula, the added vector is not counted


def _dot_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    return 2 * a_shape[0]


def _solve_triangular_flop(a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """n^2 FLOPs per right-hand side of length n (substitution), for every batch element."""
    return int(a_shape[-1] * math.prod(out_shape))


def _extra_flop_formulas() -> dict:
    """Matrix-vector products and triangular solves, which torch's counter leaves out."""
    aten = torch.ops.aten
    return {aten.mv: _mv_flop, aten.addmv: _addmv_flop, aten.dot: _dot_flop, aten.vdot: _dot_flop,
            aten.linalg_solve_triangular: _solve_triangular_flop}


def _flop_formulas() -> dict:
    """torch's FLOP formulas (those FlopCounterMode uses) plus :func:`_extra_flop_formulas`, keyed by op."""
    from torch.utils.flop_counter import flop_registry, shape_wrapper

    return {**flop_registry, **{op: shape_wrapper(f) for op, f in _extra_flop_formulas().items()}}


class FlopCount(TorchDispatchMode):
    """Counts FLOPs with the formulas of ``torch.utils.flop_counter.FlopCounterMode``, without its
    per-module bookkeeping: the same totals (tests check this) at a fraction of its per-operation
    cost, which matters for samplers that run thousands of small operations (Gibbs sweeps,
    pixel-by-pixel decoding)."""

    def __init__(self):
        super().__init__()
        self.formulas = _flop_formulas()
        self.by_op: dict = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = self.formulas.get(func._overloadpacket)
        if formula is not None:
            name = str(func._overloadpacket)
            self.by_op[name] = self.by_op.get(name, 0) + int(formula(*args, **kwargs, out_val=out))
        return out

    @property
    def total(self) -> int:
        return sum(self.by_op.values())


def count_flops(fn: Callable[[], object]) -> tuple:
    """(total FLOPs, {op name: FLOPs}) of one call of ``fn``: torch's FLOP formulas (matrix products,
    convolutions, attention) plus matrix-vector products and triangular solves."""
    counter = FlopCount()
    with counter:
        fn()
    return counter.total, dict(counter.by_op)

