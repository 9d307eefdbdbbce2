"""Generative adversarial networks: ``gan`` (MLPs) and ``dcgan`` (convolutional), family ``gan``.

Both train a generator G(z), z ~ N(0, I), against a discriminator D with the non-saturating loss
of Goodfellow et al. (2014): D minimises softplus(-D(x)) + softplus(D(G(z))) and G minimises
softplus(-D(G(z))), one D step and one G step per iteration, Adam. They declare the ``sample``
capability only: a GAN has no likelihood (the ``parzen_nll`` metric gives the usual, weak, estimate).

``gan`` — MLP generator (ReLU) and discriminator (LeakyReLU(0.2)), for 2-D toys and other
low-dimensional data (flattened). Its profiles add an R1 penalty (gamma/2) E||grad_x D(x)||^2 on
real data (Mescheder, Geiger & Nowozin 2018), ``r1_gamma=0.1``: without it the plain GAN collapsed
to one or two of the 8gaussians modes in our quick runs; ``r1_gamma=0`` (the base value) gives the
plain GAN. ``dcgan`` — Radford, Metz & Chintala (2016) for images: strided 4x4 convolutions
in the discriminator and transposed 4x4 convolutions in the generator, batch norm in both except on
the generator output and the discriminator input, ReLU and a tanh output in the generator,
LeakyReLU(0.2) in the discriminator, Adam lr 2e-4 with beta1 0.5, N(0, 0.02) weight init. The
stack adapts to the shape: it halves the image while both sides are even and above 4, so
(1,8,8) -> 4x4, (1,28,28) -> 7x7 and (3,32,32) -> 4x4, and a last convolution spanning the smallest
map gives the discriminator's logit. ``extra_layers`` adds stride-1 3x3 blocks at the smallest map
(as in the reference DCGAN code's n_extra_layers), which helps the two-layer pyramid of 8x8 images.

Data space. Continuous data is standardised per dimension (``gan``, linear generator output) or
scaled into [-1, 1] by the training split's range (``dcgan``, tanh output). Discrete data with K
levels (binary: K = 2) is seen dequantised, y = (x + u) / K in [0, 1) mapped to [-1, 1], so the
discriminator cannot tell real from generated data by the grid alone; the generator's tanh output is
mapped back to [0, 1] and quantised, level = floor(K y). For binary data that is a threshold at
0.5 (deterministic; not a Bernoulli draw of the output, which the generator was never trained to
produce).

Sampling runs the generator in eval mode (batch-norm running statistics), so a sample depends only
on its z, never on the batch it was drawn in.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from harness import Capability, DataKind, FitContext, Hyperparameters, Model, ModelSpec, Split, hookimpl
from harness.data import dequantize, quantize
from harness_plugins.models._blocks import TOYS, halvings, mlp, reset_parameters


# ----------------------------------------------------------------------------- data mapping


class DataMap(nn.Module):
    """Data space <-> the generator's space.

    continuous + ``bounded=False``: per-dimension standardisation;
    continuous + ``bounded=True``: one affine map of the training range onto [-1, 1];
    discrete/binary: dequantise to [0, 1), then 2y - 1; back: quantise (y + 1) / 2.
    """

    def __init__(self, spec, bounded: bool):
        super().__init__()
        self.kind = spec.kind
        self.levels = None if spec.kind is DataKind.CONTINUOUS else int(spec.levels)
        self.bounded = bounded
        self.register_buffer("shift", torch.zeros(spec.dim))
        self.register_buffer("scale", torch.ones(spec.dim))

    def fit(self, x: torch.Tensor) -> None:
        if self.levels is not None:
            return
        flat = x.reshape(x.shape[0], -1).double()
        if self.bounded:
            lo, hi = float(flat.min()), float(flat.max())
            self.shift.fill_((hi + lo) / 2)
            self.scale.fill_(max((hi - lo) / 2, 1e-6))
        else:
            self.shift.copy_(flat.mean(0).float())
            self.scale.copy_(flat.std(0).clamp_min(1e-6).float())

    def to_model(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.levels is not None:
            return 2 * dequantize(x, self.levels, generator) - 1
        flat = (x.reshape(x.shape[0], -1) - self.shift) / self.scale
        return flat.reshape(x.shape)

    def to_data(self, y: torch.Tensor) -> torch.Tensor:
        if self.levels is not None:
            return quantize((y + 1) / 2, self.levels)
        flat = y.reshape(y.shape[0], -1) * self.scale + self.shift
        return flat.reshape(y.shape)


# ----------------------------------------------------------------------------- networks


class MLPGenerator(nn.Module):
    def __init__(self, latent: int, hidden: int, depth: int, shape: tuple, tanh: bool):
        super().__init__()
        self.shape = shape
        net = mlp([latent] + [hidden] * depth + [math.prod(shape)], nn.ReLU)
        self.net = nn.Sequential(*net, nn.Tanh()) if tanh else net

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, dim: int, hidden: int, depth: int):
        super().__init__()
        self.net = mlp([dim] + [hidden] * depth + [1], lambda: nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(x.shape[0], -1)).squeeze(1)


class DCGANGenerator(nn.Module):
    """z -> (transposed conv to the smallest map) -> [stride-1 3x3 blocks] -> stride-2 transposed
    convs doubling the map and halving the channels -> tanh image. BN + ReLU everywhere but the output."""

    def __init__(self, latent: int, shape: tuple, channels: int, extra_layers: int):
        super().__init__()
        c, h, w = shape
        n, h0, w0 = halvings(h, w)
        width = channels * 2 ** max(n - 1, 0)
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent, width, (h0, w0), bias=False),
                                   nn.BatchNorm2d(width), nn.ReLU(True)]
        for _ in range(extra_layers):
            layers += [nn.ConvTranspose2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(True)]
        for i in range(n):
            if i == n - 1:
                layers.append(nn.ConvTranspose2d(width, c, 4, 2, 1, bias=False))
            else:
                layers += [nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                           nn.BatchNorm2d(width // 2), nn.ReLU(True)]
                width //= 2
        if n == 0:  # an image too small (or odd-sided) to halve: one stride-1 output layer
            layers.append(nn.ConvTranspose2d(width, c, 3, 1, 1, bias=False))
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class DCGANDiscriminator(nn.Module):
    """image -> stride-2 4x4 convs (no BN on the first) doubling the channels -> [stride-1 3x3
    blocks] -> a convolution spanning the smallest map -> one logit. LeakyReLU(0.2) throughout."""

    def __init__(self, shape: tuple, channels: int, extra_layers: int):
        super().__init__()
        c, h, w = shape
        n, h0, w0 = halvings(h, w)
        width = channels
        if n == 0:
            layers: list[nn.Module] = [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.LeakyReLU(0.2, True)]
        else:
            layers = [nn.Conv2d(c, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True)]
            for _ in range(n - 1):
                layers += [nn.Conv2d(width, width * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width * 2),
                           nn.LeakyReLU(0.2, True)]
                width *= 2
        for _ in range(extra_layers):
            layers += [nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(width, 1, (h0, w0), bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(x.shape[0])


def _dcgan_init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif isinstance(m, nn.BatchNorm2d):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def initialise(module: nn.Module, seed: int, dcgan: bool) -> None:
    """Re-draw the parameters from ``seed`` (global RNG saved and restored): PyTorch's defaults,
    then for DCGAN weights N(0, 0.02), batch-norm scales N(1, 0.02) and shifts 0."""
    reset_parameters(module, seed, after=_dcgan_init if dcgan else None)


# ----------------------------------------------------------------------------- the model


class GANModel(Model):
    """A GAN: ``convolutional=False`` builds the MLP ``gan``, ``True`` the ``dcgan``."""

    convolutional = False

    def __init__(self, spec, hparams: dict):
        self.spec = spec
        self.hparams = dict(hparams)
        self.latent = int(hparams["latent"])
        bounded = self.convolutional or spec.kind is not DataKind.CONTINUOUS
        self.data_map = DataMap(spec, bounded=self.convolutional)
        if self.convolutional:
            channels, extra = int(hparams["channels"]), int(hparams["extra_layers"])
            self.gen_net = DCGANGenerator(self.latent, spec.event_shape, channels, extra)
            self.disc_net = DCGANDiscriminator(spec.event_shape, channels, extra)
        else:
            hidden, depth = int(hparams["hidden"]), int(hparams["depth"])
            self.gen_net = MLPGenerator(self.latent, hidden, depth, spec.event_shape, tanh=bounded)
            self.disc_net = MLPDiscriminator(spec.dim, hidden, depth)
        self.sample_batch = int(hparams["sample_batch"])
        initialise(self.gen_net, 0, self.convolutional)
        initialise(self.disc_net, 1, self.convolutional)

    def fit(self, train: Split, val: Split, ctx: FitContext) -> None:
        h = self.hparams
        steps = int(h["steps"])
        ctx.set_total_steps(steps)
        self.data_map.fit(train.x)
        seed = int(torch.randint(0, 2**62, (1,), generator=ctx.generator))
        initialise(self.gen_net, seed, self.convolutional)
        initialise(self.disc_net, seed + 1, self.convolutional)
        lr, beta1 = float(h["lr"]), float(h["beta1"])
        opt_g = torch.optim.Adam(self.gen_net.parameters(), lr=lr, betas=(beta1, 0.999))
        opt_d = torch.optim.Adam(self.disc_net.parameters(), lr=lr, betas=(beta1, 0.999))
        batch = min(int(h["batch_size"]), len(train))
        r1_gamma = float(h["r1_gamma"])
        self.gen_net.train()
        self.disc_net.train()
        for _ in range(steps):
            idx = torch.randint(0, len(train), (batch,), generator=ctx.generator)
            real = self.data_map.to_model(train.x[idx], ctx.generator).to(self.device)
            z = torch.randn(batch, self.latent, generator=ctx.generator).to(self.device)
            fake = self.gen_net(z)
            if r1_gamma > 0:
                real.requires_grad_(True)
            real_logits = self.disc_net(real)
            d_loss = F.softplus(-real_logits).mean() + F.softplus(self.disc_net(fake.detach())).mean()
            if r1_gamma > 0:  # R1: (gamma / 2) E ||grad_x D(x)||^2 on real data (Mescheder et al. 2018)
                (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
                d_loss = d_loss + 0.5 * r1_gamma * grad.pow(2).reshape(batch, -1).sum(1).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            g_loss = F.softplus(-self.disc_net(fake)).mean()  # non-saturating generator loss
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            ctx.step(batch, d_loss=float(d_loss.detach()), g_loss=float(g_loss.detach()))
            if ctx.should_stop():
                break
        self.gen_net.eval()
        self.disc_net.eval()

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        self.gen_net.eval()
        z_all = torch.randn(n, self.latent, generator=generator)  # all at once: batches change nothing
        out = []
        for start in range(0, n, self.sample_batch):
            z = z_all[start:start + self.sample_batch].to(self.device)
            out.append(self.data_map.to_data(self.gen_net(z)).float().cpu())
        if not out:
            return torch.zeros(0, *self.spec.event_shape)
        return torch.cat(out).reshape(n, *self.spec.event_shape)


class DCGANModel(GANModel):
    convolutional = True


# ----------------------------------------------------------------------------- hyperparameters

TRAINING = {"steps": 1000, "batch_size": 128, "lr": 2e-4, "beta1": 0.5, "r1_gamma": 0.0, "sample_batch": 1024}
TRAINING_DOCS = {
    "steps": "training iterations, one discriminator and one generator step each (fewer if the deadline comes)",
    "batch_size": "real and generated examples per step (at most the training split)",
    "lr": "Adam learning rate of both networks",
    "beta1": "Adam beta1 of both networks",
    "r1_gamma": "weight gamma of the R1 penalty (gamma/2) E||grad_x D(x)||^2 on real data (0: none)",
    "sample_batch": "samples generated together",
    "latent": "dimensions of the generator's input z ~ N(0, I)",
}
GAN_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "latent": 8, "hidden": 128, "depth": 3},
    docs={**TRAINING_DOCS, "hidden": "hidden units of the generator and discriminator MLPs",
          "depth": "hidden layers of the generator and discriminator MLPs"},
    profiles={
        "smoke": {"steps": 150, "batch_size": 256, "hidden": 64, "depth": 3,
                  "latent": 8, "lr": 1e-3, "r1_gamma": 0.1},
        # A rate of 1e-3 samples the 2-D toys as well as 5e-4 does in twice the steps; 700 steps keep
        # run --all, which fits the gan on all seven toys, within its budget (docs/benchmarks.md).
        "quick": {"steps": 700, "batch_size": 256, "hidden": 128, "depth": 3,
                  "latent": 8, "lr": 1e-3, "r1_gamma": 0.1},
        "full": {"steps": 30000, "batch_size": 512, "hidden": 512, "depth": 3,
                 "latent": 32, "lr": 2e-4, "r1_gamma": 0.1},
    },
)
DCGAN_HYPERPARAMETERS = Hyperparameters(
    defaults={**TRAINING, "latent": 64, "channels": 32, "extra_layers": 1},
    docs={**TRAINING_DOCS, "channels": "channels of the discriminator's first convolution (the generator's last)",
          "extra_layers": "stride-1 3x3 blocks at the smallest feature map, in both networks"},
    profiles={
        "smoke": {"steps": 60, "batch_size": 64, "channels": 16, "extra_layers": 1, "latent": 32},
        "quick": {"steps": 2000, "batch_size": 64, "channels": 32, "extra_layers": 1, "latent": 64},
        "full": {"steps": 30000, "batch_size": 128, "channels": 64, "extra_layers": 1, "latent": 100},
    },
)


# ----------------------------------------------------------------------------- registration


def _images_only(spec) -> Optional[str]:
    if not spec.is_image:
        return f"dcgan needs images (C, H, W); {spec.name} has shape {spec.event_shape}"
    return None


_KINDS = [DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY]


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="gan",
        family="gan",
        factory=GANModel,
        data_kinds=_KINDS,
        capabilities=[Capability.SAMPLE],
        hyperparameters=GAN_HYPERPARAMETERS,
        default_datasets={"smoke": ["8gaussians"], "quick": [TOYS], "full": [TOYS]},
        description="MLP GAN (non-saturating loss, Adam beta1 0.5) for low-dimensional data; samples only.",
    ))
    register(ModelSpec(
        name="dcgan",
        family="gan",
        factory=DCGANModel,
        data_kinds=_KINDS,
        capabilities=[Capability.SAMPLE],
        hyperparameters=DCGAN_HYPERPARAMETERS,
        default_datasets={"smoke": ["digits"], "quick": ["digits"], "full": ["digits", "mnist5k", "cifar10"]},
        accepts=_images_only,
        description="DCGAN (Radford et al. 2016): strided convs, batch norm, Adam 2e-4 / 0.5; samples only.",
    ))
