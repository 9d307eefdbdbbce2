"""What a conformance check found: one :class:`CheckResult` per check, gathered in a :class:`Report`.

A check has an identity ``subject`` (``model:laplace``, ``dataset:moons``, ``metric:nll``), a
``name`` (``normalised``, ``seed_reproducible``), and for models the ``data kind`` it was run on
(``[continuous]``); its ``status`` is ``passed``, ``failed`` or ``skipped`` (the check does not apply,
with the reason), and its ``message`` says what was measured against what.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


class CheckFailed(Exception):
    """Raised by a check with the message saying what was found against what was expected."""


class NotApplicable(Exception):
    """Raised by a check that does not apply, with the reason (the check is reported as skipped)."""


def run_check(check: Callable[[], str]) -> tuple:
    """``(status, message, seconds)`` of one check: passed with its message, skipped where it does not
    apply, failed where it found a problem or raised (a plugin's own error is a failed check, named)."""
    start = time.perf_counter()
    try:
        status, message = PASSED, check()
    except NotApplicable as exc:
        status, message = SKIPPED, str(exc)
    except CheckFailed as exc:
        status, message = FAILED, str(exc)
    except Exception as exc:
        status, message = FAILED, f"raised {type(exc).__name__}: {exc}"
    return status, message, time.perf_counter() - start


@dataclass
class CheckResult:
    subject: str  # "model:laplace", "dataset:moons", "metric:nll"
    name: str  # the check: "normalised", "seed_reproducible", ...
    status: str
    message: str = ""
    variant: Optional[str] = None  # the data kind of a model check ("continuous"), or None
    seconds: float = 0.0

    @property
    def id(self) -> str:
        """``model:laplace[continuous]::normalised``: names the check in messages and test ids."""
        where = f"{self.subject}[{self.variant}]" if self.variant else self.subject
        return f"{where}::{self.name}"

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def describe(self) -> str:
        return f"{self.id} {self.status}" + (f": {self.message}" if self.message else "")

    def as_dict(self) -> dict:
        return {"id": self.id, **asdict(self), "seconds": round(self.seconds, 3)}


@dataclass
class Report:
    results: list = field(default_factory=list)

    def add(self, result: CheckResult) -> CheckResult:
        self.results.append(result)
        return result

    def extend(self, results) -> None:
        self.results.extend(results)

    @property
    def failures(self) -> list:
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count against it)."""
        return not self.failures

    def counts(self) -> dict:
        out = {PASSED: 0, FAILED: 0, SKIPPED: 0}
        for r in self.results:
            out[r.status] += 1
        return out

    def find(self, subject: str, name: str, variant: Optional[str] = None) -> Optional[CheckResult]:
        return next((r for r in self.results if r.subject == subject and r.name == name and r.variant == variant),
                    None)

    def summary(self) -> str:
        c = self.counts()
        return f"{c[PASSED]} passed, {c[FAILED]} failed, {c[SKIPPED]} skipped"

    def failure_text(self) -> str:
        return "\n".join(r.describe() for r in self.failures)
