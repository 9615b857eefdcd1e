"""Evaluate a folder of predicted label images against a folder of truth masks.

:func:`evaluate_case` scores one case (arrays in, one row per class out); :func:`evaluate_folders`
matches files by stem, reads them with the truth's :class:`~unetkit.data.labels.LabelMap`, scores
every case and (with ``out_dir``) writes the per-case CSV, the summary JSON, a Markdown report,
box plots and overlays (:mod:`unetkit.evaluation.report`). ``unetkit evaluate`` is a thin shell
around :func:`evaluate_folders`.

Metric groups (``metrics=`` takes group names and/or single metric names):

========================  ==================================================================
``overlap``               dice, iou, precision, recall, specificity; ``pixel_error`` per case
``boundary``              hd, hd95, assd, nsd (spacing-aware; nsd at ``nsd_tolerance``)
``connectomics``          rand_error, rand_precision, rand_recall, voi_split, voi_merge, voi
``objects``               obj_precision, obj_recall, obj_f1 (IoU ≥ 0.5), ap50, ap75, map,
                          n_true, n_pred
``auc``                   ROC AUC of the class probability (needs ``prob_dir``)
========================  ==================================================================

Rows are per (case, foreground class): classes ``1 … K-1`` of the label map (ISBI 2012 with the
inferred map ``(0, 255)``: the cell interior 255; pass ``LabelMap([255, 0])`` to score the
membrane). Regions for the connectomics and object metrics are the connected components (face
connectivity) of the class, or the ids of instance masks (``instances=True``). A binary task whose
truth masks have an ``instances/`` folder beside them (same stems, one id per object, as MoNuSeg
ships them) scores its objects against those ids and the predicted components, so nuclei that touch
and merge in the binary mask count one by one (``summary["truth_objects"]`` says which). With a field of
view, overlap scores, the pixel error and AUC count only pixels inside it, and for the other
metrics everything outside it is background. The empty-truth / empty-prediction policy of every
metric is in :data:`POLICIES` (and in each summary JSON).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..errors import ConfigError, DataError
from ..io.naming import INSTANCES_SUFFIX, NPZ_KEY, is_side_file, probability_stem
from ..utils import check_output_dir
from . import boundary, connectomics, metrics, objects, roc
from .boundary import BOUNDARY_METRICS, boundary_scores
from .connectomics import CONNECTOMICS_METRICS, connectomics_scores
from .metrics import confusion_matrix, overlap_scores
from .objects import OBJECT_METRICS, label_objects, object_scores
from .roc import roc_auc

PathLike = Union[str, Path]

METRIC_GROUPS = {
    "overlap": ("dice", "iou", "precision", "recall", "specificity", "pixel_error"),
    "boundary": BOUNDARY_METRICS,
    "connectomics": CONNECTOMICS_METRICS,
    "objects": OBJECT_METRICS,
    "auc": ("auc",),
}
#: Computed when ``metrics`` is ``None`` (``auc`` too when probability maps are given).
DEFAULT_GROUPS = ("overlap", "boundary", "connectomics", "objects")
#: Metrics with one value per case rather than per class.
CASE_METRICS = ("pixel_error",)
#: Metrics where lower is better (the rest: higher is better; counts have no direction).
LOWER_IS_BETTER = frozenset(
    {"pixel_error", "hd", "hd95", "assd", "rand_error", "voi_split", "voi_merge", "voi"}
)
#: The empty-truth / empty-prediction policy of each metric group.
POLICIES = {
    "overlap": metrics.EMPTY_POLICY,
    "boundary": boundary.EMPTY_POLICY,
    "connectomics": connectomics.EMPTY_POLICY,
    "objects": objects.EMPTY_POLICY,
    "auc": roc.EMPTY_POLICY,
}
ALL_METRICS = tuple(m for group in METRIC_GROUPS.values() for m in group)


def resolve_metrics(
    names: Optional[Sequence[str]] = None, with_auc: bool = False
) -> tuple[str, ...]:
    """Metric names in canonical order from group names and/or metric names.

    Args:
        names: e.g. ``["overlap", "hd95"]``, ``["all"]``; ``None`` = :data:`DEFAULT_GROUPS` (plus
            ``auc`` when ``with_auc``). Comma-separated strings are split.
        with_auc: probability maps are available.

    Raises:
        ConfigError: an unknown name (the valid ones are listed), or ``auc`` without probabilities.
    """
    if names is None:
        wanted = set()
        for g in DEFAULT_GROUPS + (("auc",) if with_auc else ()):
            wanted.update(METRIC_GROUPS[g])
    else:
        if isinstance(names, str):
            names = [names]
        items = [t.strip() for n in names for t in str(n).split(",") if t.strip()]
        if not items:
            raise ConfigError(
                "no metric named; valid: " + ", ".join(("all", *METRIC_GROUPS, *ALL_METRICS))
            )
        wanted = set()
        for item in items:
            key = item.lower()
            if key == "all":
                wanted.update(ALL_METRICS if with_auc else (m for m in ALL_METRICS if m != "auc"))
            elif key in METRIC_GROUPS:
                wanted.update(METRIC_GROUPS[key])
            elif key in ALL_METRICS:
                wanted.add(key)
            else:
                raise ConfigError(
                    f"unknown metric {item!r}; valid groups: {', '.join(('all', *METRIC_GROUPS))}; "
                    f"metrics: {', '.join(ALL_METRICS)}"
                )
        if "auc" in wanted and not with_auc:
            raise ConfigError(
                "the auc metric needs probability maps (prob_dir / --probs DIR); predicted label "
                "images cannot be ranked"
            )
    return tuple(m for m in ALL_METRICS if m in wanted)


def _groups(names: Sequence[str]) -> set:
    return {g for g, members in METRIC_GROUPS.items() if set(members) & set(names)}


def _class_prob(prob: np.ndarray, c: int, num_classes: int) -> np.ndarray:
    if prob.shape[0] == num_classes:
        return prob[c]
    if prob.shape[0] == 1 and num_classes == 2:
        return prob[0] if c == 1 else -prob[0]
    raise ConfigError(
        f"probability map has {prob.shape[0]} channel(s); expected {num_classes} (one per class) "
        "or 1 (foreground of a binary task)"
    )


def evaluate_case(
    pred: np.ndarray,
    truth: np.ndarray,
    num_classes: int,
    *,
    metrics: Optional[Sequence[str]] = None,
    classes: Optional[Sequence[int]] = None,
    fov: Optional[np.ndarray] = None,
    spacing: Optional[Sequence[float]] = None,
    prob: Optional[np.ndarray] = None,
    truth_instances: Optional[np.ndarray] = None,
    pred_instances: Optional[np.ndarray] = None,
    connectivity: int = 1,
    pred_background: str = "singletons",
    nsd_tolerance: Optional[float] = None,
) -> list[dict[str, Any]]:
    """Score one case, class by class.

    Args:
        pred, truth: ``(*spatial)`` integer class indices ``0 … K-1`` (2D or 3D).
        num_classes: ``K``.
        metrics: metric or group names (see :func:`resolve_metrics`); ``None``: the defaults.
        classes: class indices to score (default ``1 … K-1``).
        fov: ``(*spatial)`` boolean field of view.
        spacing: pixel size per spatial axis for the distance metrics (default 1).
        prob: ``(K, *spatial)`` class probabilities, or ``(1, *spatial)`` foreground probability of
            a binary task; needed for ``auc``.
        truth_instances, pred_instances: ``(*spatial)`` instance ids (0 = background) used as the
            regions of class 1 instead of connected components (binary tasks only).
        connectivity: connectivity of the connected components (1 = face neighbours).
        pred_background: Rand/VOI convention for predicted background inside true cells (see
            :mod:`unetkit.evaluation.connectomics`).
        nsd_tolerance: the NSD tolerance in ``spacing`` units (default: one pixel of the finest
            axis; see :mod:`unetkit.evaluation.boundary`).

    Returns:
        One dict per class: ``class_index``, ``truth_pixels``, ``pred_pixels`` (inside the field
        of view) and a float per metric; ``pixel_error`` (a case value) is repeated in each.

    Example:
        >>> t = np.zeros((8, 8), int); t[2:6, 2:6] = 1
        >>> row = evaluate_case(t, t, 2, metrics=["dice", "hd95"])[0]
        >>> row["dice"], row["hd95"]
        (1.0, 0.0)
    """
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ConfigError(f"prediction shape {pred.shape} differs from truth shape {truth.shape}")
    names = resolve_metrics(metrics, with_auc=prob is not None)
    groups = _groups(names)
    if num_classes < 2:
        raise ConfigError(f"num_classes must be >= 2, got {num_classes}")
    classes = list(range(1, num_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"class indices {bad} outside 0..{num_classes - 1}")
    if fov is not None:
        fov = np.asarray(fov).astype(bool, copy=False)
        if fov.shape != truth.shape:
            raise ConfigError(
                f"field of view shape {fov.shape} differs from truth shape {truth.shape}"
            )
    given = [x is not None for x in (truth_instances, pred_instances)]
    if any(given) and (not all(given) or num_classes != 2):
        raise ConfigError(
            "instance ids need both truth_instances and pred_instances, and a binary task (K = 2)"
        )
    if prob is not None:
        prob = np.asarray(prob)
        if prob.ndim != truth.ndim + 1 or prob.shape[1:] != truth.shape:
            raise ConfigError(
                f"probability map shape {prob.shape} does not match (K, *{truth.shape})"
            )
    cm = confusion_matrix(pred, truth, num_classes, mask=fov)
    scores = overlap_scores(cm)
    rows = []
    for c in classes:
        t = truth == c
        p = pred == c
        if fov is not None:
            t &= fov
            p &= fov
        row: dict[str, Any] = {
            "class_index": c,
            "truth_pixels": int(cm[c].sum()),
            "pred_pixels": int(cm[:, c].sum()),
        }
        values: dict[str, float] = {}
        if "overlap" in groups:
            for m in ("dice", "iou", "precision", "recall", "specificity"):
                values[m] = float(scores[m][c])
            values["pixel_error"] = scores["pixel_error"]
        if "boundary" in groups:
            values.update(boundary_scores(p, t, spacing, nsd_tolerance=nsd_tolerance))
        if groups & {"connectomics", "objects"}:
            if truth_instances is not None and c == 1:
                ti = np.where(t, np.asarray(truth_instances), 0)
                pi = np.where(p, np.asarray(pred_instances), 0)
            else:
                ti, pi = label_objects(t, connectivity), label_objects(p, connectivity)
            if "connectomics" in groups:
                values.update(connectomics_scores(ti, pi, pred_background))
            if "objects" in groups:
                values.update(object_scores(ti, pi))
        if "auc" in groups:
            values["auc"] = roc_auc(_class_prob(prob, c, num_classes), truth == c, fov)
        row.update({m: values[m] for m in names})
        rows.append(row)
    return rows


@dataclass
class EvaluationResult:
    """What :func:`evaluate_folders` found.

    Attributes:
        rows: one dict per (case, class): ``case``, ``class`` (name), ``value`` (mask value),
            ``class_index``, ``truth_pixels``, ``pred_pixels`` and one float per metric.
        summary: the content of ``summary.json`` (statistics per class and metric, policies).
        label_map: the map used to read both folders.
        metrics: the metric names computed.
        cases: the case ids (file stems), sorted.
        files: what was written under ``out_dir``: ``{"csv", "summary", "report", "boxplots",
            "overlay_best", "overlay_worst"}`` → path (empty without ``out_dir``).
    """

    rows: list
    summary: dict
    label_map: Any
    metrics: tuple
    cases: list
    files: dict = field(default_factory=dict)

    @property
    def classes(self) -> list:
        return list(self.summary["classes"])

    def mean(self, metric: str, class_name: Optional[str] = None) -> float:
        """Mean of ``metric`` over cases: of one class (name), or the mean over classes.

        Raises:
            ConfigError: unknown metric or class.
        """
        if metric in CASE_METRICS and metric in self.summary["case"]:
            return float(self.summary["case"][metric]["mean"])
        if metric not in self.metrics:
            raise ConfigError(
                f"metric {metric!r} was not computed; computed: {', '.join(self.metrics)}"
            )
        if class_name is None:
            return float(self.summary["mean_over_classes"][metric])
        per = self.summary["per_class"]
        if str(class_name) not in per:
            raise ConfigError(f"unknown class {class_name!r}; classes: {', '.join(per)}")
        return float(per[str(class_name)][metric]["mean"])

    def format(self) -> str:
        """A text table: per class, mean ± std and median of each metric, with undefined/penalized counts."""
        from .report import summary_table

        return summary_table(self.summary, markdown=False)


def _list_images(folder: Path, what: str, extra_suffixes: tuple = ()) -> dict[str, Path]:
    """``{stem: path}`` of ``folder``'s image files (io.list_images); a missing folder, a duplicate stem or
    no image at all is an error naming the folder."""
    from ..io.readers import list_images

    if not folder.exists():
        raise DataError(f"{what} folder not found", folder)
    if not folder.is_dir():
        raise DataError(f"is a file; expected the {what} folder", folder)
    listing = list_images(folder, extra_suffixes)
    for stem, paths in list(listing.duplicates().items())[:1]:  # the first duplicate, named
        raise DataError(
            f"{len(paths)} {what} files share the stem {stem!r} ({', '.join(p.name for p in paths)}); "
            "keep one",
            folder,
        )
    if not listing.by_stem:
        raise DataError(f"no image files in the {what} folder", folder)
    return listing.first()


def _shortest_suffix(stems: Sequence[str], keys: set) -> Optional[str]:
    """The shortest ``s`` such that every stem is a key + ``s`` (``None`` when there is none); a
    digit after a key's digit continues its number (``10`` is not ``1`` + ``0``), so is no ``s``."""
    from ..data.discovery import continues_number

    common: Optional[set] = None
    for stem in stems:
        cands = {
            stem[len(k) :]
            for k in keys
            if stem.startswith(k) and not continues_number(k, stem[len(k) :])
        }
        common = cands if common is None else common & cands
        if not common:
            return None
    return min(common, key=len) if common else None


