"""Recompute every toy's entropy and print it beside the stored value.

``python -m harness_plugins.datasets.toy2d``; about a minute."""

import time

from harness_plugins.datasets.toy2d.entropy import compute_entropy
from harness_plugins.datasets.toy2d.toys import TOYS

for toy in TOYS:
    start = time.perf_counter()
    value, err = compute_entropy(toy)
    print(f"    {toy.name!r}: ({value!r}, {err!r}),  # stored ({toy.entropy!r}, {toy.entropy_error!r}); "
          f"{time.perf_counter() - start:.1f} s")
