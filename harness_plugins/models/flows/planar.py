"""Planar flow (Rezende & Mohamed, 2015), with the density computed by numerical inversion.

Generative layers x = z + u_hat tanh(w.z + b) with u_hat = u + (m(w.u) - w.u) w / |w|^2,
m(a) = -1 + softplus(a) (plus a 1e-4 margin that survives float32 rounding), so that w.u_hat > -1 and
each layer is invertible. There is no closed-form inverse, so the normalising direction solves each
layer numerically: a = w.z + b is the unique root of F(a) = a + (w.u_hat) tanh(a) - (w.x + b)
(monotone in a; bracketed and solved by safeguarded Newton in float64 to |F| < 1e-10), then
z = x - u_hat tanh(a). Gradients flow through one Newton correction from the detached root,
a = a* - F(a*) / F'(a*), whose value is a* and whose derivatives are exactly the implicit-function
ones, so dz/dx is the inverse of the layer's Jacobian and maximum-likelihood training gets exact
gradients. The log-density is the change of variables of the generative direction:
log p(x) = log N(z) - sum_k log(1 + w_k.u_hat_k tanh'(a_k)). Low-dimensional data only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from harness_plugins.models.flows.layers import Flow


def solve_planar_preactivation(c: float, y: np.ndarray, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """The root a of a + c tanh(a) = y for each entry of y (c > -1: the left side is increasing).

    |tanh| < 1 brackets the root in [y - |c|, y + |c|]; Newton steps that leave the bracket are
    replaced by bisection, so it always converges. Runs in float64 numpy (no autograd is needed
    here, and numpy's per-call overhead is a fraction of torch's on these small vectors).
    """
    lo, hi = y - abs(c), y + abs(c)
    a = y.copy()
    for _ in range(max_iter):
        t = np.tanh(a)
        residual = a + c * t - y
        if np.abs(residual).max(initial=0.0) < tol:
            break
        lo = np.where(residual < 0, a, lo)
        hi = np.where(residual > 0, a, hi)
        newton = a - residual / (1 + c * (1 - t * t))
        a = np.where((newton > lo) & (newton < hi), newton, 0.5 * (lo + hi))
    return a


class PlanarFlow(Flow):
    """K planar layers. Layer k's generative map is g_k(z) = z + u_hat_k tanh(w_k.z + b_k); the
    generative direction is x = g_1(g_2(...g_K(z))), so ``forward`` (x -> z) inverts g_1 first.

    The parameters of all layers are stacked into (K, D) tensors so the constraint and the optimiser
    work on three tensors rather than 3K.
    """

    def __init__(self, dim: int, layers: int):
        super().__init__()
        self.w = nn.Parameter(torch.randn(layers, dim) / math.sqrt(dim))
        self.u = nn.Parameter(torch.randn(layers, dim) * 0.1)
        self.b = nn.Parameter(torch.zeros(layers))

    # m(a) = -1 + softplus(a) rounds to exactly -1 in float32 once a < -17, which would make a layer
    # singular; the margin keeps w.u_hat >= -1 + 1e-4 in any precision.
    MARGIN = 1e-4

    def u_hat(self) -> torch.Tensor:
        """u + (m(w.u) - w.u) w / |w|^2 with m(a) = -1 + margin + softplus(a), so w.u_hat > -1."""
        wu = (self.w * self.u).sum(1, keepdim=True)
        m = -1 + self.MARGIN + F.softplus(wu)
        return self.u + (m - wu) * self.w / (self.w * self.w).sum(1, keepdim=True)

    def inverse(self, z):
        u_hat = self.u_hat()
        for k in reversed(range(self.w.shape[0])):
            z = z + u_hat[k] * torch.tanh(z @ self.w[k] + self.b[k])[:, None]
        return z

    def forward(self, x):
        u_hat = self.u_hat()
        c_all = (self.w * u_hat).sum(1)  # w.u_hat > -1
        log_det = x.new_zeros(x.shape[0])
        for w, u, b, c in zip(self.w, u_hat, self.b, c_all):
            y = x @ w + b
            with torch.no_grad():
                root_np = solve_planar_preactivation(float(c), y.detach().cpu().double().numpy())
                root = torch.from_numpy(root_np).to(device=x.device, dtype=x.dtype)
                t_root = torch.tanh(root)
                slope = 1 + c * (1 - t_root * t_root)
            # One Newton correction from the detached root: its value is the root and its derivatives
            # (through y and c) are the implicit-function ones, da = (dy - tanh(a) dc) / (1 + c tanh'(a)).
            a = root - (root + c * t_root - y) / slope
            t = torch.tanh(a)
            x = x - u * t[:, None]
            log_det = log_det - torch.log1p(c * (1 - t * t))
        return x, log_det


def build_planar(shape, hp) -> list:
    return [PlanarFlow(shape[0], int(hp["layers"]))]
