"""A model's fitted state as named tensors: the default export and restore of module and tensor
attributes, so a fitted model outlives its job in a format that loads without running code."""

from __future__ import annotations

from typing import Mapping

import torch


def export_attributes(obj) -> dict:
    """``{name: tensor}`` on the CPU: the ``state_dict`` of every module attribute of ``obj`` (keys
    ``attr.param``) and every tensor attribute (key ``attr``)."""
    state = {}
    for name, value in sorted(vars(obj).items()):
        if isinstance(value, torch.nn.Module):
            state.update({f"{name}.{k}": v.detach().cpu() for k, v in value.state_dict().items()})
        elif isinstance(value, torch.Tensor):
            state[name] = value.detach().cpu()
    return state


def restore_attributes(obj, state: Mapping[str, torch.Tensor]) -> None:
    """Load :func:`export_attributes`' output into ``obj``: modules strictly, tensors onto ``obj.device``;
    a key ``obj`` has no attribute for, or a tensor of another shape than the one it holds, is an error."""
    used = set()
    for name, value in sorted(vars(obj).items()):
        if isinstance(value, torch.nn.Module):
            prefix = f"{name}."
            sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            value.load_state_dict(sub, strict=True)
            used |= {prefix + k for k in sub}
    for key, tensor in state.items():
        if key in used:
            continue
        if "." in key or not hasattr(obj, key):
            raise KeyError(f"{type(obj).__name__} has no state {key!r}")
        current = getattr(obj, key)
        if isinstance(current, torch.Tensor) and current.shape != tensor.shape:
            raise ValueError(f"{type(obj).__name__} state {key!r} must have shape {tuple(current.shape)}, not "
                             f"{tuple(tensor.shape)}")
        setattr(obj, key, tensor.to(obj.device))
