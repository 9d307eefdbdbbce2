"""A module of "a user's own code" that does not import (for tests/test_adapted.py)."""

import not_a_package_anyone_has  # noqa: F401


def factory(spec):
    return None
