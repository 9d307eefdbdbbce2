"""The Boltzmann machines' NLL interval: nll_upper (its conservative end) and nll_bracket (its width).

``nll_upper``: the conservative end of a Boltzmann machine's NLL, beside ``nll`` (the AIS end), so the
NLL shows as an interval; ``nll_bracket`` is the interval's width.

``nll`` divides by the AIS estimate of Z, whose log is low in expectation: it errs optimistic.
``nll_upper`` comes from RAISE (:meth:`BoltzmannModel.raise_log_likelihood`), whose per-example
log-probabilities are low in expectation: it errs pessimistic. On the evaluation examples x_1..x_N,
with g(v) the machine's log p*(v) (what ``nll`` subtracts log Z from) and RAISE run on
n = ``raise_examples`` of them (``ctx.evaluation_split(n)``: a fixed random subset of the N),

    nll_upper = mean_N(-g) + mean_n(g - log p_raise),

the RAISE mean over all N written with g as a control variate: mean_n(g - log p_raise) is the log Z
that RAISE implies, which varies far less from example to example than log p_raise itself, so a
subset pins it down. With n = N it is mean_N(-log p_raise) exactly. Its standard error adds the two
means' standard errors in quadrature. ``nll_bracket`` = nll_upper - nll = implied log Z - AIS log Z,
with the RAISE mean's and the AIS standard errors in quadrature.

When log Z and log p*(v) are both exact, ``nll`` is exact, RAISE is not run, and both rows repeat it
with width 0 (kind ``exact``). For a ``dbm`` whose log p*(v) is the mean-field lower bound, ``nll``
is no longer a lower end (the bound raises it) while RAISE needs no log p*(v): the interval is then
indicative only, and details say so.

Both rows' protocol: the evaluation subset's, the machine's likelihood settings (how log Z is found:
the AIS temperatures and chains), and RAISE's temperatures, chains and examples where RAISE runs.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from harness import Capability, Measurement, MetricContext, MetricSpec, Output, Role, Tolerance

NATS = Tolerance(relative=0.02, absolute=0.05)
EVALUATION = ("split", "examples", "subset_seed")
OUTPUTS = (
    Output("nll_upper", "nats", higher_is_better=False, role=Role.LIKELIHOOD, order=11, tolerance=NATS,
           description="the conservative end of an EBM's nll: RAISE (reverse annealing), pessimistic in "
                       "expectation where nll (AIS) is optimistic", protocol=EVALUATION),
    Output("nll_bracket", "nats", higher_is_better=False, order=12, tolerance=Tolerance(absolute=0.25),
           description="nll_upper - nll: the width of an EBM's AIS / RAISE interval (0 when log Z is exact)",
           protocol=EVALUATION),
)


def _stderr(values: torch.Tensor) -> float:
    return float(values.std(unbiased=True) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def compute_nll_bracket(ctx: MetricContext) -> list:
    model = ctx.model
    data = ctx.evaluation_split()
    with torch.no_grad():
        ll = model.log_likelihood(data.x.to(model.device))
    log_p = ll.values.double().cpu()
    nll = float(-log_p.mean())
    n_all = len(log_p)
    details = {"split": "test", "nll": nll, "log_z_method": ll.details.get("log_z_method"),
               "log_p_unnormalized": ll.details.get("log_p_unnormalized")}
    protocol = {**ctx.evaluation_protocol(), **ll.protocol}
    if ll.kind.value == "exact":
        details["note"] = "log Z and log p*(v) are exact: the interval is a point"
        stderr = _stderr(log_p)
        return [Measurement("nll_upper", nll, estimator="exact", stderr=stderr, n=n_all, details=details,
                            protocol=protocol),
                Measurement("nll_bracket", 0.0, estimator="exact", stderr=0.0, n=n_all, details=details,
                            protocol=protocol)]
    log_z_ais = float(ll.details["log_z"])
    n = model.raise_examples(n_all)
    subset = ctx.evaluation_split(n) if n < n_all else data
    with torch.no_grad():
        g_subset = model.log_likelihood(subset.x.to(model.device)).values.double().cpu() + log_z_ais
        log_p_raise = model.raise_log_likelihood(subset.x).double().cpu()
    g = log_p + log_z_ais  # log p*(v): exact, or the dbm's mean-field bound
    implied = g_subset - log_p_raise  # per example: the log Z that RAISE implies
    log_z_raise = float(implied.mean())
    nll_upper = float(-g.mean()) + log_z_raise
    upper_err = math.sqrt(_stderr(g) ** 2 + _stderr(implied) ** 2)
    width_err = math.sqrt(_stderr(implied) ** 2 + float(ll.shared_stderr) ** 2)
    details.update({"log_z_ais": log_z_ais, "log_z_ais_stderr": float(ll.shared_stderr), "log_z_raise": log_z_raise,
                    "log_z_raise_stderr": _stderr(implied), "raise_examples": n, **model.raise_settings()})
    if ll.details.get("log_p_unnormalized") != "exact":
        details["note"] = ("log p*(v) is a mean-field lower bound, which raises nll: nll is not a lower end here "
                           "and the interval is indicative only")
    protocol.update({"raise_examples": n, **model.raise_settings()})
    return [Measurement("nll_upper", nll_upper, estimator="estimate", stderr=upper_err, n=n, details=details,
                        protocol=protocol),
            Measurement("nll_bracket", nll_upper - nll, estimator="estimate", stderr=width_err, n=n,
                        details=details, protocol=protocol)]


def _ebm_only(model_spec, dataset_spec) -> Optional[str]:
    if model_spec.family != "ebm":
        return f"nll_upper (RAISE) is reported for the ebm family; {model_spec.name} is {model_spec.family}"
    return None


def nll_bracket_metric() -> MetricSpec:
    return MetricSpec(
        name="nll_upper",
        compute=compute_nll_bracket,
        outputs=OUTPUTS,
        requires=[Capability.LOG_LIKELIHOOD],
        applies=_ebm_only,
        description="The conservative end of an EBM's NLL by reverse annealing (RAISE), beside nll (AIS), and the "
                    "interval's width (nll_bracket); both equal nll, width 0, when log Z is exact.",
    )

