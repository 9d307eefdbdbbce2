"""Helpers that stop a harness process at a chosen moment, for the crash and lock tests."""
