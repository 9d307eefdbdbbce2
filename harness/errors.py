"""Exceptions that carry a user-facing meaning: a mistake the user can fix, a metric that cannot apply."""


class UserError(Exception):
    """A mistake the user can fix (bad name, missing file, bad option).

    The CLI prints its message without a traceback and exits with code 2.
    """


class MetricSkipped(Exception):
    """Raised by a metric's compute step when it cannot apply to this job for a reason only known at
    run time (e.g. a feature extractor's weights file is missing). The runner records the metric as
    skipped with ``str(exc)`` as the reason, not as a failure."""
