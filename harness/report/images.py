"""Images for the self-contained report: matplotlib figures on the Agg canvas (no display, no global
pyplot state), encoded as PNG or SVG and inlined as ``data:`` URIs; sample grids tiled from arrays.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Optional

import numpy as np

DPI = 80
SVG_RC = {"svg.fonttype": "none", "svg.hashsalt": "harness"}  # text stays text; stable element ids


@dataclass
class Image:
    """An encoded image: its bytes, MIME type and size in pixels (what <img> is told)."""

    data: bytes
    mime: str
    width: int
    height: int

    def uri(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def figure(width_in: float, height_in: float):
    """A matplotlib Figure drawn by the Agg backend, independent of pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def encode(fig, fmt: str = "svg") -> Image:
    """The figure as SVG (charts: sharp at any zoom) or PNG (heatmaps, scatters of many points)."""
    import matplotlib

    buf = io.BytesIO()
    with matplotlib.rc_context(SVG_RC):
        fig.savefig(buf, format=fmt, dpi=DPI, metadata=_metadata(fmt))
    w, h = fig.get_size_inches()
    return Image(buf.getvalue(), "image/svg+xml" if fmt == "svg" else "image/png", int(round(w * DPI)),
                 int(round(h * DPI)))


def _metadata(fmt: str) -> dict:
    # No creation date or software stamp: the same results give the same bytes.
    return {"Date": None} if fmt == "svg" else {"Software": None}


def png(array: np.ndarray) -> Image:
    """An (H, W) grey or (H, W, 3) RGB array with values in [0, 1] as a PNG."""
    from matplotlib.image import imsave

    buf = io.BytesIO()
    arr = np.clip(np.asarray(array, dtype=np.float64), 0.0, 1.0)
    if arr.ndim == 2:
        imsave(buf, arr, format="png", cmap="gray", vmin=0.0, vmax=1.0)
    else:
        imsave(buf, arr, format="png")
    return Image(buf.getvalue(), "image/png", int(arr.shape[1]), int(arr.shape[0]))


def to_unit(images: np.ndarray, levels: Optional[int]) -> np.ndarray:
    """Images in data space -> [0, 1]: integer levels 0..K-1 divided by K-1 (binary: K = 2), continuous
    values scaled by their own range."""
    x = np.asarray(images, dtype=np.float64)
    if levels and levels > 1:
        return np.clip(x / (levels - 1), 0.0, 1.0)
    lo, hi = np.nanmin(x), np.nanmax(x)
    return np.zeros_like(x) if not np.isfinite(hi - lo) or hi == lo else (x - lo) / (hi - lo)


def tile(images: np.ndarray, columns: int = 8, pad: int = 1, target_width: int = 240) -> np.ndarray:
    """(N, C, H, W) in [0, 1] -> one grid image, ``columns`` wide, ``pad`` pixels of mid-grey between
    tiles, enlarged by an integer factor (nearest neighbour) to about ``target_width`` pixels."""
    n, c, h, w = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 0.5)
    for i in range(n):
        r, k = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + k * (w + pad)
        grid[y:y + h, x:x + w] = np.moveaxis(images[i], 0, -1)
    scale = max(1, int(round(target_width / grid.shape[1])))
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
    return grid[..., 0] if c == 1 else grid
