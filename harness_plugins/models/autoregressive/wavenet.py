"""WaveNet: gated, dilated causal convolutions over the raster sequence, with fast generation.

Residual and skip connections (van den Oord et al., "WaveNet", 2016); generation keeps a queue per
layer (Paine et al. 2016)."""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness import Hyperparameters
from harness_plugins.models.autoregressive.model import TRAINING, TRAINING_DOCS, AutoregressiveModel


class CausalConv1d(nn.Conv1d):
    """A 1-D convolution whose output at t sees inputs at t, t-d, t-2d, ... only (left padding)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 2, dilation: int = 1):
        super().__init__(in_ch, out_ch, kernel, dilation=dilation)
        self.left_pad = dilation * (kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class GatedResidualLayer(nn.Module):
    """tanh(W_f * h) . sigmoid(W_g * h) with a dilated causal conv; 1x1 residual and skip outputs."""

    def __init__(self, residual: int, gate: int, skip: int, dilation: int):
        super().__init__()
        self.conv = CausalConv1d(residual, 2 * gate, 2, dilation)
        self.res = nn.Conv1d(gate, residual, 1)
        self.skip = nn.Conv1d(gate, skip, 1)

    def forward(self, h: torch.Tensor):
        f, g = self.conv(h).chunk(2, dim=1)
        z = torch.tanh(f) * torch.sigmoid(g)
        return h + self.res(z), self.skip(z)


class WaveNetNetwork(nn.Module):
    """Gated dilated causal convolutions over the sequence (dilations 1, 2, 4, ..., repeated
    ``stacks`` times), residual and skip connections, ReLU-1x1-ReLU-1x1 output.

    The input is shifted right by one position (position 0 sees nothing), which makes the causal
    stack strictly autoregressive. A learned per-position bias tells the network where it is
    (e.g. the column of a pixel in the raster scan); it depends on the position only.
    """

    def __init__(self, length: int, n_params: int, residual: int = 32, gate: int = 32, skip: int = 64,
                 layers: Optional[int] = None, stacks: int = 1):
        super().__init__()
        self.length, self.n_params = length, n_params
        layers = layers or max(1, math.ceil(math.log2(max(length, 2))))
        self.input = CausalConv1d(1, residual, 2, 1)
        self.position = nn.Parameter(torch.zeros(residual, length))
        self.layers = nn.ModuleList(
            GatedResidualLayer(residual, gate, skip, 2 ** i) for _ in range(stacks) for i in range(layers)
        )
        self.output = nn.Sequential(nn.ReLU(), nn.Conv1d(skip, skip, 1), nn.ReLU(), nn.Conv1d(skip, n_params, 1))

    @property
    def receptive_field(self) -> int:
        return 2 + sum(layer.conv.left_pad for layer in self.layers)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Parameters (N, T, P) of positions 0..T-1 of ``h`` (N, T), T <= D: a causal stack gives
        the same values on a prefix as on the whole sequence."""
        t = h.shape[1]
        shifted = F.pad(h[:, : t - 1], (1, 0)).unsqueeze(1)  # (N, 1, t): position i holds x_{i-1}
        x = self.input(shifted) + self.position[:, :t]
        skips = 0
        for layer in self.layers:
            x, s = layer(x)
            skips = skips + s
        return self.output(skips).transpose(1, 2)

    def params_at(self, h: torch.Tensor, i: int) -> torch.Tensor:
        return self(h[:, :i + 1])[:, i]

    def start_generation(self, n: int, device) -> "WaveNetGeneration":
        return WaveNetGeneration(self, n, device)


class WaveNetGeneration:
    """Fast generation (Paine et al. 2016, "Fast Wavenet Generation Algorithm"): every layer keeps
    a queue of its last ``dilation`` inputs, so the parameters of position i cost one column of each
    layer instead of a pass over the whole prefix. Gives the same values as the full network."""

    def __init__(self, net: WaveNetNetwork, n: int, device):
        self.net = net
        residual = net.position.shape[0]
        self.queues = [torch.zeros(layer.conv.dilation[0], n, residual, device=device) for layer in net.layers]

    @staticmethod
    def _tap(conv: nn.Conv1d, x: torch.Tensor, k: int, bias: bool = True) -> torch.Tensor:
        return F.linear(x, conv.weight[:, :, k], conv.bias if bias else None)

    @torch.no_grad()
    def params(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """Parameters (N, P) of position i, given the encoded sequence ``h`` (only h[:, :i] is read).
        Call with i = 0, 1, 2, ... in order."""
        net = self.net
        zero = torch.zeros_like(h[:, :1])
        prev1 = h[:, i - 1:i] if i >= 1 else zero  # the shifted input at i is x_{i-1}
        prev2 = h[:, i - 2:i - 1] if i >= 2 else zero
        x = self._tap(net.input, prev2, 0, bias=False) + self._tap(net.input, prev1, 1) + net.position[:, i]
        skips = 0
        for layer, queue in zip(net.layers, self.queues):
            slot = i % queue.shape[0]
            past = queue[slot].clone()  # this layer's input at i - dilation (zeros before the start)
            queue[slot] = x
            f, g = (self._tap(layer.conv, past, 0, bias=False) + self._tap(layer.conv, x, 1)).chunk(2, dim=-1)
            z = torch.tanh(f) * torch.sigmoid(g)
            x = x + self._tap(layer.res, z, 0)
            skips = skips + self._tap(layer.skip, z, 0)
        out = skips
        for module in net.output:
            out = self._tap(module, out, 0) if isinstance(module, nn.Conv1d) else module(out)
        return out


class WaveNet(AutoregressiveModel):
    """WaveNet over the raster sequence: ``residual``, ``gate``, ``skip`` channels, ``layers``
    per stack (None: enough dilations to cover the whole sequence), ``stacks``."""

    ordering = "raster (rows, columns, channels) as one sequence"

    def build_network(self) -> nn.Module:
        hp = self.hparams
        layers = hp["layers"]
        return WaveNetNetwork(self.dim, self.head.n_params, int(hp["residual"]), int(hp["gate"]), int(hp["skip"]),
                              None if layers is None else int(layers), int(hp["stacks"]))


WAVENET_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "residual": 32, "gate": 32, "skip": 64, "layers": None, "stacks": 1},
    docs={**TRAINING_DOCS,
          "residual": "residual channels",
          "gate": "channels of the gated (tanh x sigmoid) units",
          "skip": "skip-connection channels",
          "layers": "dilated layers per stack, dilations 1, 2, 4, ... (None: enough to cover the sequence)",
          "stacks": "repetitions of the dilation stack"},
    profiles={
        "smoke": {"residual": 16, "gate": 16, "skip": 32, "steps": 60, "batch_size": 32, "lr": 1e-2,
                  "eval_every": 20},
        "quick": {"residual": 32, "gate": 32, "skip": 64, "stacks": 1, "steps": 400, "batch_size": 64, "lr": 5e-3,
                  "eval_every": 50},
        "full": {"residual": 96, "gate": 96, "skip": 192, "stacks": 3, "steps": 30000, "batch_size": 64,
                 "lr": 1e-3, "eval_every": 500},
    },
)
