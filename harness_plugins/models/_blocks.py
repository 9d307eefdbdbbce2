"""Building blocks the model families share: seeded initialisation, MLPs, MADE, a best-on-validation loop.

Building blocks shared by the model families: constants, seeded initialisation, MLPs, the masked
autoencoder (MADE) behind the ``made`` model and the MAF flow, and the training loop that keeps the
parameters that did best on the validation split (flows, autoregressive models).

Model plugins import this module and the public ``harness`` API only.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from harness import FitContext
from harness.contracts import tagged

LOG_2PI = math.log(2 * math.pi)

# Every installed 2-D toy, selected by its tag (a default-datasets entry): the 2-D models run on all
# of them at the quick and full profiles.
TOYS = tagged("toy2d")


# ============================================================================ seeded initialisation


@contextlib.contextmanager
def seeded(seed: int):
    """Run the block with the CPU global RNG seeded to ``seed``; its state is restored afterwards, so
    building a network this way is reproducible and leaves the caller's random stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(int(seed))
        yield


def reset_parameters(module: nn.Module, seed: int, after: Optional[Callable[[nn.Module], None]] = None) -> None:
    """Re-draw the parameters of every submodule with PyTorch's default initialisers from ``seed``
    (in :meth:`nn.Module.modules` order, inside :func:`seeded`). ``after(m)``, when given, runs on
    each submodule right after its reset (e.g. a different weight initialisation)."""
    with seeded(seed):
        for m in module.modules():
            if m is not module and hasattr(m, "reset_parameters"):
                m.reset_parameters()
            if after is not None:
                after(m)


def zero_init(layer: nn.Module) -> nn.Module:
    """Zero the weight and bias of ``layer`` (a coupling or autoregressive layer then starts as the identity)."""
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


# ============================================================================ networks


