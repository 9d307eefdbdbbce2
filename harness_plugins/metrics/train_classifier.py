"""The command that reproduces the classifier weights by training them deterministically.

``python -m harness_plugins.metrics.train_classifier NAME [--out FILE] [--data-root DIR]`` trains a
classifier of :mod:`harness_plugins.metrics.classifiers` and writes its weights file.

Deterministic: fixed seeds (``torch.manual_seed``, a seeded data order), one thread,
``torch.use_deterministic_algorithms(True)``; harness_plugins/metrics/weights/README.md gives the
recipe and what a retraining reproduces on another machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from harness_plugins.metrics.classifiers import (CLASSIFIER_SHA256, RECIPES, TRAIN_COMMAND, SmallCNN,
                                                 classifier_weights_path, recipe_network, sha256_file)


def _unit_images(split, levels: int) -> torch.Tensor:
    return split.x.float() / (levels - 1)


def _accuracy(net: SmallCNN, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        pred = torch.cat([net(b).argmax(1) for b in x.split(1000)])
    return float((pred == y).double().mean())


def train_classifier(name: str, out_path=None, data_root=None) -> dict:
    """Train classifier ``name`` from scratch, deterministically (fixed seeds, one thread), on the
    training split of its dataset: every image twice, as grey levels scaled to [0, 1] and binarised at
    1/2 (exactly the ``-binary`` view of the same split). Writes the weights file and returns its
    metadata (accuracies on validation and test splits, grey and binarised, and the file's sha256)."""
    threads, deterministic = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG state untouched
            return _train_classifier(name, out_path, data_root)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def _train_classifier(name: str, out_path, data_root) -> dict:
    from harness.data import provenance_hash
    from harness.host import get_host

    recipe = RECIPES[name]
    torch.manual_seed(recipe.seed)
    spec = get_host().dataset(recipe.dataset)
    splits = spec.load(data_root)
    levels = int(spec.levels)

    def views(split):
        grey = _unit_images(split, levels)
        return grey, (grey >= 0.5).float()

    train_grey, train_binary = views(splits.train)
    x = torch.cat([train_grey, train_binary])
    y = torch.cat([splits.train.y, splits.train.y])

    net = recipe_network(recipe)
    optimiser = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    order = torch.Generator().manual_seed(recipe.seed)
    for _ in range(recipe.epochs):
        net.train()
        for idx in torch.randperm(len(x), generator=order).split(recipe.batch_size):
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    net.eval()
    with torch.no_grad():
        pre = torch.cat([net.pre_activations(batch) for batch in x.split(1000)])
    net.feature_mean.copy_(pre.mean(0))
    net.feature_scale.copy_(pre.std(0).clamp_min(1e-6))

    accuracy = {}
    for split_name in ("val", "test"):
        split = getattr(splits, split_name)
        grey, binary = views(split)
        accuracy[f"{split_name}_grey"] = _accuracy(net, grey, split.y)
        accuracy[f"{split_name}_binary"] = _accuracy(net, binary, split.y)
    metadata = {
        "name": name,
        "dataset": recipe.dataset,
        "train_data_sha256": provenance_hash(splits),
        "recipe": repr(recipe),
        "command": f"{TRAIN_COMMAND} {name}",
        "torch": str(torch.__version__),
        **{f"accuracy_{k}": v for k, v in accuracy.items()},
    }
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    out_path = Path(out_path) if out_path is not None else classifier_weights_path(name)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out_path.parent, delete=False) as tmp:
        torch.save({"format": 1, "state_dict": state, "metadata": metadata}, tmp)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, out_path)
    return dict(metadata, sha256=sha256_file(out_path), path=str(out_path),
                parameters=sum(p.numel() for p in net.parameters()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=TRAIN_COMMAND,
                                     description="Reproduce the weights of a classifier used as a feature extractor: "
                                                 "train it deterministically and write its weights file.")
    parser.add_argument("name", choices=sorted(RECIPES))
    parser.add_argument("--out", help="output file (default: the packaged weights/<name>.pt)")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    info = train_classifier(args.name, args.out, args.data_root)
    for key, value in info.items():
        print(f"{key}: {value}")
    recorded = CLASSIFIER_SHA256.get(args.name)
    if info["sha256"] != recorded:
        print(f"note: sha256 differs from the recorded {recorded or '(none)'}; update CLASSIFIER_SHA256 and "
              f"harness_plugins/metrics/weights/README.md if these weights are to be used", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
