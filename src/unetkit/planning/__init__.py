"""Planning: a training plan fitted to the data (its fingerprint) and to the time budget on this
machine (its measured speed). ``unetkit plan DATA`` prints one; ``unetkit train DATA`` follows one
unless a config or ``--no-plan`` is given.

This layer sits above ``training/`` (the probe times the trainer's own step) and below the
commands; nothing below imports it.
"""

from .planner import DEFAULT_BUDGET_MINUTES, Decision, Plan, make_plan
from .probe import Candidate, Measurement, cache_path
from .topology import anisotropic_topology

__all__ = [
    "DEFAULT_BUDGET_MINUTES",
    "Candidate",
    "Decision",
    "Measurement",
    "Plan",
    "anisotropic_topology",
    "cache_path",
    "make_plan",
]
