"""2-D toy densities with their true log-densities and entropies: the ``toy2d`` dataset plugin.

Every toy is one :class:`~harness_plugins.datasets.toy2d.toy.Toy` declaration in
:data:`~harness_plugins.datasets.toy2d.toys.TOYS`, registered here in that order, each tagged
``"toy2d"`` (models choose the toys by that tag). The modules: :mod:`.toy` (the declaration and the
splits), :mod:`.toys` (the toys), :mod:`.curves` (densities of noisy curves by quadrature),
:mod:`.pinwheel` (the pinwheel's change of variables) and :mod:`.entropy` (the entropies by 2-D
quadrature; ``python -m harness_plugins.datasets.toy2d`` recomputes them).
"""

from __future__ import annotations

from harness import hookimpl
from harness_plugins.datasets.toy2d.toys import TOYS


@hookimpl
def harness_register_datasets(register):
    for toy in TOYS:
        register(toy.spec())
