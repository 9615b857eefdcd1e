"""What a finished planned run tells the probe's cache: a cached timing that the run beat by far was
taken on a busy machine, and is forgotten so the next plan on this machine times it again.

The commands call :func:`check_the_probe` after each run they train from a plan: ``unetkit train``
(one run, or each fold of ``--folds``) and the napari plugin's training job.
"""

from __future__ import annotations

import statistics
from typing import Optional

from .planner import Plan
from .probe import forget_if_contradicted, machine_key

#: epochs of the run whose speeds are compared (the first warms up: the median of three or more)
MIN_EPOCHS = 3


def check_the_probe(trainer) -> Optional[str]:
    """After a planned run on the machine it was planned on: forget a cached probe timing of the
    network it trained that the run beat by far
    (:func:`~unetkit.planning.probe.forget_if_contradicted`). Returns the line to tell the user,
    or ``None`` when nothing was forgotten (no plan, a run under torchrun, fewer than
    ``MIN_EPOCHS`` epochs, another machine or precision than the plan was timed on, a network the
    plan did not time).

    A network the plan estimated from another patch's timing (the probe's share used) is checked
    against that timing, scaled: a slow timing taken on a busy machine would otherwise never be
    compared with a run, and would shape every later plan here."""
    if not trainer.plan or trainer.dist.enabled:
        return None
    plan = Plan.from_dict(trainer.plan)
    key = plan.machine.get("key")
    rates = [r["images_per_s"] for r in trainer.history if r.get("images_per_s")]
    if (
        not plan.full_batch
        or len(rates) < MIN_EPOCHS
        or key != machine_key(trainer.device, trainer.autocast_dtype)
    ):
        return None
    cfg = trainer.config
    trained = (
        cfg.model.name,
        cfg.model.options.get("base_features"),
        cfg.model.options.get("depth"),
        list(cfg.data.patch_size or []),
        plan.full_batch,
    )
    for m in plan.measurements:
        timed = (
            m.get("model"),
            m.get("base_features"),
            m.get("depth"),
            list(m.get("patch") or []),
            m.get("batch_size"),
        )
        entry, factor = m.get("entry") or m.get("estimated_from"), float(m.get("factor") or 1.0)
        if timed != trained or not entry or not factor > 0:
            continue
        run_seconds = plan.full_batch / statistics.median(rates)
        forgotten = forget_if_contradicted(key, entry, run_seconds / factor)
        if forgotten is not None:
            said = f"{forgotten:.2f} s" if factor == 1 else f"{forgotten * factor:.2f} s (scaled)"
            return (
                f"probe: this run trained at {run_seconds:.2f} s per {plan.full_batch} images, the "
                f"cached timing of {entry} said {said} (timed on a busy machine?): forgotten, the "
                "next plan times it again"
            )
    return None


__all__ = ["MIN_EPOCHS", "check_the_probe"]
