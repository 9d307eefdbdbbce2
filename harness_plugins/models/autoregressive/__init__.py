"""Autoregressive models: MADE, PixelCNN and a WaveNet over raster-ordered pixels (their registration).

Each model factorises p(x) = prod_i p(x_i | x_<i) over a fixed ordering of the D dimensions, so its
log-likelihood is exact and sampling draws one dimension at a time. All three share:

- a *sequence view* of the data: ``(N, *event_shape)`` -> ``(N, D)`` in the model's ordering;
- a *network* mapping the encoded sequence ``(N, D)`` to per-dimension parameters ``(N, D, P)``,
  where ``params[:, i]`` depends only on ``x[:, :i]`` (the autoregressive property), with
  ``params_at(h, i)`` computing position i alone as cheaply as it can (for sampling);
- an *output head* (the conditional distribution of one dimension given its parameters):
  Bernoulli on binary data, a categorical over the K levels on discrete data (an exact discrete
  likelihood, no dequantisation), a mixture of Gaussians on continuous data (MADE only);
- the training loop (Adam, cosine learning rate, best-on-validation checkpoint; the loop itself is
  ``_blocks.train_keeping_best``) and the evaluation and sequential sampling code.

The package: :mod:`.heads` (the output heads), :mod:`.model` (the sequence view, training, likelihood
and sampling they share, and the training hyperparameters), one module per architecture
(:mod:`.made`, :mod:`.pixelcnn`, :mod:`.wavenet`: its network, model class and hyperparameters), and
here the three registrations.

Models are unconditional: labels are accepted and ignored.

References: Germain et al., "MADE: Masked Autoencoder for Distribution Estimation", ICML 2015;
van den Oord et al., "Pixel Recurrent Neural Networks", ICML 2016 (PixelCNN, masks A and B,
residual blocks); van den Oord et al., "WaveNet", 2016 (gated, dilated causal convolutions).
"""

from __future__ import annotations

from typing import Optional

from harness import Capability, DataKind, LikelihoodKind, ModelSpec, hookimpl
from harness_plugins.models._blocks import TOYS
from harness_plugins.models.autoregressive.made import MADE, MADE_HYPERPARAMETERS
from harness_plugins.models.autoregressive.pixelcnn import PIXELCNN_HYPERPARAMETERS, PixelCNN
from harness_plugins.models.autoregressive.wavenet import WAVENET_HYPERPARAMETERS, WaveNet


def images_only(spec) -> Optional[str]:
    if not spec.is_image:
        return f"pixelcnn needs images of shape (C, H, W); {spec.name} has event shape {spec.event_shape}"
    return None


@hookimpl
def harness_register_models(register):
    register(ModelSpec(
        name="made",
        family="autoregressive",
        factory=MADE,
        data_kinds=[DataKind.CONTINUOUS, DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=MADE_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary", "8gaussians"],
            "quick": ["digits-binary", "digits", TOYS],
            "full": ["digits-binary", "digits", TOYS, "mnist5k-binary", "mnist5k"],
        },
        description="MADE (Germain et al. 2015): masked MLP; Bernoulli / categorical / Gaussian-mixture "
                    "conditionals; exact likelihood.",
    ))
    register(ModelSpec(
        name="pixelcnn",
        family="autoregressive",
        factory=PixelCNN,
        data_kinds=[DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        accepts=images_only,
        hyperparameters=PIXELCNN_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary"],
            "quick": ["digits-binary", "digits"],
            "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"],
        },
        description="PixelCNN (van den Oord et al. 2016): masked convolutions (A then B), residual blocks; "
                    "Bernoulli / categorical outputs; exact likelihood.",
    ))
    register(ModelSpec(
        name="wavenet",
        family="autoregressive",
        factory=WaveNet,
        data_kinds=[DataKind.DISCRETE, DataKind.BINARY],
        capabilities=[Capability.SAMPLE],
        likelihood=LikelihoodKind.EXACT,
        hyperparameters=WAVENET_HYPERPARAMETERS,
        default_datasets={
            "smoke": ["digits-binary"],
            "quick": ["digits-binary", "digits"],
            "full": ["digits-binary", "digits", "mnist5k-binary", "mnist5k"],
        },
        description="WaveNet over raster-ordered pixels: gated dilated causal 1-D convolutions with residual and "
                    "skip connections; Bernoulli / categorical outputs; exact likelihood.",
    ))
