"""The layout of a run folder that holds more than one model: what ``unetkit train --folds K``
writes and what ``unetkit predict RUN_DIR`` reads, in one place for both.

::

    RUN_DIR/checkpoints/best.pt          one model (a normal run folder)
    RUN_DIR/fold_0/ … fold_{K-1}/        a cross-validation ensemble: each fold a normal run folder
    RUN_DIR/ensemble.json                written last, atomically, once every fold has finished:
                                         folds, checkpoints, each fold's best metric and their mean

Standard library only (``unetkit predict`` resolves its models before torch is imported).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence, Union

from .errors import DataError
from .utils import atomic_write_text, jsonable

PathLike = Union[str, Path]
ENSEMBLE_FILE = "ensemble.json"
ENSEMBLE_VERSION = 1
#: a run's best checkpoint, relative to its run folder
BEST = Path("checkpoints") / "best.pt"


def fold_dir(run_dir: PathLike, fold: int) -> Path:
    """The run folder of fold ``fold`` inside the ensemble folder ``run_dir``."""
    return Path(run_dir) / f"fold_{int(fold)}"


def fold_index(path: Path) -> Optional[int]:
    """``fold_3`` → 3; ``None`` for any other folder name."""
    head, _, tail = path.name.partition("_")
    return int(tail) if head == "fold" and tail.isdigit() else None


def write_ensemble(run_dir: PathLike, members: Sequence[dict], metric: str) -> dict:
    """Write ``RUN_DIR/ensemble.json`` atomically and return what was written.

    Args:
        members: one dict per fold, in fold order: ``fold``, ``best`` (the trainer's best record:
            ``epoch``, ``value`` …, or ``None``) and any other JSON values (``epochs``,
            ``stop_reason``) kept as they are; ``run_dir`` and ``checkpoint`` are set here,
            relative to ``run_dir``.
        metric: the validation value that chose each fold's ``best.pt`` (``train.select_metric``).

    The record: ``folds``, ``select_metric``, ``checkpoints`` (relative to ``run_dir``),
    ``members`` (with ``checkpoint`` and ``best`` per fold), ``mean`` and ``std`` of the folds' best
    values (``None`` when no fold validated).
    """
    run_dir = Path(run_dir)
    rows, values = [], []
    for m in members:
        rel = fold_dir(".", m["fold"])  # relative: the folder may be moved or copied
        row = {**m, "run_dir": rel.as_posix(), "checkpoint": (rel / BEST).as_posix()}
        rows.append(row)
        value = (m.get("best") or {}).get("value")
        if value is not None and math.isfinite(value):
            values.append(float(value))
    mean = sum(values) / len(values) if values else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) if values else None
    record = {
        "version": ENSEMBLE_VERSION,
        "folds": len(rows),
        "select_metric": metric,
        "checkpoints": [r["checkpoint"] for r in rows],
        "members": rows,
        "mean": mean,
        "std": std,
    }
    record = jsonable(record)  # strict JSON: a NaN metric becomes null
    atomic_write_text(run_dir / ENSEMBLE_FILE, json.dumps(record, indent=2) + "\n")
    return record


def refresh_fold(run_dir: PathLike, best: Optional[dict], epochs: int, stop_reason: str) -> bool:
    """After a fold of a finished ``--folds`` run trained on (``--resume RUN/fold_k``), its row of
    the ensemble's ``ensemble.json`` (best record, epochs, why it stopped) and the folds' mean and
    std are rewritten, so that the record and the weak-fold warning speak of the models predict
    averages. ``False`` (nothing written) when ``run_dir`` is no fold of an ensemble with a
    readable ``ensemble.json`` listing it."""
    run_dir = Path(run_dir).resolve()  # "--resume ." names the fold by its full path
    k, manifest = fold_index(run_dir), run_dir.parent / ENSEMBLE_FILE
    if k is None or not manifest.is_file():
        return False
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        members = [dict(m) for m in record["members"]]
        metric = str(record.get("select_metric") or "")
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return False
    rows = [m for m in members if m.get("fold") == k]
    if not rows:
        return False
    rows[0].update(best=best, epochs=int(epochs), stop_reason=stop_reason)
    write_ensemble(run_dir.parent, members, metric)
    return True


def incomplete_folds_warning(folder: PathLike) -> Optional[str]:
    """One line saying that a ``--folds`` run did not finish (no ``ensemble.json``) when predict
    is to average its folds: how many of its K folds (from a fold's ``splits.json``) have a model,
    and how to train the others. ``None`` for a finished run or a folder that is no ensemble."""
    folder = Path(folder)
    if not folder.is_dir() or (folder / ENSEMBLE_FILE).is_file():
        return None
    folds = sorted((d for d in folder.iterdir() if fold_index(d) is not None), key=fold_index)
    if not folds:
        return None
    expected = 0
    for d in folds:
        try:
            splits = json.loads((d / "splits.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            continue
        if isinstance(splits, list):
            expected = max(expected, len(splits))
    have = [fold_index(d) for d in folds if (d / BEST).is_file()]
    expected = max(expected, max(fold_index(d) for d in folds) + 1)
    missing = [i for i in range(expected) if i not in have]
    # stopped part-way (Ctrl-C, a kill, an error): their train.log's last line says how to go on
    cut = [i for i in range(expected) if _stopped_part_way(fold_dir(folder, i))]
    if not missing and not cut:
        return (
            f"{folder} has no {ENSEMBLE_FILE} (its --folds run did not finish, or its folds were "
            f"trained one by one): averaging its {len(have)} fold(s)"
        )
    ways = [f"unetkit train --resume {fold_dir(folder, i)}" for i in cut[:1]]
    fresh = [i for i in missing if i not in cut]
    config = next((d / "config.yaml" for d in folds if (d / "config.yaml").is_file()), None)
    if fresh:  # the same run's settings and split, for the fold that never started
        ways.append(
            f"unetkit train --config {config} --fold {fresh[0]} --run-dir "
            f"{fold_dir(folder, fresh[0])}"
            if config is not None
            else f"unetkit train DATA --num-folds {expected} --fold {fresh[0]} --run-dir "
            f"{fold_dir(folder, fresh[0])}"
        )
    said = []
    if missing:
        said.append(f"fold(s) {', '.join(map(str, missing))} have none")
    if [i for i in cut if i in have]:
        said.append(f"fold(s) {', '.join(str(i) for i in cut if i in have)} stopped part-way")
    return (
        f"{folder} is a {expected}-fold run that did not finish: averaging the {len(have)} "
        f"fold(s) with a model ({', '.join(map(str, have)) or 'none'}); {'; '.join(said)} "
        f"(to finish: {'; '.join(repr(w) for w in ways)})"
    )


def last_ending(run_dir: PathLike, session: bool = False) -> Optional[str]:
    """The last ``ended:`` line of a run's ``train.log`` (``None``: no log, or a run that never
    ended, such as one killed at once). ``session``: of its last session only (the lines after
    the last ``run folder:`` header line), so that a resumed session killed without an ending
    does not read as the one before it."""
    try:
        lines = (Path(run_dir) / "train.log").read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if session:
        starts = [i for i, line in enumerate(lines) if line.startswith("run folder:")]
        lines = lines[starts[-1] :] if starts else lines
    ended = [line for line in lines if line.startswith("ended:")]
    return ended[-1] if ended else None


def _stopped_part_way(run_dir: Path) -> bool:
    """Whether a run's ``train.log`` ends with an ``ended:`` line that says how to continue it
    (``--resume``): stopped by Ctrl-C, a kill or an error after a checkpoint."""
    ended = last_ending(run_dir)
    return ended is not None and "--resume" in ended


def folder_not_file(folder: PathLike) -> str:
    """What to say where one checkpoint file is wanted (export, ``--init-from``) and a folder was
    given: its own ``best.pt`` when it is a run folder, one fold's for a ``--folds`` run (only
    predict uses an ensemble whole), else the usual path."""
    folder = Path(folder)
    if not folder.is_dir():
        return "is not a checkpoint file (a .pt file unetkit train wrote)"
    if (folder / BEST).is_file():
        return f"is a run folder, not a checkpoint file; give its model, {folder / BEST}"
    folds = sorted(
        (d for d in folder.iterdir() if fold_index(d) is not None and (d / BEST).is_file()),
        key=fold_index,
    )
    if folds:
        return (
            f"is a --folds run ({len(folds)} models, which only predict uses together), not a "
            f"checkpoint file; give one fold's model, e.g. {folds[0] / BEST}"
        )
    return "is a folder, not a checkpoint file; give the .pt file (e.g. RUN/checkpoints/best.pt)"


def check_new_run_dir(run_dir: PathLike, python: bool = False) -> None:
    """Refuse a run folder that holds a trained run (a checkpoint, or a ``--folds`` run's): a new
    run would replace its checkpoints and config. A folder whose run never saved a checkpoint
    (killed in its first epoch) is taken again, as the same command would make it.

    Args:
        run_dir: the folder a new run is to use.
        python: say the fix as a Python caller gives it (``Trainer.resume``), not as flags.

    Raises:
        DataError: naming the folder, with the way to continue it.
    """
    run_dir = Path(run_dir)
    own = sorted((run_dir / "checkpoints").glob("*.pt"))
    folds = sorted(
        (
            d
            for d in run_dir.iterdir()
            if fold_index(d) is not None and any((d / "checkpoints").glob("*.pt"))
        )
        if run_dir.is_dir()
        else [],
        key=fold_index,
    )
    if not own and not folds and not (run_dir / "ensemble.json").is_file():
        return
    resume = "Trainer.resume({!r})" if python else "--resume {}"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        way = f"continue it with {resume.format(str(run_dir))}"
    elif folds:
        way = f"continue a fold with {resume.format(str(folds[0]))}"
    elif own:
        start = "train.init_from =" if python else "--init-from"
        way = f"start from its weights with {start} {own[0]}"
    else:
        way = "choose another"
    new = "run_dir" if python else "--run-dir"
    raise DataError(f"holds a trained run already; give a new {new}, or {way}", run_dir)


def run_checkpoints(folder: PathLike) -> list[Path]:
    """The checkpoints a run folder stands for: every checkpoint its ``ensemble.json`` lists; else
    ``fold_*/checkpoints/best.pt`` (the folds of a ``--folds`` run that did not finish, in fold
    order); else its own ``checkpoints/best.pt``.

    Raises:
        DataError: none of these, an unreadable ``ensemble.json``, or a checkpoint it lists is
            missing; naming the path.
    """
    folder = Path(folder)
    manifest = folder / ENSEMBLE_FILE
    if manifest.is_file():
        try:
            listed = json.loads(manifest.read_text(encoding="utf-8"))["checkpoints"]
            paths = [folder / str(c) for c in listed]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"unreadable ensemble manifest ({type(exc).__name__}: {exc})", manifest
            ) from None
        for p in paths:
            if not p.is_file():
                raise DataError(f"listed in {manifest} but missing", p)
        if not paths:
            raise DataError("lists no checkpoints", manifest)
        return paths
    folds = sorted(
        (d for d in folder.iterdir() if fold_index(d) is not None and (d / BEST).is_file()),
        key=fold_index,
    )
    if folds:
        return [d / BEST for d in folds]
    if (folder / BEST).is_file():
        return [folder / BEST]
    if (folder / "config.yaml").is_file():  # a run of its own, without a model yet
        last = folder / "checkpoints" / "last.pt"
        raise DataError(
            "is a run folder without a checkpoints/best.pt yet"
            + (
                f" (its latest epoch is {last}: give that file to use it)"
                if last.is_file()
                else " (still in its first epoch, or stopped before it ended): wait for its "
                "first epoch, or train it again"
            ),
            folder,
        )
    raise DataError(
        "is a folder, not a checkpoint file or a run folder (it has no checkpoints/best.pt and no "
        "fold_*/checkpoints/best.pt); give a .pt file or a run folder",
        folder,
    )


#: a fold whose best validation value is under this share of the best fold's is called out: it
#: most likely failed to train (a diverged or collapsed run), and the ensemble's mean includes it
WEAK_FOLD_SHARE = 0.5


def weak_folds_warning(folder: PathLike) -> Optional[str]:
    """One line naming the folds of a ``--folds`` run whose validation score lies far under the
    best fold's (:data:`WEAK_FOLD_SHARE`), with the models to give instead; ``None`` when the
    folds agree, the folder is no ensemble, or its metric is one where lower is better."""
    manifest = Path(folder) / ENSEMBLE_FILE
    if not Path(folder).is_dir() or not manifest.is_file():
        return None
    try:
        record = json.loads(manifest.read_text(encoding="utf-8"))
        metric = str(record.get("select_metric") or "")
        scores = {int(m["fold"]): (m.get("best") or {}).get("value") for m in record["members"]}
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return None
    # a fold that never validated (no best record, or NaN) counts as failed
    scores = {
        k: float(v) if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")
        for k, v in scores.items()
    }
    valid = [v for v in scores.values() if math.isfinite(v)]
    lower_is_better = metric.endswith(("loss", "error"))  # as the trainer reads the metric
    if lower_is_better or len(scores) < 2 or not valid or max(valid) <= 0:
        return None
    best = max(valid)
    weak = sorted(k for k, v in scores.items() if not v >= WEAK_FOLD_SHARE * best)
    if not weak:
        return None
    good = [k for k in sorted(scores) if k not in weak]
    shown = ", ".join(
        f"fold {k} {scores[k]:.3f}" if math.isfinite(scores[k]) else f"fold {k} none"
        for k in sorted(scores)
    )
    others = ",".join(str(fold_dir(folder, k) / BEST) for k in good)
    return (
        f"{metric} per fold: {shown}; fold(s) {', '.join(map(str, weak))} most likely failed to "
        f"train and the mean of the folds includes them; to leave them out, predict with {others}"
    )


def model_files(spec: str) -> list[Path]:
    """The model files that ``unetkit predict``'s MODEL argument names: a checkpoint (``.pt``), an
    exported ``.onnx``, a bioimage.io package (``.zip``), a run folder (see
    :func:`run_checkpoints`), or several of these joined by commas (``a.pt,b.pt``; a path that
    exists is never split, commas and all).

    Raises:
        DataError: a file or folder that does not exist or stands for no checkpoint, or a model
            named twice (it would count twice in the mean), naming it.
    """
    text = str(spec)
    parts = [text] if Path(text).exists() or "," not in text else text.split(",")
    files: list[Path] = []
    for part in (p.strip() for p in parts):
        if not part:
            continue
        path = Path(part)
        if not path.exists():
            kind = {".onnx": "ONNX model", ".zip": "bioimage.io package"}
            raise DataError(f"{kind.get(path.suffix.lower(), 'checkpoint')} not found", path)
        files += run_checkpoints(path) if path.is_dir() else [path]
    if not files:
        raise DataError("no model named: give a checkpoint, a run folder or a.pt,b.pt", text)
    seen: dict = {}
    for f in files:
        key = f.resolve()
        if key in seen:
            raise DataError(
                f"is named twice in {text} (as {seen[key]} and {f}): an ensemble would count it "
                "twice in its mean; name each model once",
                f,
            )
        seen[key] = f
    return files


def is_saved_weights(path: PathLike) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote (a checkpoint or a state dict: its zip
    format, or a legacy pickle), which a command must not overwrite with an export. TorchScript
    archives do not count. Standard library only: ``unetkit export`` checks its output before
    torch is imported."""
    import zipfile

    path = Path(path)
    if not path.is_file():
        return False
    with open(path, "rb") as handle:
        head = handle.read(4)
    if head[:1] == b"\x80":  # a pickle: torch.save(..., _use_new_zipfile_serialization=False)
        return True
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    pickled = any(n.endswith("/data.pkl") for n in names)
    return pickled and not any(n.endswith("/constants.pkl") for n in names)


def _hash_files(files: Sequence[Path]):
    """A SHA-256 fed each file's contents in turn, each followed by a zero byte."""
    import hashlib

    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest


def model_digest(files: Sequence[Path]) -> str:
    """What identifies a model for the outputs it wrote: the SHA-256 of its file's contents (a
    checkpoint retrained in place gets another; a run folder moved keeps its own); an ensemble's,
    of its members' digests sorted, since members given in another order average to the same
    probabilities."""
    import hashlib

    if len(files) == 1:
        return _hash_files(files).hexdigest()
    members = sorted(_hash_files([path]).hexdigest() for path in files)
    return hashlib.sha256("".join(members).encode()).hexdigest()


def ordered_model_digest(files: Sequence[Path]) -> str:
    """The digest output folders recorded for an ensemble before it was order-independent (its
    files' contents one after the other, in the order given): a folder written then is adopted
    by a rerun (:func:`~unetkit.inference.batch.adopt_record`), not refused as another model's."""
    return _hash_files(files).hexdigest()


__all__ = [
    "BEST",
    "ENSEMBLE_FILE",
    "WEAK_FOLD_SHARE",
    "fold_dir",
    "fold_index",
    "folder_not_file",
    "incomplete_folds_warning",
    "is_saved_weights",
    "model_digest",
    "model_files",
    "ordered_model_digest",
    "refresh_fold",
    "run_checkpoints",
    "weak_folds_warning",
    "write_ensemble",
]
