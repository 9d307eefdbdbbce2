"""The conformance kit's ``normalised`` check: a model's density integrates to 1.

The mass is the 2-D midpoint rule over a box around the training data for continuous 2-D data
(:func:`harness.testing.density.grid_integral`), or a sum over every state for tiny discrete and binary
spaces, each state scored :data:`REPLICATES` times (rows drawing their own noise) and averaged. It is
judged by the likelihood kind the model reports: ``exact`` must match the reference; ``bound`` may not
exceed it by more than :data:`BOUND_SLACK` (Monte-Carlo bounds such as IWAE or one dequantisation draw
are bounds on average, not draw by draw); ``estimate`` must match within 4 of its reported standard
errors plus :data:`ESTIMATE_SLACK` nats. The reference is 1 for an enumeration; for quadrature it is the
share of the model's own samples inside the box (1 for a model that does not sample), so mass in the
tails beyond the box is not counted against it.
"""

from __future__ import annotations

import math
from typing import Optional

from harness.contracts import DataKind, LikelihoodKind
from harness.testing.density import box, enumerable, enumeration_sum, grid_integral, inside
from harness.testing.results import CheckFailed, NotApplicable

BOX_SAMPLES = 4000  # samples whose share inside the quadrature box is the reference mass
BOX_SEED = 101  # the generator seed of those samples
REPLICATES = 16  # times each state is scored in an enumeration (averages Monte-Carlo bounds)
ENUMERATION_TOLERANCE = 1e-3  # |sum - 1| for an exact likelihood over every state (float32 rounding)
QUADRATURE_FLOOR = 0.01  # added to the quadrature's own error estimate
BOUND_SLACK = 0.03  # how far the mass of a Monte-Carlo bound may exceed the reference
ESTIMATE_SLACK = 0.05  # nats beyond 4 reported standard errors for an estimate


def check_normalised(checks) -> str:
    """The ``normalised`` check of one model on one data kind (``checks``: its
    :class:`~harness.testing.models.ModelKindChecks`), for p(x) and, for a conditional model, p(x | y) of
    classes 0 and 1."""
    if not checks.likelihood:
        raise NotApplicable(f"{checks.spec.name} declares no likelihood")
    cases = [("p(x)", None)]
    if checks.conditional:
        cases += [(f"p(x | y={c})", c) for c in (0, 1)]
    lines = []
    for what, label in cases:
        ok, line = _mass(checks, what, label)
        if not ok:
            raise CheckFailed(line)
        lines.append(line)
    return "; ".join(lines)


def _mass(checks, what: str, label: Optional[int]) -> tuple:
    """(whether the mass of ``what`` passes the rule of the kind reported, the line that says so)."""
    seen = []

    def log_prob(x):
        ll = checks.score(checks.model, x, None if label is None else checks.labels(len(x), label))
        seen.append(ll)
        return ll.values.detach().cpu().double()

    dim, shape = checks.dspec.dim, checks.dspec.event_shape
    if checks.kind is DataKind.CONTINUOUS and dim == 2:
        lo, hi = box(checks.splits.train.x)
        integral = grid_integral(log_prob, lo, hi, shape)
        reference, ref_err, ref_text = 1.0, 0.0, "1"
        if checks.samples:
            s = checks.draw(checks.model, BOX_SAMPLES, BOX_SEED, None if label is None else
                          checks.labels(BOX_SAMPLES, label))
            reference = float(inside(s, lo, hi).double().mean())
            ref_err = math.sqrt(reference * (1 - reference) / BOX_SAMPLES)
            ref_text = f"{reference:.4f}, the share of its {BOX_SAMPLES} samples inside the box"
        tolerance = integral.error + QUADRATURE_FLOOR + 4 * ref_err
    elif checks.kind is not DataKind.CONTINUOUS and enumerable(checks.dspec.levels, dim):
        integral = enumeration_sum(log_prob, int(checks.dspec.levels), shape, REPLICATES)
        reference, ref_text, tolerance = 1.0, "1", ENUMERATION_TOLERANCE
    else:
        raise NotApplicable(f"{checks.dspec.name} ({checks.kind.value}, {dim} dimensions) is neither 2-D continuous "
                            "nor a tiny discrete space")
    kind = seen[0].kind
    shared = max(float(ll.shared_stderr) for ll in seen)
    total = integral.value
    if kind is LikelihoodKind.EXACT:
        ok = abs(total - reference) <= tolerance
        rule = f"|mass - {ref_text}| <= {tolerance:.3g}"
    elif kind is LikelihoodKind.BOUND:
        ok = total <= reference + tolerance + BOUND_SLACK
        rule = f"mass <= {ref_text} + {tolerance + BOUND_SLACK:.3g} (a lower bound)"
    else:
        limit = 4 * shared + ESTIMATE_SLACK + math.log1p(tolerance)
        ok = total > 0 and reference > 0 and abs(math.log(total / reference)) <= limit
        rule = f"|log(mass / {ref_text})| <= {limit:.3g} (4 x shared_stderr {shared:.3g} + {ESTIMATE_SLACK})"
    line = (f"{what} ({kind.value}) over {integral.what}: mass {total:.4f}"
            + (f" (quadrature error {integral.error:.2g})" if integral.error else "") + f"; expected {rule}")
    return ok, line