def _match(files: dict[str, Path], keys: set) -> dict[str, Path]:
    """``files`` keyed by case id: their stems when every id is among them, else (when every stem
    is an id + one common suffix such as ``_pred``) the stems without that suffix."""
    if keys <= set(files):
        return dict(files)
    suffix = _shortest_suffix(sorted(files), keys)
    if suffix:
        return {stem[: -len(suffix)]: path for stem, path in files.items()}
    return dict(files)


def _match_predictions(files: dict[str, Path], keys: set) -> dict[str, Path]:
    """:func:`_match`, then without the side files ``unetkit predict`` writes beside a prediction
    (``22_prob.tif``, ``22_overlay.png``; :func:`~unetkit.io.naming.is_side_file`)."""
    matched = _match(files, keys)
    present = keys & set(matched)
    return {stem: path for stem, path in matched.items() if not is_side_file(stem, present)}


def _match_probabilities(files: dict[str, Path], keys: set) -> dict[str, Path]:
    """``<case>_prob.*`` files (:func:`~unetkit.io.naming.probability_stem`, as ``unetkit predict``
    names them) when every case has one, else :func:`_match`."""
    if all(probability_stem(k) in files for k in keys):
        return {k: files[probability_stem(k)] for k in keys}
    return _match(files, keys)