def checked_state(owner: str, state, shapes: dict, dtype=None) -> dict:
    """``state`` with exactly the keys of ``shapes``, each tensor of its shape (cast to ``dtype`` if given);
    KeyError / ValueError naming what does not fit. For models whose fitted tensors are created in ``fit``,
    so a freshly built model has nothing to compare a restored state with."""
    if set(state) != set(shapes):
        raise KeyError(f"{owner} state is {', '.join(sorted(shapes))}; got {', '.join(sorted(state)) or 'nothing'}")
    out = {}
    for key, shape in shapes.items():
        tensor = state[key]
        if tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"{owner} {key} must have shape {tuple(shape)}, not {tuple(tensor.shape)}")
        out[key] = tensor if dtype is None else tensor.to(dtype)
    return out


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module] = nn.ReLU,
        zero_output: bool = False) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ... -> sizes[-1]`` with ``activation()`` between them
    (none after the last); ``zero_output`` zero-initialises the last layer."""
    layers: list = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(activation())
    if zero_output:
        zero_init(layers[-1])
    return nn.Sequential(*layers)


def halvings(height: int, width: int) -> tuple:
    """How many stride-2 halvings a conv stack applies to an image: while both sides are even and above
    4. Returns (halvings, smallest height, smallest width): 8 -> 4 (1), 28 -> 7 (2), 32 -> 4 (3)."""
    n = 0
    while height % 2 == 0 and width % 2 == 0 and min(height, width) > 4:
        height, width, n = height // 2, width // 2, n + 1
    return n, height, width


# ============================================================================ MADE


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 connectivity ``mask`` (out, in)."""

    def __init__(self, mask: torch.Tensor, bias: bool = True):
        super().__init__(mask.shape[1], mask.shape[0], bias=bias)
        self.register_buffer("mask", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


def spread_degrees(size: int, dim: int) -> torch.Tensor:
    """Hidden-unit degrees 1..D-1 spread evenly over ``size`` units (unit j gets 1 + floor(j (D-1) / size))."""
    if dim <= 1:
        return torch.ones(size, dtype=torch.long)
    return 1 + torch.div(torch.arange(size) * (dim - 1), size, rounding_mode="floor")


def cyclic_degrees(size: int, dim: int) -> torch.Tensor:
    """Hidden-unit degrees 1, 2, ..., D-1, 1, 2, ... in turn over ``size`` units."""
    return torch.arange(size) % max(dim - 1, 1) + 1


HIDDEN_DEGREES = {"spread": spread_degrees, "cyclic": cyclic_degrees}


class MADE(nn.Module):
    """Masked autoencoder (Germain et al. 2015): ``n_params`` outputs per dimension, where the outputs
    of dimension i depend only on the inputs of lower degree than ``degrees[i]``.

    ``degrees``: a permutation of 1..D giving each input (and its outputs) its place in the
    autoregressive order. Hidden layers have the widths in ``hidden``; a hidden unit of degree k sees
    inputs of degree <= k, an output of degree d sees hidden units of degree < d. ``hidden_degrees``
    assigns the hidden degrees (``"spread"`` or ``"cyclic"``, see :data:`HIDDEN_DEGREES`).
    ``direct`` adds a masked input-to-output connection. With ``features`` the output goes through
    that many masked units per dimension and a per-dimension linear map to the ``n_params`` values
    (keeps the last layer at D x features x P when P is large). ``zero_output`` starts the output
    layer at zero. Parameters are created in the order hidden layers, output, direct, projection.
    """

    def __init__(self, degrees: torch.Tensor, hidden: Sequence[int], n_params: int, hidden_degrees: str = "spread",
                 direct: bool = False, features: Optional[int] = None, zero_output: bool = False):
        super().__init__()
        degrees = torch.as_tensor(degrees)
        self.dim, self.n_params = len(degrees), n_params
        self.width = n_params if features is None else int(features)
        assign = HIDDEN_DEGREES[hidden_degrees]
        layers, prev = [], degrees
        for size in hidden:
            deg = assign(int(size), self.dim)
            layers += [MaskedLinear(deg[:, None] >= prev[None, :]), nn.ReLU()]
            prev = deg
        self.hidden = nn.Sequential(*layers)
        out_deg = degrees.repeat(self.width)  # output unit w * D + i belongs to dimension i
        self.out = MaskedLinear(out_deg[:, None] > prev[None, :])
        if zero_output:
            zero_init(self.out)
        self.direct = MaskedLinear(out_deg[:, None] > degrees[None, :], bias=False) if direct else None
        if features is not None:
            self.proj_weight = nn.Parameter(torch.randn(self.dim, self.width, n_params) / math.sqrt(self.width))
            self.proj_bias = nn.Parameter(torch.zeros(self.dim, n_params))
        else:
            self.proj_weight = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Parameters (N, D, P): ``out[:, i]`` are those of dimension i."""
        out = self.out(self.hidden(x))
        if self.direct is not None:
            out = out + self.direct(x)
        out = out.reshape(x.shape[0], self.width, self.dim).transpose(1, 2)  # (N, D, width)
        if self.proj_weight is not None:
            out = torch.einsum("ndw,dwp->ndp", out, self.proj_weight) + self.proj_bias
        return out

    def params_at(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Parameters (N, P) of dimension i alone: the hidden layers, then only the output rows of i."""
        rows = torch.arange(self.width, device=x.device) * self.dim + i
        out = F.linear(self.hidden(x), self.out.weight[rows] * self.out.mask[rows], self.out.bias[rows])
        if self.direct is not None:
            out = out + F.linear(x, self.direct.weight[rows] * self.direct.mask[rows])
        if self.proj_weight is not None:
            out = out @ self.proj_weight[i] + self.proj_bias[i]
        return out


# ============================================================================ training


@dataclass
class TrainingResult:
    """What :func:`train_keeping_best` did: ``steps`` optimisation steps; ``best_val``: the validation
    loss of the parameters it kept (None without validation data); ``restored``: they are an
    earlier checkpoint, not the last parameters."""

    steps: int
    best_val: Optional[float]
    restored: bool


def train_keeping_best(
    module: nn.Module,
    ctx: FitContext,
    *,
    steps: int,
    batch: Callable[[], torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor],
    params: Iterable[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    grad_clip: float,
    loss_scale: float = 1.0,
    val_every: int = 0,
    validate: Optional[Callable[[], float]] = None,
) -> TrainingResult:
    """Minimise ``loss(batch())`` for ``steps`` steps and keep the parameters that did best on validation.

    Each step draws ``batch()``, computes the loss (a scalar, e.g. mean NLL in nats), back-propagates
    ``loss / loss_scale``, clips the gradient norm of ``params`` to ``grad_clip``, then steps the
    optimizer and the scheduler and reports the step to ``ctx``. Training stops early when
    ``ctx.should_stop()`` or when the loss is not finite (diverged; nothing is updated from it).

    With ``validate`` (the validation loss of the current parameters, lower is better) the loss is
    checked every ``val_every`` steps and a copy of the best parameters is kept; at the end the final
    parameters are checked too (unless the last step was a check) and the best checkpoint replaces
    them if it is better (also when the final loss is NaN). The module is left in eval mode.
    """
    params = list(params)
    best_val, best_state, last_val = math.inf, None, None
    done = 0
    module.train()
    for step in range(steps):
        if ctx.should_stop():
            break
        x = batch()
        value = loss(x)
        last_val = None  # the parameters are about to change
        if not torch.isfinite(value):
            break  # diverged: fall back to the best validated parameters below
        optimizer.zero_grad(set_to_none=True)
        (value / loss_scale).backward()
        nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        scheduler.step()
        done += 1
        ctx.step(len(x), loss=float(value.detach()))
        if validate is not None and val_every > 0 and (step + 1) % val_every == 0:
            last_val = validate()
            if last_val < best_val:
                best_val = last_val
                best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            module.train()
    restored = False
    kept = None
    if validate is not None:
        final = last_val if last_val is not None else validate()
        if best_state is not None and not final <= best_val:  # also true when the final loss is NaN
            module.load_state_dict(best_state)
            kept, restored = best_val, True
        else:
            kept = final
    module.eval()
    return TrainingResult(done, kept, restored)
