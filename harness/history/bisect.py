"""Bisection: the commit between GOOD and BAD that changed a metric, found by measuring as few commits as
a binary search needs (:class:`harness.history.commit_runs.CommitRunner` measures one).

The candidates are BAD's first-parent history back to GOOD (a merge is one step: to look inside it,
bisect again between the merge's parents). GOOD and BAD are measured first; if they give the same value
there is nothing to find. Each commit in between is *bad* when its value is nearer BAD's than GOOD's,
else *good*; a commit that cannot be measured (its run failed, the model did not exist yet) is skipped,
as ``git bisect skip`` does, and the search goes on around it. The answer is the first bad commit, or,
when skipped commits leave it open, the commits it must be among.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

from harness.history.commit_runs import CommitRunner, Measured
from harness.history.git import Commit

GOOD, BAD, SKIPPED = "good", "bad", "skipped"
SIGNIFICANT_Z = 2.0  # below this many combined standard errors apart, GOOD and BAD may differ by noise


@dataclass
class Bisection:
    good: Commit
    bad: Commit
    chain: list  # Commit: after GOOD up to BAD, oldest first
    probes: dict = field(default_factory=dict)  # sha -> (Measured, verdict)
    first_bad: Optional[Commit] = None
    candidates: list = field(default_factory=list)  # Commit, when skipped commits leave the answer open
    message: str = ""
    caution: str = ""

    @property
    def found(self) -> bool:
        return self.first_bad is not None

    def rows(self) -> list:
        """One dict per measured commit, in history order."""
        out = []
        for c in [self.good, *self.chain]:
            if c.sha in self.probes:
                m, verdict = self.probes[c.sha]
                how = f"reused models of {m.reused_from[:10]}" if m.reused_from else m.how
                out.append({"commit": c.sha, "subject": c.subject or "", "how": how if m.value is not None else "",
                            "value": m.value, "stderr": m.stderr, "verdict": verdict, "reason": m.reason})
        return out

    def to_dict(self) -> dict:
        return {"good": self.good.sha, "bad": self.bad.sha, "found": self.found,
                "first_bad": None if self.first_bad is None else {"commit": self.first_bad.sha,
                                                                   "subject": self.first_bad.subject},
                "candidates": [c.sha for c in self.candidates], "message": self.message, "caution": self.caution,
                "measured": self.rows()}


def _z(a: Measured, b: Measured) -> Optional[float]:
    if a.stderr is None or b.stderr is None or not (math.isfinite(a.stderr) and math.isfinite(b.stderr)):
        return None
    spread = math.hypot(a.stderr, b.stderr)
    return math.inf if spread == 0 else abs(a.value - b.value) / spread


def _describe(m: Measured) -> str:
    return f"{m.value:.6g}" + (f" ± {m.stderr:.2g}" if m.stderr is not None else "")


def bisect(runner: CommitRunner, good: Commit, bad: Commit, chain: list,
           progress: Optional[Callable] = None) -> Bisection:
    """Find the commit of ``chain`` (after ``good``, ending at ``bad``) where the target metric changed;
    ``progress(Measured, verdict)`` is called after each commit is measured."""
    result = Bisection(good, bad, chain)
    shas = [good.sha] + [c.sha for c in chain]

    def measure(commit: Commit, index: int) -> Measured:
        nearest = sorted(shas, key=lambda s: abs(shas.index(s) - index))
        return runner.measure(commit, nearest)

    def record(m: Measured, verdict: str) -> None:
        result.probes[m.commit.sha] = (m, verdict)
        if progress is not None:
            progress(m, verdict)

    at_good = measure(good, 0)
    record(at_good, GOOD if at_good.value is not None else SKIPPED)
    at_bad = measure(bad, len(chain))
    record(at_bad, BAD if at_bad.value is not None else SKIPPED)
    for name, m in (("GOOD", at_good), ("BAD", at_bad)):
        if m.value is None:
            result.message = f"{name} ({m.commit.short}) could not be measured: {m.reason}"
            return result
    if at_good.value == at_bad.value:
        result.message = (f"GOOD and BAD give the same value ({_describe(at_good)}): nothing changed between them "
                          "for this metric")
        return result
    z = _z(at_good, at_bad)
    if z is not None and z < SIGNIFICANT_Z:
        result.caution = (f"GOOD ({_describe(at_good)}) and BAD ({_describe(at_bad)}) are only {z:.2g} standard "
                          "errors apart: the answer may follow noise; more seeds (--seeds) make it firmer")
    # Indices into [GOOD, *chain]: lo the last known good, hi the first known bad.
    lo, hi = 0, len(chain)
    skipped: set = set()
    while True:
        open_ = [i for i in range(lo + 1, hi) if i not in skipped]
        if not open_:
            break
        mid = min(open_, key=lambda i: (abs(i - (lo + hi) / 2), i))
        commit = chain[mid - 1]
        m = measure(commit, mid)
        if m.value is None:
            skipped.add(mid)
            record(m, SKIPPED)
            continue
        verdict = BAD if abs(m.value - at_bad.value) < abs(m.value - at_good.value) else GOOD
        record(m, verdict)
        lo, hi = (mid, hi) if verdict == GOOD else (lo, mid)
    between = [chain[i - 1] for i in range(lo + 1, hi + 1)]
    if len(between) == 1:
        result.first_bad = between[0]
        last_good = good if lo == 0 else chain[lo - 1]
        before, after = result.probes[last_good.sha][0], result.probes[between[0].sha][0]
        result.message = (f"first bad commit: {between[0].sha} {between[0].subject or ''}".rstrip()
                          + f"\n  {_describe(before)} at {last_good.short} (good), {_describe(after)} at "
                          f"{between[0].short}")
    else:
        result.candidates = between
        result.message = ("the change is in one of these commits (the others between could not be measured): "
                          + ", ".join(c.short for c in between))
    return result
