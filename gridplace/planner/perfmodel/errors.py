"""Errors of the performance model.

    PerfModelError (ValueError)       base of everything the performance model raises
        InvalidQuery                  a query outside the model's domain (batch < 1, derate > 1)
                                      carries .field and .value
        EfficiencyTableError          an efficiency table that does not parse or validate
                                      (the shipped one breaking is a bug)
        ProfileError                  a PerformanceProfile that cannot be applied (unknown model or
                                      GPU, a precision the GPU cannot run); carries .profile

A precision or engine a GPU cannot run is not an error: ``predict`` returns ``NotSupported`` with
the reason. Only the CLI maps these errors to exit codes.
"""

from __future__ import annotations


class PerfModelError(ValueError):
    """Base of the performance model's errors."""


class InvalidQuery(PerfModelError):
    """A query the model cannot price: the field, its value, and the rule it breaks."""

    def __init__(self, field: str, value: object, rule: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"{field}={value!r}: {rule}")


class EfficiencyTableError(PerfModelError):
    """The efficiency table (package data or a user file) is malformed."""


class ProfileError(PerfModelError):
    """A PerformanceProfile that cannot be applied, naming the profile."""

    def __init__(self, profile: str, message: str) -> None:
        self.profile = profile
        super().__init__(f"PerformanceProfile {profile!r}: {message}")
