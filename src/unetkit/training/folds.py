"""Cross-validation ensembles: train every fold of a seeded k-fold split inside one time budget.

``train_folds(config)`` with ``train.folds = K`` runs one :class:`~unetkit.training.Trainer` per fold,
one after the other, into ``RUN_DIR/fold_0 … fold_{K-1}`` (each a normal run folder whose config has
``data.num_folds = K`` and ``data.fold = i``: the split of
:func:`~unetkit.data.splits.kfold_splits`, saved in every fold's ``splits.json``). A time budget is
shared out as the folds go: fold ``i`` gets what is left divided by the folds left, so a fold that
stops early leaves its time to the later ones. ``RUN_DIR/ensemble.json`` (:mod:`unetkit.run_folder`)
is written last; ``unetkit predict RUN_DIR`` averages the folds' probabilities.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Union

from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..run_folder import BEST, ENSEMBLE_FILE, fold_dir, write_ensemble
from .trainer import Trainer, TrainResult, _check_writable, _claim_run_name, run_name

#: a fold never gets less than this share of a minute, however little the earlier folds left
MIN_FOLD_MINUTES = 0.1


@dataclass
class FoldsResult:
    """What :func:`train_folds` returns: the ensemble folder, each fold's result, ``ensemble.json``."""

    run_dir: Path
    folds: list[TrainResult]
    record: dict


def fold_configs(config: RunConfig) -> list[RunConfig]:
    """The config of each fold of ``config`` (``train.folds = K``): ``data.num_folds = K``,
    ``data.fold = i``, ``train.folds = 1``; each validated."""
    k = config.train.folds
    return [
        config.override({"train.folds": 1, "data.num_folds": k, "data.fold": i}) for i in range(k)
    ]


def _check_cases(config: RunConfig, k: int) -> None:
    """The training folder can be read and holds at least ``k`` cases (read: the file names only)."""
    from ..data.discovery import scan_dataset

    found = scan_dataset(config.data.train_dir, mask_suffix=config.data.mask_suffix)
    if found.problems:
        raise found.error()
    if len(found.cases) < k:
        raise ConfigError(
            f"--folds {k} (train.folds) needs at least {k} cases, one per fold's validation; "
            f"{config.data.train_dir} has {len(found.cases)}"
        )


def _describe(i: int, k: int, result: TrainResult) -> str:
    best = result.best
    best_txt = (
        f"best {best['metric']} {best['value']:.4f} at epoch {best['epoch']}"
        if best
        else "no validation"
    )
    return (
        f"fold {i + 1}/{k} done: {result.stop_reason} after epoch {result.epochs_completed}; "
        f"{best_txt}; {result.run_dir / 'checkpoints' / 'best.pt'}"
    )


def train_folds(
    config: RunConfig,
    run_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
    plan: Optional[dict] = None,
    say: Callable[[str], None] = print,
    after_fold: Optional[Callable[[Trainer], None]] = None,
) -> FoldsResult:
    """Train the ``train.folds`` folds of ``config`` one after the other (module docstring).

    Everything is checked before the first fold starts: every fold's config, the number of cases,
    the ensemble folder (``run_dir``, default ``<output_dir>/<model>-<timestamp>``; its
    ``fold_*`` folders must not exist yet). A fold that fails keeps the folds finished before it
    (and its own folder once it wrote a checkpoint); ``ensemble.json`` is then not written.

    Args:
        config: a run config with ``train.folds`` ≥ 2 (and neither ``data.val_dir`` nor
            ``data.num_folds``). ``train.time_budget_minutes``, when set, is the budget of all folds.
        plan: the planner's decisions (``Plan.to_dict()``), kept with every fold as with one run.
        say: receives the per-fold and summary lines.
        after_fold: called with each fold's trainer once it finished (the train command checks
            the probe's cached timing against the fold's speed there).

    Raises:
        ConfigError: ``train.folds`` < 2, under torchrun, too few cases; DataError: the ensemble
            folder holds folds already, or the data cannot be read.
    """
    config = copy.deepcopy(config).validate()
    k = config.train.folds
    if k < 2:
        raise ConfigError(f"train.folds must be ≥ 2 to train folds, got {k} (use a Trainer)")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError(
            f"--folds {k} under torchrun is not supported: train each fold as its own run "
            f"(--num-folds {k} --fold i) or pass --folds 1"
        )
    configs = fold_configs(config)
    _check_cases(config, k)
    claimed: list = []  # the default-named ensemble folder and the folders made above it
    if run_dir is None:  # a name of its own, as a single run's: job arrays start in one second
        output_dir, name = Path(config.output_dir), run_name(config)
        made, missing = _claim_run_name(output_dir, name)
        run_dir = output_dir / (made or name)
        claimed = [run_dir, *missing] if made else []
    run_dir = Path(run_dir)
    _check_writable(run_dir)
    for taken in [fold_dir(run_dir, i) for i in range(k)] + [run_dir / ENSEMBLE_FILE]:
        if taken.exists():
            raise DataError(
                "exists already: choose a new ensemble folder (--run-dir/--output)", taken
            )

    budget = config.train.time_budget_minutes
    t0 = time.monotonic()
    say(
        f"cross-validation: {k} folds into {run_dir}"
        + (f", {budget:g} minutes shared out as they go" if budget is not None else "")
    )
    results: list[TrainResult] = []
    for i, cfg in enumerate(configs):
        if budget is not None:
            left = budget - (time.monotonic() - t0) / 60
            share = max(left / (k - i), MIN_FOLD_MINUTES)
            cfg = cfg.override({"train.time_budget_minutes": round(share, 3)})
            say(f"fold {i + 1}/{k}: {share:.1f} of the {max(left, 0):.1f} minutes left")
        try:
            trainer = Trainer(cfg, run_dir=fold_dir(run_dir, i), progress=progress, plan=plan)
            result = trainer.fit()
        except BaseException:
            modelled = [j for j in range(k) if (fold_dir(run_dir, j) / BEST).is_file()]
            if modelled:
                say(
                    f"fold {i + 1}/{k} did not finish; the {len(modelled)} fold(s) with a model "
                    f"({', '.join(f'fold_{j}' for j in modelled)}) stay in {run_dir} (no "
                    f"{ENSEMBLE_FILE}; 'unetkit predict {run_dir}' averages them and names the "
                    "folds to train)"
                )
            for folder in claimed:  # an ensemble folder claimed and left empty goes again
                try:
                    folder.rmdir()
                except OSError:
                    break
            raise
        results.append(result)
        say(_describe(i, k, result))
        if after_fold is not None:
            after_fold(trainer)

    record = write_ensemble(
        run_dir,
        [
            {
                "fold": i,
                "best": r.best,
                "epochs": r.epochs_completed,
                "stop_reason": r.stop_reason,
            }
            for i, r in enumerate(results)
        ],
        config.train.select_metric,
    )
    values = ", ".join(f"{r.best['value']:.4f}" if r.best else "none" for r in results)
    mean = (
        f"mean {record['mean']:.4f} ± {record['std']:.4f}"
        if record["mean"] is not None
        else "no fold validated"
    )
    say(
        f"cross-validated {config.train.select_metric}: {values} → {mean} over {k} folds "
        f"({(time.monotonic() - t0) / 60:.1f} min); {run_dir / ENSEMBLE_FILE}"
    )
    return FoldsResult(run_dir, results, record)


__all__ = ["FoldsResult", "fold_configs", "train_folds"]
