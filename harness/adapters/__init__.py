"""Objects from the user's own code, measured without a plugin: ``--model py:PACKAGE.MODULE:FACTORY`` and
``evaluate-samples --generator py:PACKAGE.MODULE:FUNCTION`` (docs/evaluating.md).

- :mod:`~harness.adapters.reference`: the ``py:`` reference, importing it with clear errors, its version;
- :mod:`~harness.adapters.factory`: how a factory is called and the hyperparameters its signature declares;
- :mod:`~harness.adapters.model`: the duck-typed model (``log_prob``, ``sample`` / ``rsample`` /
  ``generate``, ``fit``, state);
- :mod:`~harness.adapters.checks`: the plan-time checks on a probe batch, and the seeding check;
- :mod:`~harness.adapters.plugin`: the runtime plugin that registers a model per reference;
- :mod:`~harness.adapters.planning`: a command's references registered, its jobs checked;
- :mod:`~harness.adapters.stream`: samples streamed from a generator function.
"""

from harness.adapters.planning import Adapted, register
from harness.adapters.reference import is_reference, parse

__all__ = ["Adapted", "is_reference", "parse", "register"]
