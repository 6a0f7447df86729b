"""Out-of-memory trials: detect them, double their CPUs, record the rounds, merge the results.

``detect`` classifies errors, ``policy`` decides the next cpu_per_trial and the GPU share,
``rounds`` keeps the rounds manifest beside the experiment and ``merge`` gives each trial
config's final execution; none of them imports Ray at import time.
"""

from __future__ import annotations

from radas_flows.oom.detect import (
    classify_error,
    execution_outcome,
    oom_signature,
    read_trial_error,
)
from radas_flows.oom.merge import TrialHistory, final_index, merged_trials, recommendation_for
from radas_flows.oom.policy import (
    OutOfMemoryCapError,
    cap_failure_text,
    format_number,
    gpu_share,
    next_cpu_per_trial,
    plan_round,
    recommendation_text,
)
from radas_flows.oom.rounds import OomManifest, OomRound, max_oom_rounds, read_manifest

__all__ = [
    "OomManifest",
    "OomRound",
    "OutOfMemoryCapError",
    "TrialHistory",
    "cap_failure_text",
    "classify_error",
    "execution_outcome",
    "final_index",
    "format_number",
    "gpu_share",
    "max_oom_rounds",
    "merged_trials",
    "next_cpu_per_trial",
    "oom_signature",
    "plan_round",
    "read_manifest",
    "read_trial_error",
    "recommendation_for",
    "recommendation_text",
]
