"""The documented out-of-memory decisions, re-exported from their home :mod:`radas_flows.oom`."""

from radas_flows.oom import (
    OutOfMemoryCapError,
    cap_failure_text,
    classify_error,
    next_cpu_per_trial,
    read_trial_error,
    recommendation_text,
)

__all__ = [
    "OutOfMemoryCapError",
    "cap_failure_text",
    "classify_error",
    "next_cpu_per_trial",
    "read_trial_error",
    "recommendation_text",
]
