"""The GPU datasheet: dense peak FLOP/s by GPU model and number format, and the format a model computes in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

from harness_plugins.metrics.speed.details import device_name


@dataclass(frozen=True)
class PeakFlops:
    """Dense peak FLOP/s of a GPU by number format (vendor datasheet figures, without sparsity)."""

    pattern: str  # regular expression matched against torch.cuda.get_device_name
    label: str
    flops: dict  # "fp64" | "fp32" | "tf32" | "bf16" | "fp16" -> FLOP/s


T = 1e12
PEAK_FLOPS = (  # first match wins: the specific variants come before the generic name
    PeakFlops(r"H200.*NVL", "H200 NVL", {"fp64": 30 * T, "fp32": 60 * T, "tf32": 417.5 * T, "bf16": 835.5 * T,
                                          "fp16": 835.5 * T}),
    PeakFlops(r"H200", "H200 SXM", {"fp64": 34 * T, "fp32": 67 * T, "tf32": 494.5 * T, "bf16": 989.5 * T,
                                     "fp16": 989.5 * T}),
    PeakFlops(r"H100.*NVL", "H100 NVL", {"fp64": 30 * T, "fp32": 60 * T, "tf32": 417.5 * T, "bf16": 835.5 * T,
                                          "fp16": 835.5 * T}),
    PeakFlops(r"H100.*PCIe", "H100 PCIe", {"fp64": 26 * T, "fp32": 51 * T, "tf32": 378 * T, "bf16": 756 * T,
                                            "fp16": 756 * T}),
    PeakFlops(r"H100", "H100 SXM", {"fp64": 34 * T, "fp32": 67 * T, "tf32": 494.5 * T, "bf16": 989.5 * T,
                                     "fp16": 989.5 * T}),
    PeakFlops(r"A100", "A100", {"fp64": 9.7 * T, "fp32": 19.5 * T, "tf32": 156 * T, "bf16": 312 * T, "fp16": 312 * T}),
    PeakFlops(r"L40S", "L40S", {"fp32": 91.6 * T, "tf32": 183 * T, "bf16": 362 * T, "fp16": 362 * T}),
    PeakFlops(r"\bL4\b", "L4", {"fp32": 30.3 * T, "tf32": 60 * T, "bf16": 121 * T, "fp16": 121 * T}),
    PeakFlops(r"V100.*SXM", "V100 SXM2", {"fp64": 7.8 * T, "fp32": 15.7 * T, "fp16": 125 * T}),
    PeakFlops(r"V100", "V100 PCIe", {"fp64": 7 * T, "fp32": 14 * T, "fp16": 112 * T}),
    PeakFlops(r"\bT4\b", "T4", {"fp32": 8.1 * T, "fp16": 65 * T}),
)


def model_dtype(model) -> torch.dtype:
    """The floating-point type most of the model's parameters (or tensor attributes) hold."""
    counts: dict = {}
    modules = model.modules() if hasattr(model, "modules") else []
    tensors = [p for m in modules for p in m.parameters()]
    tensors += [v for v in vars(model).values() if isinstance(v, torch.Tensor)]
    for t in tensors:
        if t.is_floating_point():
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel()
    return max(counts, key=counts.get) if counts else torch.get_default_dtype()


def number_format(dtype: torch.dtype) -> str:
    if dtype == torch.float64:
        return "fp64"
    if dtype == torch.bfloat16:
        return "bf16"
    if dtype == torch.float16:
        return "fp16"
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "fp32"


def device_peak_flops(device, dtype: torch.dtype, name: Optional[str] = None) -> tuple:
    """(peak FLOP/s or None, details saying where it came from or why it is unknown)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None, {"peak_unknown": "the harness knows no peak FLOP/s for a CPU (it depends on the core count, "
                                      "SIMD width and clock), so the fraction of peak is left out"}
    name = name if name is not None else device_name(device)
    fmt = number_format(dtype)
    for entry in PEAK_FLOPS:
        if re.search(entry.pattern, name, flags=re.IGNORECASE):
            if fmt in entry.flops:
                return entry.flops[fmt], {"peak_flops": entry.flops[fmt], "peak_format": fmt, "peak_gpu": entry.label,
                                          "peak_source": "vendor datasheet, dense (no sparsity)"}
            return None, {"peak_unknown": f"no {fmt} peak listed for {entry.label}"}
    return None, {"peak_unknown": f"{name!r} is not in the harness's table of GPU peak FLOP/s"}

