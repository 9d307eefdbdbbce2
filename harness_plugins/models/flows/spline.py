"""Neural spline flow: couplings whose element-wise transform is a monotone rational-quadratic spline.

Neural spline flow (Durkan, Bekasov, Murray & Papamakarios, 2019): coupling layers whose element-wise
transform is a monotone rational-quadratic (RQ) spline with linear tails.

On [-B, B] the spline has K bins; the network gives, per transformed entry, K bin widths and K bin
heights (softmax, each at least ``MIN_BIN``, scaled to 2B) and K - 1 derivatives at the inner knots
(softplus, at least ``MIN_DERIVATIVE``); the derivatives at -B and B are 1, so the spline joins the
identity outside [-B, B] (the linear tails) with a continuous first derivative. In bin k, with
xi = (x - x_k) / w_k in [0, 1], s_k = h_k / w_k and the knot derivatives d_k, d_{k+1}:

    y = y_k + h_k (s_k xi^2 + d_k xi (1 - xi)) / (s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi))
    dy/dx = s_k^2 (d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2) / (s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi))^2

The inverse solves the quadratic a xi^2 + b xi + c = 0 of the same bin in closed form (the root in
[0, 1], written 2c / (-b - sqrt(b^2 - 4ac)) for numerical stability), so density and sampling are
each one pass. A coupling layer splits the features in two alternating halves: one half passes
unchanged and, through an MLP, gives the spline parameters of the other. The MLP's output layer
starts at zero and the derivative parametrisation gives 1 at zero, so every layer starts as the
identity. The paper's autoregressive variant and its 1x1 linear layers between couplings are left
out; alternating halves mix the features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from harness_plugins.models._blocks import MADE
from harness_plugins.models.flows.layers import Flow
from harness_plugins.models.flows.networks import mlp

MIN_BIN = 1e-3  # smallest bin width and height, as a fraction of 2B
MIN_DERIVATIVE = 1e-3
# softplus(raw + DERIVATIVE_SHIFT) + MIN_DERIVATIVE is 1 at raw = 0
DERIVATIVE_SHIFT = math.log(math.expm1(1 - MIN_DERIVATIVE))


def spline_parameters(raw: torch.Tensor, bound: float) -> torch.Tensor:
    """Knots from raw network outputs (..., 3K - 1): K width logits, K height logits, K - 1
    inner-derivative pre-activations. Returns (..., 3, K + 1): the x knots (-bound .. bound), the y
    knots (-bound .. bound) and the derivatives at the knots (1 at both ends)."""
    k = (raw.shape[-1] + 1) // 3
    sizes = MIN_BIN + (1 - MIN_BIN * k) * torch.softmax(raw[..., :2 * k].unflatten(-1, (2, k)), -1)
    zero = sizes.new_zeros(sizes.shape[:-1] + (1,))
    edges = torch.cat([zero, torch.cumsum(sizes[..., :-1], -1), zero + 1], -1) * (2 * bound) - bound
    one = raw.new_ones(raw.shape[:-1] + (1,))
    derivatives = torch.cat([one, F.softplus(raw[..., 2 * k:] + DERIVATIVE_SHIFT) + MIN_DERIVATIVE, one], -1)
    return torch.cat([edges, derivatives[..., None, :]], -2)


def rational_quadratic_spline(x: torch.Tensor, raw: torch.Tensor, bound: float, inverse: bool = False) -> tuple:
    """The RQ spline of ``raw`` (..., 3K - 1 per entry of ``x``) applied to ``x`` (...), identity
    outside [-bound, bound]. Returns (output, log |d output / d input|) element-wise; with
    ``inverse`` the inverse map and its log-derivative.

    Every entry goes through the spline formulas (entries outside [-bound, bound] clamped to it) and
    the tails are selected afterwards, so a call is a fixed sequence of whole-tensor operations."""
    inside = (x >= -bound) & (x <= bound)
    v = x.clamp(-bound, bound)
    knots = spline_parameters(raw, bound)  # (..., 3, K + 1)
    searched = knots[..., 1 if inverse else 0, 1:-1]
    idx = (v[..., None] >= searched).sum(-1, keepdim=True)  # the bin: inner knots at or below v
    idx = idx[..., None, :].expand(*idx.shape[:-1], 3, 1)
    left = knots.gather(-1, idx).squeeze(-1)  # (..., 3): x_k, y_k, d_k
    right = knots.gather(-1, idx + 1).squeeze(-1)  # x_{k+1}, y_{k+1}, d_{k+1}
    x_k, y_k, d_k = left.unbind(-1)
    width, height = right[..., 0] - x_k, right[..., 1] - y_k
    d_k1 = right[..., 2]
    slope = height / width
    curvature = d_k1 + d_k - 2 * slope
    if inverse:
        dy = v - y_k
        a = height * (slope - d_k) + dy * curvature
        b = height * d_k - dy * curvature
        c = -slope * dy
        xi = (2 * c / (-b - torch.sqrt((b * b - 4 * a * c).clamp_min(0)))).clamp(0, 1)
    else:
        xi = (v - x_k) / width
    one_minus = 1 - xi
    between = xi * one_minus
    denominator = slope + curvature * between
    log_dy_dx = (torch.log(slope * slope * (d_k1 * xi * xi + 2 * slope * between + d_k * one_minus * one_minus))
                 - 2 * torch.log(denominator))
    if inverse:
        out, log_derivative = x_k + xi * width, -log_dy_dx
    else:
        out, log_derivative = y_k + height * (slope * xi * xi + d_k * between) / denominator, log_dy_dx
    return torch.where(inside, out, x), torch.where(inside, log_derivative, torch.zeros_like(x))


class SplineCoupling(Flow):
    """Entries ``keep`` pass unchanged and give, through an MLP, the RQ-spline parameters of entries
    ``change``: z[change] = spline(x[change]; NN(x[keep]))."""

    def __init__(self, keep: torch.Tensor, change: torch.Tensor, hidden: int, depth: int, bins: int, bound: float):
        super().__init__()
        self.register_buffer("keep", keep)
        self.register_buffer("change", change)
        self.bins, self.bound = int(bins), float(bound)
        self.net = mlp(len(keep), len(change) * (3 * self.bins - 1), hidden, depth)

    def _raw(self, x_keep: torch.Tensor) -> torch.Tensor:
        return self.net(x_keep).reshape(x_keep.shape[0], len(self.change), 3 * self.bins - 1)

    def _transform(self, x: torch.Tensor, inverse: bool) -> tuple:
        raw = self._raw(x[:, self.keep])
        changed, log_derivative = rational_quadratic_spline(x[:, self.change], raw, self.bound, inverse=inverse)
        return x.index_copy(1, self.change, changed), log_derivative.sum(1)

    def forward(self, x):
        return self._transform(x, inverse=False)

    def inverse(self, z):
        return self._transform(z, inverse=True)[0]


class SplineAutoregressive(Flow):
    """Every entry through an RQ spline whose parameters a MADE computes from the entries before it in
    the layer's order (reversed on alternate layers): z_i = spline(x_i; NN(x_<i)). Density: one pass;
    inverse: one pass per entry, in order."""

    def __init__(self, dim: int, hidden: int, depth: int, bins: int, bound: float, reverse: bool):
        super().__init__()
        degrees = torch.arange(1, dim + 1)
        if reverse:
            degrees = degrees.flip(0)
        self.register_buffer("order", torch.argsort(degrees))
        self.bound = float(bound)
        self.made = MADE(degrees, [hidden] * depth, 3 * int(bins) - 1, hidden_degrees="cyclic", zero_output=True)

    def forward(self, x):
        z, log_derivative = rational_quadratic_spline(x, self.made(x), self.bound)
        return z, log_derivative.sum(1)

    def inverse(self, z):
        x = torch.zeros_like(z)
        for i in self.order.tolist():
            column = rational_quadratic_spline(z[:, i], self.made.params_at(x, i), self.bound, inverse=True)[0]
            x = torch.cat([x[:, :i], column[:, None], x[:, i + 1:]], 1)
        return x


def _halves(dim: int, parity: int) -> tuple:
    idx = torch.arange(dim)
    return idx[idx % 2 == parity], idx[idx % 2 != parity]


def build_spline(shape, hp) -> list:
    dim = math.prod(shape)
    if hp["variant"] == "autoregressive":
        return [SplineAutoregressive(dim, int(hp["hidden"]), int(hp["depth"]), int(hp["bins"]), float(hp["tail_bound"]),
                                     reverse=bool(i % 2))
                for i in range(int(hp["couplings"]))]
    return [SplineCoupling(*_halves(dim, i % 2), int(hp["hidden"]), int(hp["depth"]), int(hp["bins"]),
                           float(hp["tail_bound"]))
            for i in range(int(hp["couplings"]))]