def _read_probabilities(path: Path) -> np.ndarray:
    """``(K, *spatial)`` probabilities from an image file or a ``.npz`` (the array
    :data:`~unetkit.io.naming.NPZ_KEY`, or its only array)."""
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path) as data:
                key = (
                    NPZ_KEY
                    if NPZ_KEY in data.files
                    else (data.files[0] if len(data.files) == 1 else None)
                )
                if key is None:
                    raise DataError(
                        f"npz holds {', '.join(data.files)}; expected the array {NPZ_KEY!r}",
                        path,
                    )
                return np.asarray(data[key])
        except (OSError, ValueError) as exc:
            raise DataError(f"unreadable npz file ({exc})", path) from exc
    from ..io import read_image

    return read_image(path)[0]


def _ids_in(mask, label_map) -> int:
    """How many objects a truth mask (a file, or a folder of one file per object) numbers, read
    as the evaluation reads it."""
    from ..data.labels import read_mask

    _, ids, _ = read_mask(mask, label_map)
    return 0 if ids is None else int(np.count_nonzero(np.unique(ids)))


def _names(paths: Sequence, limit: int = 5) -> str:
    shown = ", ".join(str(p) for p in list(paths)[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _truth_folder(truth_dir: Path) -> Path:
    """A dataset folder (with ``masks/``) stands for its mask folder. An nnU-Net dataset folder
    holds two (``labelsTr``, ``labelsTs``): which one the predictions are of is the user's to say,
    so it is an error naming them (its sub-folders were taken for per-object mask folders)."""
    from ..data.discovery import MASK_DIR_NAMES, alias_dirs
    from ..io.readers import is_image_file

    if truth_dir.is_dir() and not any(
        p.is_file() and is_image_file(p) for p in truth_dir.iterdir()
    ):
        for folder in alias_dirs(truth_dir, MASK_DIR_NAMES)[:1]:
            return folder
        nnunet = [n for n in ("labelsTs", "labelsTr") if (truth_dir / n).is_dir()]
        if nnunet:
            raise DataError(
                "an nnU-Net dataset folder: give the folder of the masks the predictions are of "
                f"as the truth ({' or '.join(str(truth_dir / n) for n in nnunet)})",
                truth_dir,
            )
    return truth_dir


def _shown(path: Path, truth_dir: Path) -> str:
    """A truth mask named for a message: its path under the truth folder (``CASE/masks`` for a
    case folder's objects, ``01.png`` for a file)."""
    try:
        return str(path.relative_to(truth_dir))
    except ValueError:
        return path.name


def _truth_files(truth_dir: Path) -> dict[str, Path]:
    """``{stem: path}`` of the truth folder's mask files and per-object mask folders
    (``masks/CASE/``, one binary file per object), a stem shared by both being an error."""
    from ..data.object_masks import is_object_mask_folder

    folders = {}
    if truth_dir.is_dir():
        folders = {d.name: d for d in sorted(truth_dir.iterdir()) if is_object_mask_folder(d)}
    if not folders:
        return _list_images(truth_dir, "truth mask")
    from ..io.readers import list_images

    files = list_images(truth_dir).first()
    both = sorted(set(files) & set(folders))
    if both:
        raise DataError(
            f"{both[0]!r} is both a mask file ({files[both[0]].name}) and a per-object mask folder; "
            "keep one",
            truth_dir,
        )
    return {**files, **folders}


def _without_mask_suffix(
    truths: dict[str, Path],
    references: Sequence[str],
    mask_suffix: Optional[str],
) -> dict[str, Path]:
    """The truth masks keyed by case id: without their mask suffix (``01_mask.png`` → ``01``), as
    ``unetkit train`` reads them. ``mask_suffix`` ``None`` detects it from the ``references`` (the
    image stems beside the masks, else the prediction stems) as the training data's discovery
    does; a detected suffix that some mask lacks is not one (the stems stay as they are), a given
    one is an error naming the mask."""
    from ..data.discovery import _detect_suffix, _strip

    if mask_suffix is None:
        if set(truths) <= set(references):
            return truths
        mask_suffix = _detect_suffix(sorted(references), sorted(truths))
        stripped, lacking = _strip(truths, mask_suffix)
        return truths if lacking or len(stripped) < len(truths) else stripped
    stripped, lacking = _strip(truths, mask_suffix)
    if lacking:
        raise DataError(
            f"mask name lacks the mask suffix {mask_suffix!r} (--mask-suffix); rename it to "
            f"STEM{mask_suffix}{lacking[0].suffix or '.png'} or pass the suffix its masks have",
            lacking[0],
        )
    return stripped


def _suffix_hint(truth_stems: Sequence[str], mask_suffix: Optional[str]) -> str:
    """``"; …--mask-suffix _mask"`` where every truth mask's name ends in one ``_word`` that was
    not taken for a mask suffix (none found beside images named as the predictions), else ``""``."""
    if mask_suffix is not None or len(truth_stems) < 1:
        return ""
    tails = {stem.rsplit("_", 1)[-1] for stem in truth_stems if "_" in stem}
    if len(tails) != 1 or any("_" not in stem for stem in truth_stems):
        return ""
    tail = "_" + tails.pop()
    return f"; if the masks' names add {tail} to the case's, pass --mask-suffix {tail}"


#: a truth value no prediction holds, covering at least this share of the truth pixels, is named
#: as a likely unlabelled value (partial annotations scored as a class)
UNLABELLED_GUESS_SHARE = 0.25


def _unlabelled_warning(counts, label_map) -> list[str]:
    """The warning naming a truth value that covers :data:`UNLABELLED_GUESS_SHARE` of the truth
    pixels while no prediction holds it (``[]`` otherwise): unlabelled pixels scored as a class."""
    if counts is None:
        return []
    truth, pred = counts
    share = truth / max(int(truth.sum()), 1)
    unheld = [c for c in range(len(truth)) if share[c] >= UNLABELLED_GUESS_SHARE and not pred[c]]
    if not unheld:
        return []
    c = max(unheld, key=lambda i: share[i])
    v = label_map.values[c]
    return [
        f"the truth value {v} covers {100 * share[c]:.0f} % of the truth pixels but no prediction "
        f"holds it: if it marks unlabelled pixels (partial annotations), evaluate with "
        f"--ignore-value {v}"
    ]


def _truth_label_map(truths: list, preds: list, ignore: Optional[int] = None):
    """The label map the truth masks imply (:func:`~unetkit.data.labels.infer_label_map`); truth
    of background only (blank fields, where any object predicted is a false one) takes its
    classes from the predictions beside it, and both of one value is an error saying to name
    the classes."""
    from ..data.labels import SingleValueMasks, infer_label_map

    try:
        return infer_label_map(truths, ignore=ignore)
    except SingleValueMasks as single:
        try:
            return infer_label_map(truths + preds, ignore=ignore)
        except SingleValueMasks:
            raise DataError(
                f"every truth mask and every prediction ({len(truths)} each) holds the single "
                f"value {single.value}: no classes to score; name them with --labels (e.g. "
                "--labels 0,255)",
                single.path,
            ) from None


def _reference_stems(
    truth_dir: Path, image_dir: Optional[PathLike], pred_files: dict[str, Path]
) -> list[str]:
    """The case ids the truth masks' names are compared with to find their suffix: the stems of
    the images beside the masks (as ``unetkit train`` does), else those of the predictions."""
    images = _image_folder(truth_dir, image_dir)
    if images is not None and images.is_dir():
        try:
            return sorted(_list_images(images, "image"))
        except DataError:  # empty, or two files of one stem: the overlays will say so
            pass
    return sorted(pred_files)


def _case_folder_cases(truth_dir: Path) -> list:
    """The cases of a dataset of case folders (``case/images/`` + ``case/masks/``, one file per
    object), each with its mask and image; ``[]`` for any other truth folder."""
    from ..data.discovery import find_cases, is_case_folder_dataset

    return find_cases(truth_dir) if is_case_folder_dataset(truth_dir) else []


def _instance_files(truth_dir: Path, case_ids: Sequence[str]) -> Optional[dict[str, Path]]:
    """The instance-id files of an ``instances/`` folder beside a ``masks/`` truth folder, by case
    id, or ``None`` without such a folder; a case without its file is an error naming the folder
    (scoring some cases by ids and others by components would mix two object counts)."""
    from ..data.discovery import MASK_DIR_NAMES, alias_dirs, is_dir_alias
    from ..data.reading import INSTANCE_DIR_NAMES

    if not is_dir_alias(truth_dir.name, MASK_DIR_NAMES):
        return None
    for folder in alias_dirs(truth_dir.parent, INSTANCE_DIR_NAMES)[:1]:
        name = folder.name
        if folder.is_dir():
            found = _match(_list_images(folder, "instance file"), set(case_ids))
            lacking = [c for c in case_ids if c not in found]
            if lacking:
                raise DataError(
                    f"no instance file for {len(lacking)} case(s): {_names(lacking)} (files are "
                    f"matched by stem; remove or complete {name}/ to score objects by ids)",
                    folder,
                )
            return found
    return None


def _image_folder(truth_dir: Path, image_dir: Optional[PathLike]) -> Optional[Path]:
    if image_dir is not None:
        return Path(image_dir)
    from ..data.discovery import IMAGE_DIR_NAMES, MASK_DIR_NAMES, alias_dirs, is_dir_alias

    if is_dir_alias(truth_dir.name, MASK_DIR_NAMES):
        for folder in alias_dirs(truth_dir.parent, IMAGE_DIR_NAMES)[:1]:
            return folder
    return None


def _values_fix(exc: DataError, label_map, inferred_from: Optional[Path] = None) -> str:
    """A prediction's unexpected values, with the fix: predictions are scored in the truth's values
    (a 0/1 prediction of 0/255 masks is the usual case, written by another tool). With
    ``inferred_from`` (the prediction, where the label map was read off the truth masks) a
    prediction of a class no truth mask holds gets the ``--labels`` that names every class."""
    message = str(exc)
    if exc.path is not None and message.startswith(f"{exc.path}: "):
        message = message[len(f"{exc.path}: ") :]
    if "unexpected label values" not in message:
        return message
    values = label_map.values
    found = None  # the prediction's own values, where the map was read off the truth
    ids = False  # the prediction looks like object ids (many values, each one region)
    if inferred_from is not None and label_map.kind == "labels":
        from ..data.labels import FEW_IDS_MIN, each_value_one_region
        from ..io.readers import read_image

        plane = read_image(inferred_from)[0]
        found = {int(v) for v in np.unique(plane)}
        ids = (
            plane.shape[0] == 1
            and 0 in found
            and len(found) > FEW_IDS_MIN
            and len(found - set(values)) > 1
            and each_value_one_region(plane[0])
        )
    if ids:
        return (
            f"{message}: the prediction holds {len(found) - 1} values besides 0, each one "
            "connected region: object ids? evaluate with --instances (it scores objects; "
            "binary truth masks' objects are then their connected components, or the ids of an "
            "instances/ folder beside them)"
        )
    binary = label_map.kind == "labels" and len(values) == 2 and values[0] == 0
    if binary and values[1] != 1 and (found is None or found <= {0, 1}):
        return (
            f"{message}: predictions are scored in the truth masks' values; a 0/1 prediction of "
            f"0/{values[1]} masks? write its 1 as {values[1]} (unetkit predict writes the "
            "values it was trained on)"
        )
    if found is not None:
        every = sorted(found | {int(v) for v in values})
        extra = sorted(found - set(values))
        unlabelled = (  # a model trained on partial masks without --ignore-value paints it
            f"; if {extra[0]} marked unlabelled pixels of the training masks, the model learnt it "
            f"as a class: train it again with --ignore-value {extra[0]}"
            if len(extra) == 1
            and (extra[0] < 0 or min(values) < extra[0] < max(values))
            and not found <= set(range(len(values)))  # class indices written as values
            else ""
        )
        return (
            f"{message}: predictions are scored in the truth masks' values; if "
            f"{'/'.join(map(str, extra))} is a class no truth mask "
            f"holds, name every class with --labels {','.join(map(str, every))}; else write the "
            f"predictions in the masks' values{unlabelled}"
        )
    return f"{message}: predictions are scored in the truth masks' values; write them in those"


def _class_name(label_map, c: int) -> str:
    if label_map.names is not None:
        return label_map.names[c]
    v = label_map.values[c]
    return f"({v[0]}, {v[1]}, {v[2]})" if isinstance(v, tuple) else str(v)


def _read_fov(path: Path, shape: tuple) -> np.ndarray:
    from ..io import read_image

    arr, _ = read_image(path)
    if arr.shape[1:] != shape:
        raise DataError(
            f"field of view shape {arr.shape[1:]} differs from the truth mask's {shape}", path
        )
    return np.any(arr != 0, axis=0)


def evaluate_folders(
    pred_dir: PathLike,
    truth_dir: PathLike,
    out_dir: Optional[PathLike] = None,
    fov_dir: Optional[PathLike] = None,
    metrics: Optional[Sequence[str]] = None,
    instances: bool = False,
    label_map=None,
    image_dir: Optional[PathLike] = None,
    *,
    prob_dir: Optional[PathLike] = None,
    spacing: Optional[Sequence[float]] = None,
    connectivity: int = 1,
    pred_background: str = "singletons",
    include_background: bool = False,
    nsd_tolerance: Optional[float] = None,
    mask_suffix: Optional[str] = None,
    ignore_value: Optional[int] = None,
) -> EvaluationResult:
    """Score every predicted label image against the truth mask of the same stem.

    Args:
        pred_dir: predicted label images, in the truth's values (``{0, 255}`` for ISBI/DRIVE),
            named like the masks (``22.png``; a common suffix such as ``22_pred.png`` is detected).
            Non-image files, hidden files, sub-folders and the side files of ``unetkit predict``
            (``22_prob.tif``, ``22_overlay.png``, ``22_instances.tif``, ``22_rois.zip`` beside
            ``22.png``: :func:`~unetkit.io.naming.is_side_file`) are ignored.
        truth_dir: the truth masks (or a dataset folder holding ``masks/``).
        out_dir: where to write ``per_case.csv``, ``summary.json``, ``report.md``,
            ``boxplots.png`` and the best/worst overlays; ``None`` writes nothing.
        fov_dir: field-of-view masks by stem (non-zero = inside), e.g. DRIVE's ``fov/``.
        metrics: metric or group names (see :func:`resolve_metrics`); ``None``: the defaults.
        instances: masks and predictions are instance label images (each id > 0 one object).
        label_map: the :class:`~unetkit.data.labels.LabelMap` of both folders; ``None`` infers it
            from the truth masks.
        image_dir: images for the overlays (default: ``images/`` beside a ``masks/`` truth folder).
        prob_dir: probability maps for AUC, ``<case>_prob.*`` (as ``unetkit predict`` writes them,
            so ``prob_dir`` may be ``pred_dir``) or ``<case>.*``: ``(K, *spatial)``, or
            ``(1, *spatial)`` foreground of a binary task; float TIFF, ``.npz`` (key
            ``probabilities``) or 8/16-bit images (only the ranking matters).
        spacing: pixel size per axis for the distance metrics (default: the truth file's
            spacing, else 1 pixel).
        connectivity: of the connected components that make the regions (1 = face neighbours).
        pred_background: Rand/VOI convention (see :mod:`unetkit.evaluation.connectomics`).
        include_background: also score class 0.
        nsd_tolerance: the NSD tolerance, in the distance unit (that of ``spacing`` or of the
            truth files); default: one pixel of the finest axis of each case.
        mask_suffix: what the truth masks' names add to the case's (``_mask`` for
            ``01_mask.png``, scored against the prediction ``01.png``); ``None`` detects it as
            ``unetkit train`` does, from the images beside the masks or the predictions.
        ignore_value: the truth masks' value of unlabelled pixels (partial annotations, as
            training's ``--ignore-value``; by default the ``label_map``'s own): those pixels are
            left out, as outside a field of view. Only the overlap metrics (and AUC) are computed then, the defaults too: the
            truth's objects and boundaries are known only in part.

    Returns:
        An :class:`EvaluationResult`.

    Raises:
        DataError: a folder is missing or empty; a mask has no prediction (or the reverse), a
            case has no field of view / probability map; shapes differ; a prediction holds values
            outside the label map (each message names the file).
        OutputError: ``out_dir`` cannot be created or written (a file in the way, no permission,
            disk full).
        ConfigError: unknown metrics or bad options.
    """
    from ..data.labels import (
        INSTANCE_LABEL_MAP,
        LabelMap,
        check_ignore_value,
        read_mask,
    )
    from ..data.reading import geometry_problem

    if out_dir is not None:
        check_output_dir(out_dir)  # before the work: a file in the way fails at once
    pred_dir, truth_dir = Path(pred_dir), _truth_folder(Path(truth_dir))
    if ignore_value is None:  # a model's map (predict --truth) brings its unlabelled value
        ignore_value = getattr(label_map, "ignore", None)
    if ignore_value is not None:
        ignore_value = check_ignore_value(ignore_value, "instances" if instances else "labels")
        metrics = ["overlap"] if metrics is None else metrics
    names = resolve_metrics(metrics, with_auc=prob_dir is not None)
    partial_only = set(_groups(names)) - {"overlap", "auc"}
    if ignore_value is not None and partial_only:
        raise ConfigError(
            f"with an ignore value (unlabelled truth pixels) only the overlap metrics and auc "
            f"can be scored, not {', '.join(sorted(partial_only))}: the truth's objects and "
            "boundaries are known only in part; leave --metrics out or name overlap metrics"
        )
    if nsd_tolerance is not None:  # a bad value fails before any file is read
        tolerance = boundary.resolve_nsd_tolerance(nsd_tolerance, (1.0,))
    case_folders = _case_folder_cases(truth_dir)
    truths = {c.case_id: c.mask for c in case_folders} or _truth_files(truth_dir)
    pred_files = _list_images(pred_dir, "prediction")
    if not case_folders:
        references = _reference_stems(truth_dir, image_dir, pred_files)
        truths = _without_mask_suffix(truths, references, mask_suffix)
    preds = _match_predictions(pred_files, set(truths))
    missing = sorted(set(truths) - set(preds))
    if missing:
        raise DataError(
            f"no prediction for {len(missing)} of {len(truths)} truth mask(s) of {truth_dir}: "
            f"{_names([_shown(truths[m], truth_dir) for m in missing])} (files are matched by stem"
            f"{_suffix_hint(sorted(truths), mask_suffix)})",
            pred_dir,
        )
    extra = sorted(set(preds) - set(truths))
    if extra:
        raise DataError(
            f"no truth mask for {len(extra)} prediction(s) of {pred_dir}: "
            f"{_names([preds[e].name for e in extra])} (files are matched by stem)",
            truth_dir,
        )
    case_ids = sorted(truths)
    # predict --instances writes each case's objects beside its labels (<case>_instances.tif):
    # those are the objects to score, not the labels' components (they split touching objects)
    pred_objects, partial = "labels", []
    if instances:
        own = {c: pred_files.get(c + INSTANCES_SUFFIX) for c in case_ids}
        if all(own.values()):
            preds, pred_objects = own, f"the {INSTANCES_SUFFIX} files"
        elif any(own.values()):
            partial = [
                f"only {sum(map(bool, own.values()))} of {len(own)} case(s) have a "
                f"{INSTANCES_SUFFIX} file, so every case is scored by its label image's objects"
            ]
    # predict --instances wrote objects beside the labels, which plain evaluate does not score
    objects_beside = (
        not instances
        and any(pred_files.get(c + INSTANCES_SUFFIX) for c in case_ids)
        and bool(_groups(names) & {"objects", "connectomics"})
    )
    extras: dict[str, dict[str, Path]] = {}
    for what, folder in (("field of view", fov_dir), ("probability map", prob_dir)):
        if folder is None:
            continue
        if what == "field of view":
            found = _match(_list_images(Path(folder), what), set(case_ids))
        else:
            found = _match_probabilities(_list_images(Path(folder), what, (".npz",)), set(case_ids))
        lacking = [c for c in case_ids if c not in found]
        if lacking:
            raise DataError(
                f"no {what} for {len(lacking)} case(s): {_names(lacking)} (files are matched by stem)",
                folder,
            )
        extras[what] = found
    inferred_instances = inferred_map = False
    truth_ids_in = None  # the instances/ folder whose ids --instances scores
    if instances:
        if label_map is not None and label_map != INSTANCE_LABEL_MAP:
            raise ConfigError("instances=True reads instance ids; do not pass a label map with it")
        label_map = INSTANCE_LABEL_MAP
        # binary masks/ with an instances/ folder beside them: the ids are the truth's objects
        # (training reads them so too); the masks' components would merge touching objects
        beside = _instance_files(truth_dir, case_ids)
        if beside:
            truths = {**truths, **beside}
            truth_ids_in = next(iter(beside.values())).parent
    elif label_map is None:
        inferred_map = True
        label_map = _truth_label_map(
            [truths[c] for c in case_ids], [preds[c] for c in case_ids], ignore_value
        )
        # truth masks of instance ids, recognised as such (labels.looks_like_instances), beside
        # predictions that are usually 0/1 label images: those are scored by their components
        inferred_instances = label_map.kind == "instances"
    else:
        if not isinstance(label_map, LabelMap):
            label_map = LabelMap(label_map)
        label_map = label_map.with_ignore(ignore_value)
        # a given instance map (an instance-trained model's, from predict --truth) reads the truth
        # as ids beside 0/1 predictions, as an inferred one does: scored by their components
        inferred_instances = label_map.kind == "instances"
    k = label_map.num_classes
    if objects_beside and k == 2 and label_map.kind != "instances":  # --instances: one class
        partial = [
            f"the predictions have {INSTANCES_SUFFIX} files (predict --instances): objects are "
            "scored here as the label images' connected components; --instances scores those "
            "files' objects (what the ROIs and GeoJSON hold)"
        ]
    # predictions label every pixel: the ignore value is no value of theirs
    pred_map = dataclasses.replace(label_map, ignore=None)
    id_files = None if instances or k != 2 else _instance_files(truth_dir, case_ids)
    classes = list(range(0 if include_background else 1, k))
    class_names = [_class_name(label_map, c) for c in classes]
    rows: list = []
    units: set = set()
    # four or more truth values inferred as classes beside predictions of two: instance ids (3D
    # ones are never guessed, labels.INSTANCE_GUESS_MIN_IDS; masks of 0 … 3 ids are read as
    # classes) scored as classes, which the user is told; a 3-class task whose model never
    # predicts its third class is not told of object ids
    guessed_classes = label_map.kind == "labels" and k > 3 and inferred_map
    predicted: set = set()
    # (truth pixels, predicted pixels) per class: a truth value covering much of the truth that
    # no prediction holds is most likely the unlabelled value of partial annotations
    unlabelled_guess = (
        [np.zeros(k, np.int64), np.zeros(k, np.int64)]
        if inferred_map and label_map.kind == "labels" and label_map.ignore is None
        else None
    )
    binary_truths: list = []  # truth masks scored by their components
    # instance truth in which no mask numbers two objects is binary (0/255 drawn as one class):
    # decided for the folder, so an instance mask of one object (in two parts) keeps its id
    binary_truth = (
        id_files is None
        and (inferred_instances or instances)
        and all(_ids_in(truths[c], label_map) <= 1 for c in case_ids)
    )
    for case in case_ids:
        t_cls, t_ids, meta = read_mask(truths[case], label_map)
        try:
            p_cls, p_ids, p_meta = read_mask(preds[case], pred_map)
        except DataError as exc:
            raise DataError(
                _values_fix(exc, label_map, preds[case] if inferred_map else None), preds[case]
            ) from None
        where = geometry_problem(meta, p_meta, truths[case].name, "prediction", "truth")
        if where and p_cls.shape == t_cls.shape:  # scored voxel by voxel, it must lie on the truth
            raise DataError(where, preds[case])
        if guessed_classes:
            predicted.update(int(v) for v in np.unique(p_cls))
        if unlabelled_guess is not None:
            unlabelled_guess[0] += np.bincount(t_cls.ravel(), minlength=k)[:k]
            unlabelled_guess[1] += np.bincount(p_cls.ravel(), minlength=k)[:k]
        if p_cls.shape != t_cls.shape:
            raise DataError(
                f"prediction shape {p_cls.shape} differs from the truth mask {_shown(truths[case], truth_dir)} "
                f"shape {t_cls.shape}",
                preds[case],
            )
        fov = (
            _read_fov(extras["field of view"][case], t_cls.shape)
            if "field of view" in extras
            else None
        )
        if label_map.ignore is not None:  # unlabelled truth pixels: outside the field of view
            labelled = t_cls >= 0
            fov = labelled if fov is None else fov & labelled
            t_cls = np.where(labelled, t_cls, 0)
        prob = None
        if "probability map" in extras:
            prob = _read_probabilities(extras["probability map"][case])
            if prob.shape[1:] != t_cls.shape:
                raise DataError(
                    f"probability map shape {prob.shape[1:]} differs from the truth mask's {t_cls.shape}",
                    extras["probability map"][case],
                )
            if prob.shape[0] not in (1, k) or (prob.shape[0] == 1 and k != 2):
                raise DataError(
                    f"probability map has {prob.shape[0]} channel(s); expected {k} (one per class)"
                    + (" or 1 (the foreground)" if k == 2 else ""),
                    extras["probability map"][case],
                )
        if id_files is not None:  # the truth's objects by id, the prediction's by components
            _, t_ids, _ = read_mask(id_files[case], kind="instances")
            if t_ids.shape != t_cls.shape:
                raise DataError(
                    f"instance file shape {t_ids.shape} differs from the truth mask "
                    f"{_shown(truths[case], truth_dir)} shape {t_cls.shape}",
                    id_files[case],
                )
            p_ids = label_objects(p_cls == 1, connectivity)
        elif (
            (inferred_instances or instances)
            and p_ids is not None
            and np.unique(p_ids[p_ids > 0]).size <= 1
        ):
            # a binary label image (0/1 or 0/255): its objects are its components
            p_ids = label_objects(p_cls == 1, connectivity)
        if binary_truth and t_ids is not None:
            # binary truth masks, as the predictions: their objects are their components too
            # (else each would be one object against the prediction's many)
            t_ids = label_objects(t_cls == 1, connectivity)
            if t_ids.any():
                binary_truths.append(case)
        case_spacing = spacing if spacing is not None else meta.spacing
        if spacing is None:
            units.add("pixel" if meta.spacing is None else (meta.spacing_unit or "file spacing"))
        case_rows = evaluate_case(
            p_cls,
            t_cls,
            k,
            metrics=names,
            classes=classes,
            fov=fov,
            spacing=case_spacing,
            prob=prob,
            truth_instances=t_ids,
            pred_instances=p_ids,
            connectivity=connectivity,
            pred_background=pred_background,
            nsd_tolerance=nsd_tolerance,
        )
        for row, c in zip(case_rows, classes):
            v = label_map.values[c]
            rows.append(
                {
                    "case": case,
                    "class": _class_name(label_map, c),
                    "value": list(v) if isinstance(v, tuple) else v,
                    **row,
                }
            )
    from .aggregate import best_and_worst, case_score, pooled_objects, summarize_rows

    per_class_metrics = [m for m in names if m not in CASE_METRICS]
    stats = summarize_rows(
        rows, per_class_metrics, class_names, [m for m in names if m in CASE_METRICS]
    )
    pooled = pooled_objects(rows, class_names)
    if pooled:
        stats["objects_pooled"] = pooled
    best, worst = best_and_worst(case_score(rows, "dice")) if "dice" in names else (None, None)
    summary = {
        "pred_dir": str(pred_dir),
        "truth_dir": str(truth_dir),
        "fov_dir": None if fov_dir is None else str(fov_dir),
        "prob_dir": None if prob_dir is None else str(prob_dir),
        "num_cases": len(case_ids),
        "case_ids": case_ids,
        "label_map": label_map.to_dict(),
        "classes": class_names,
        "metrics": list(names),
        "instances": bool(instances),
        "truth_objects": (
            f"ids in {truth_ids_in}"
            if truth_ids_in is not None
            else "connected components"
            if binary_truth
            else "instance masks"
            if instances or inferred_instances
            else f"ids in {next(iter(id_files.values())).parent}"
            if id_files
            else "connected components"
        ),
        "prediction_objects": pred_objects,
        "connectivity": connectivity,
        "pred_background": pred_background,
        "distance_unit": "given spacing" if spacing is not None else ", ".join(sorted(units)),
        **(
            {
                "nsd_tolerance": "one pixel of the finest axis"
                if nsd_tolerance is None
                else tolerance
            }
            if "nsd" in names
            else {}
        ),
        **stats,
        "best_case": best,
        "worst_case": worst,
        "policies": {g: POLICIES[g] for g in METRIC_GROUPS if g in _groups(names)},
        **({"ignore_value": label_map.ignore} if label_map.ignore is not None else {}),
        "notes": "statistics over defined values; 'undefined' counts NaN scores left out, 'penalized' counts "
        "scores set by the empty policy because exactly one side was empty (distances: the image "
        "diagonal; object scores: 0); std has ddof=0",
        "warnings": (
            [
                f"the truth masks hold {k} values, read as {k} classes, but the predictions only "
                f"{' and '.join(str(label_map.values[c]) for c in sorted(predicted))}: are the "
                "truth values object ids? evaluate with --instances to score objects"
            ]
            if guessed_classes and predicted <= {0, 1}
            else []
        )
        + (
            [
                f"{len(binary_truths)} truth mask(s) ({_names(binary_truths)}) are binary: their "
                "objects are their connected components, so touching objects count as one; give "
                "instance masks (or an instances/ folder) to score them apart"
            ]
            if binary_truths
            else []
        )
        + _unlabelled_warning(unlabelled_guess, label_map)
        + partial,
    }
    result = EvaluationResult(rows, summary, label_map, names, case_ids)
    if out_dir is not None:
        from .report import write_report

        result.files = write_report(
            result,
            out_dir,
            truths=truths,
            preds=preds,
            image_dir=(
                {c.case_id: c.images[0] for c in case_folders}
                if case_folders and image_dir is None
                else _image_folder(truth_dir, image_dir)
            ),
            fovs=extras.get("field of view"),
        )
    return result
