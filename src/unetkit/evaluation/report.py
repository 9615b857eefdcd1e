"""The files of an evaluation: per-case CSV, summary JSON, Markdown report, box plots, overlays.

Written under ``out_dir`` by :func:`write_report` (each file atomically):

* ``per_case.csv``: one row per (case, class): ``case, class, value, class_index, truth_pixels,
  pred_pixels`` and one column per metric (``nan`` = undefined; ``pixel_error`` is a case value,
  repeated in each row of the case);
* ``summary.json``: statistics per class and metric (mean, median, std, min, max, n, undefined,
  penalized), the mean over classes, the case-level pixel error, the empty policies (NaN → null);
* ``boxplots.png``: one panel per metric, one box per class (undefined values left out);
* ``overlay_best_<case>.png`` / ``overlay_worst_<case>.png``: the cases with the highest and the
  lowest mean Dice: the image (grey, or RGB; mid-grey when no image is found) with correct
  foreground in green, false positives (and wrong classes) in red, false negatives in blue, the
  outside of the field of view darkened; for a 3D case the slice with the most foreground;
* ``report.md``: the summary table, the policies, links to the pictures.

For instance predictions (``unetkit demo``): :func:`instance_metrics_table` (Markdown table of
:func:`~unetkit.evaluation.instances.instance_scores`), :func:`write_instance_overlays` (truth and
predicted outlines, merged cells) and :func:`write_weight_map_figure` (a training image, its mask
and its border weight map).

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..io.display import colour_labels, outlines, stretch, to_display_rgb
from ..utils import atomic_path, atomic_write_text, ensure_output_dir, jsonable

PathLike = Union[str, Path]

#: Row fields written before the metric columns.
ID_COLUMNS = ("case", "class", "value", "class_index", "truth_pixels", "pred_pixels")
#: Metrics drawn in ``boxplots.png`` (when computed), one panel each.
PLOTTED = (
    "dice",
    "iou",
    "precision",
    "recall",
    "hd95",
    "assd",
    "nsd",
    "rand_error",
    "voi",
    "obj_f1",
    "map",
    "auc",
)
_COLOURS = {"tp": (0, 200, 0), "fp": (230, 30, 30), "fn": (40, 90, 255)}


def _prediction_objects(s: dict) -> str:
    """How the predictions' objects were found, for the report (older summaries lack it)."""
    what = s.get("prediction_objects", "labels")
    return "connected components of the labels" if what == "labels" else what


def _truth_objects(s: dict) -> str:
    """How the truth's objects were found, for the report (older summaries lack it)."""
    return s.get("truth_objects") or ("instance ids" if s["instances"] else "connected components")


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return f"{float(v):.4f}"


def write_csv(rows: Sequence[dict], path: PathLike, metrics: Sequence[str]) -> Path:
    """Write the per-case rows (see the module doc) to ``path``."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*ID_COLUMNS, *metrics])
    for r in rows:
        value = r["value"]
        value = " ".join(str(v) for v in value) if isinstance(value, (list, tuple)) else value
        writer.writerow(
            [
                r["case"],
                r["class"],
                value,
                r["class_index"],
                r["truth_pixels"],
                r["pred_pixels"],
                *(format(float(r[m]), ".10g") for m in metrics),
            ]
        )
    atomic_write_text(path, buf.getvalue())
    return Path(path)


def read_csv(path: PathLike) -> list[dict]:
    """The rows of a ``per_case.csv`` (metric columns as floats, ``nan`` included)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for r in rows:
        conv = {k: (v if k in ("case", "class", "value") else float(v)) for k, v in r.items()}
        for k in ("class_index", "truth_pixels", "pred_pixels"):
            conv[k] = int(conv[k])
        out.append(conv)
    return out


def summary_table(summary: dict, markdown: bool = True) -> str:
    """Per class: mean ± std, median, n, undefined and penalized of each metric; then the case metrics."""
    lines = []
    header = ("metric", "mean ± std", "median", "n", "undefined", "penalized")
    blocks = [(f"class {name}", stats) for name, stats in summary["per_class"].items()]
    if summary.get("case"):
        blocks.append(("per case", summary["case"]))
    for title, stats in blocks:
        table = [header]
        for metric, s in stats.items():
            table.append(
                (
                    metric,
                    f"{_fmt(s['mean'])} ± {_fmt(s['std'])}",
                    _fmt(s["median"]),
                    str(s["n"]),
                    str(s["undefined"]),
                    str(s["penalized"]),
                )
            )
        if markdown:
            lines.append(f"### {title}\n")
            lines.append("| " + " | ".join(table[0]) + " |")
            lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in table[1:])
        else:
            widths = [max(len(row[i]) for row in table) for i in range(len(header))]
            lines.append(f"{title}:")
            for row in table:
                lines.append(
                    "  "
                    + "  ".join(
                        cell.ljust(w) if i == 0 else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))
                    )
                )
        lines.append("")
    lines.extend(_pooled_lines(summary.get("objects_pooled") or {}, markdown))
    return "\n".join(lines).rstrip() + "\n"


def _pooled_lines(pooled: dict, markdown: bool) -> list[str]:
    """The objects pooled over the images (:func:`~unetkit.evaluation.aggregate.pooled_objects`),
    one line per class."""
    if not pooled:
        return []
    images = next(iter(pooled.values()))["images"]
    title = f"objects pooled over the {images} image(s), IoU ≥ 0.5"
    lines = [f"### {title}\n" if markdown else f"{title}:"]
    for name, p in pooled.items():
        line = (
            f"class {name}: F1 {_fmt(p['obj_f1'])}, precision {_fmt(p['obj_precision'])}, recall "
            f"{_fmt(p['obj_recall'])} ({p['tp']} matched of {p['n_true']} true, "
            f"{p['n_pred']} predicted)"
        )
        if p["images_without_objects"]:
            line += (
                f"; {p['predicted_there']} predicted in the {p['images_without_objects']} "
                "image(s) without true objects"
            )
        lines.append(f"- {line}" if markdown else f"  {line}")
    return [*lines, ""]


def boxplots(
    rows: Sequence[dict], metrics: Sequence[str], classes: Sequence[str], path: PathLike
) -> Optional[Path]:
    """One panel per metric of :data:`PLOTTED`, one box per class; ``None`` (nothing written) when
    none of them was computed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = [m for m in PLOTTED if m in metrics]
    if not shown:
        return None
    ncols = min(4, len(shown))
    nrows = math.ceil(len(shown) / ncols)
    fig = Figure(figsize=(3.2 * ncols, 2.8 * nrows), dpi=80)
    FigureCanvasAgg(fig)
    for i, metric in enumerate(shown):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        data = [
            np.array([r[metric] for r in rows if r["class"] == c], dtype=float) for c in classes
        ]
        data = [d[~np.isnan(d)] for d in data]
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(classes) + 1), [str(c) for c in classes])
        ax.set_title(metric, fontsize=10)
        ax.tick_params(labelsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.08, top=0.92, wspace=0.3, hspace=0.45)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def _to_rgb(image: Optional[np.ndarray], shape: tuple) -> np.ndarray:
    """(H, W, 3) float in [0, 1] from a (C, H, W) image (:func:`~unetkit.io.display.stretch`), or mid-grey."""
    if image is None:
        return np.full((*shape, 3), 0.5)
    return stretch(image).astype(np.float64)


def overlay(
    truth: np.ndarray,
    pred: np.ndarray,
    image: Optional[np.ndarray] = None,
    fov: Optional[np.ndarray] = None,
    alpha: float = 0.45,
) -> np.ndarray:
    """Errors drawn over the image.

    Args:
        truth, pred: ``(H, W)`` class indices (0 = background).
        image: ``(C, H, W)`` image or ``None``.
        fov: ``(H, W)`` field of view or ``None``.
        alpha: opacity of the colours.

    Returns:
        ``(3, H, W)`` uint8 RGB: green = correct foreground, red = predicted foreground that is
        wrong, blue = missed foreground.
    """
    rgb = _to_rgb(image, truth.shape)
    if fov is not None:
        rgb = np.where(fov[..., None], rgb, rgb * 0.3)
    kinds = {
        "tp": (truth > 0) & (pred == truth),
        "fp": (pred > 0) & (pred != truth),
        "fn": (truth > 0) & (pred == 0),
    }
    for kind, where in kinds.items():
        colour = np.array(_COLOURS[kind], dtype=np.float64) / 255
        rgb[where] = (1 - alpha) * rgb[where] + alpha * colour
    return np.moveaxis(np.round(rgb * 255).astype(np.uint8), -1, 0)


def _slice_2d(truth, pred, image, fov):
    """The 2D slice (most truth foreground) of a 3D case; 2D cases pass through."""
    if truth.ndim == 2:
        return truth, pred, image, fov
    z = int(np.argmax((truth > 0).reshape(truth.shape[0], -1).sum(axis=1)))
    return (
        truth[z],
        pred[z],
        None if image is None else image[:, z],
        None if fov is None else fov[z],
    )


def _find_image(image_dir: Union[Path, dict, None], case: str) -> Optional[Path]:
    """The case's image: from a ``{case: path}`` map (case folders), or by stem in a folder."""
    if isinstance(image_dir, dict):
        return image_dir.get(case)
    if image_dir is None or not image_dir.is_dir():
        return None
    from ..io.readers import is_image_file, split_suffix

    hits = sorted(
        p
        for p in image_dir.iterdir()
        if p.is_file() and is_image_file(p) and split_suffix(p)[0] == case
    )
    return hits[0] if hits else None


def _write_overlay(
    result,
    case: str,
    path: Path,
    truths: dict,
    preds: dict,
    image_dir: Union[Path, dict, None],
    fovs: Optional[dict],
) -> Path:
    from ..data.labels import read_mask
    from ..io import read_image, write_image

    truth, _, _ = read_mask(truths[case], result.label_map)
    pred, _, _ = read_mask(preds[case], dataclasses.replace(result.label_map, ignore=None))
    image = None
    found = _find_image(image_dir, case)
    if found is not None:
        arr, _ = read_image(found)
        image = arr if arr.shape[1:] == truth.shape else None
    fov = None
    if fovs is not None:
        arr, _ = read_image(fovs[case])
        fov = np.any(arr != 0, axis=0)
    if truth.min(initial=0) < 0:  # unlabelled truth pixels are drawn as outside a field of view
        fov = truth >= 0 if fov is None else fov & (truth >= 0)
        truth = np.where(truth >= 0, truth, 0)
    t, p, img, f = _slice_2d(truth, pred, image, fov)
    write_image(path, overlay(t, p, img, f))
    return path


def write_report(
    result,
    out_dir: PathLike,
    *,
    truths: dict,
    preds: dict,
    image_dir: Union[Path, dict, None] = None,
    fovs: Optional[dict] = None,
) -> dict[str, Path]:
    """Write every file of the module doc for an :class:`~unetkit.evaluation.evaluate.EvaluationResult`.

    Returns:
        ``{"csv", "summary", "report", "boxplots", "overlay_best", "overlay_worst"}`` → path
        (pictures only when there is something to draw).
    """
    out = Path(out_dir)
    ensure_output_dir(out)  # a file in the way or no permission: one OutputError naming the folder
    summary = result.summary
    files: dict[str, Path] = {}
    files["csv"] = write_csv(result.rows, out / "per_case.csv", result.metrics)
    atomic_write_text(out / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    files["summary"] = out / "summary.json"
    per_class = [m for m in result.metrics if m in summary["per_class"][summary["classes"][0]]]
    plot = (
        boxplots(result.rows, per_class, summary["classes"], out / "boxplots.png")
        if result.rows
        else None
    )
    if plot is not None:
        files["boxplots"] = plot
    for key in ("best", "worst"):
        case = summary.get(f"{key}_case")
        if case is None or (key == "worst" and case == summary.get("best_case")):
            continue
        files[f"overlay_{key}"] = _write_overlay(
            result, case, out / f"overlay_{key}_{case}.png", truths, preds, image_dir, fovs
        )
    files["report"] = out / "report.md"
    atomic_write_text(files["report"], _markdown(result, files))
    return files


def _markdown(result, files: dict) -> str:
    s = result.summary
    lm = s["label_map"]
    lines = [
        "# unetkit evaluation",
        "",
        f"- predictions: `{s['pred_dir']}`",
        f"- truth: `{s['truth_dir']}`"
        + (f" (field of view: `{s['fov_dir']}`)" if s.get("fov_dir") else ""),
        f"- cases: {s['num_cases']}; classes scored: {', '.join(s['classes'])} "
        f"(label map {lm['kind']} {lm['values']}); distances in {s['distance_unit']}",
        f"- objects: truth {_truth_objects(s)}, "
        f"predictions {_prediction_objects(s)} (connectivity {s['connectivity']}); per-case "
        "scores in `per_case.csv`",
        "",
        # what evaluate warned about (partial instance files, object ids read as classes …) is
        # part of the scores' meaning: a reader of the report alone needs it as much as the console
        *(["## Warnings", "", *[f"- {w}" for w in s["warnings"]], ""] if s.get("warnings") else []),
        "## Summary",
        "",
        summary_table(s, markdown=True),
        "Mean over classes: "
        + ", ".join(f"{m} {_fmt(v)}" for m, v in s["mean_over_classes"].items()),
        "",
        "## Empty truth / empty prediction",
        "",
        *[f"- **{g}**: {text}" for g, text in s["policies"].items()],
        f"- {s['notes']}",
        "",
    ]
    if "boxplots" in files:
        lines += ["## Distributions", "", f"![box plots]({files['boxplots'].name})", ""]
    shots = [(k, files[f"overlay_{k}"]) for k in ("best", "worst") if f"overlay_{k}" in files]
    if shots:
        lines += [
            "## Best and worst cases (by mean Dice)",
            "",
            "green: correct foreground, red: false positive / wrong class, blue: missed",
            "",
        ]
        dice = {}
        for r in result.rows:
            dice.setdefault(r["case"], []).append(r.get("dice", float("nan")))
        for key, path in shots:
            case = s[f"{key}_case"]
            lines += [
                f"**{key}: {case}** (Dice {_fmt(float(np.nanmean(dice[case])))})",
                "",
                f"![{key} case {case}]({path.name})",
                "",
            ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------- instance reports
#: Rows of :func:`instance_metrics_table`: (key of ``instance_scores``, label, format).
INSTANCE_METRIC_ROWS = (
    ("obj_f1", "object F1 at IoU 0.5", "{:.3f}"),
    ("obj_precision", "object precision at IoU 0.5", "{:.3f}"),
    ("obj_recall", "object recall at IoU 0.5", "{:.3f}"),
    ("ap50", "AP at IoU 0.5", "{:.3f}"),
    ("ap75", "AP at IoU 0.75", "{:.3f}"),
    ("map", "AP averaged over IoU 0.5:0.95", "{:.3f}"),
    ("dice", "pixel Dice (cells)", "{:.4f}"),
    ("iou", "pixel IoU (cells)", "{:.4f}"),
    ("pixel_error", "pixel error", "{:.4f}"),
    ("rand_error", "Rand error (adapted)", "{:.4f}"),
    ("n_true", "cells in the truth", "{:.0f}"),
    ("n_pred", "cells predicted", "{:.0f}"),
    ("merged", "truth cells merged with a neighbour", "{:.0f}"),
    ("split", "truth cells split", "{:.0f}"),
)


def instance_metrics_table(
    metrics: dict, baseline: Optional[dict] = None, names: tuple = ("watershed", "components")
) -> str:
    """Markdown table of :func:`~unetkit.evaluation.instances.instance_scores` (the rows of
    :data:`INSTANCE_METRIC_ROWS` present in ``metrics``), with a second column for ``baseline``
    when given; ``names`` are the column titles."""
    head = f"| metric | {names[0]} |" + (f" {names[1]} |" if baseline else "")
    rule = "|---|---:|" + ("---:|" if baseline else "")
    lines = [head, rule]
    for key, label, fmt in INSTANCE_METRIC_ROWS:
        if key not in metrics:
            continue
        row = f"| {label} | {fmt.format(metrics[key])} |"
        if baseline:
            row += f" {fmt.format(baseline[key])} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def _save_png(path: Path, rgb: np.ndarray, scale: int = 1) -> None:
    from PIL import Image

    picture = Image.fromarray(rgb)
    if scale != 1:
        picture = picture.resize((rgb.shape[1] * scale, rgb.shape[0] * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")


def write_instance_overlays(
    out_dir: PathLike, image: np.ndarray, truth: np.ndarray, pred: np.ndarray, crop: int = 256
) -> dict[str, Path]:
    """``overlay.png`` (the whole image: truth outlines green, predicted outlines magenta, white
    where they agree) and ``overlay_zoom.png`` (a central crop ×2: image | truth instances |
    predicted instances, merged cells outlined red; :func:`~unetkit.evaluation.objects.merged_predictions`).

    Args:
        out_dir: an existing folder.
        image: ``(H, W)`` image (:func:`~unetkit.io.display.to_display_rgb`).
        truth, pred: ``(H, W)`` instance ids (0 = background).
        crop: side of the zoomed crop, in pixels.

    Returns:
        ``{"overlay", "overlay_zoom"}`` → path.
    """
    from .objects import merged_predictions

    out = Path(out_dir)
    rgb = to_display_rgb(image)
    t_out, p_out = outlines(truth), outlines(pred)
    full = rgb.copy()
    full[t_out] = (60, 220, 60)
    full[p_out] = (230, 60, 230)
    full[t_out & p_out] = (255, 255, 255)
    paths = {"overlay": out / "overlay.png", "overlay_zoom": out / "overlay_zoom.png"}
    _save_png(paths["overlay"], full)

    h, w = truth.shape
    ch, cw = min(crop, h), min(crop, w)
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    win = (slice(y0, y0 + ch), slice(x0, x0 + cw))
    t_col = colour_labels(truth, 1)[win]
    p_col = colour_labels(pred, 2)[win]
    merged = np.isin(pred, merged_predictions(truth, pred))
    p_col[outlines(np.where(merged, pred, 0))[win]] = (255, 0, 0)
    gap = np.full((ch, 4, 3), 255, np.uint8)
    _save_png(paths["overlay_zoom"], np.concatenate([rgb[win], gap, t_col, gap, p_col], axis=1), 2)
    return paths


def write_weight_map_figure(
    path: PathLike,
    image: np.ndarray,
    instances: np.ndarray,
    w0: float,
    sigma: float,
    crop: int = 160,
) -> dict[str, float]:
    """A training image, its instance mask and the U-Net paper's border weight map
    (:func:`~unetkit.data.weightmap.border_weight_map`, colour-mapped), side by side, as a PNG.

    Args:
        path: the PNG to write.
        image: ``(H, W)`` training image; instances: ``(H, W)`` its instance ids (1-px gaps).
        w0, sigma: the weight map's parameters.
        crop: side of the central crop shown, in pixels.

    Returns:
        ``{"max", "mean_gap", "mean_cell", "mean_background"}``: the map's maximum and its mean on
        the 1-px gaps between touching cells, inside cells, and on the other background.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from scipy import ndimage

    from ..data.weightmap import border_weight_map

    semantic = (instances > 0).astype(np.int64)
    weight = border_weight_map(semantic, instances=instances.astype(np.int64), w0=w0, sigma=sigma)
    # the gaps: background pixels with two different cells among their 8 neighbours
    near = ndimage.maximum_filter(instances, size=3)
    near_min = ndimage.minimum_filter(
        np.where(instances > 0, instances, np.iinfo(np.int32).max).astype(np.int64), size=3
    )
    gap = (instances == 0) & (near > 0) & (near_min < near)
    stats = {
        "max": float(weight.max()),
        "mean_gap": float(weight[gap].mean()) if gap.any() else float("nan"),
        "mean_cell": float(weight[instances > 0].mean()),
        "mean_background": float(weight[(instances == 0) & ~gap].mean()),
    }
    h, w = instances.shape
    ch, cw = min(crop, h), min(crop, w)
    win = (slice((h - ch) // 2, (h - ch) // 2 + ch), slice((w - cw) // 2, (w - cw) // 2 + cw))
    fig = Figure(figsize=(12, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3)
    axes[0].imshow(image[win], cmap="gray")
    axes[0].set_title("training image")
    axes[1].imshow(colour_labels(instances)[win])
    axes[1].set_title("instance mask (1-px gaps)")
    im = axes[2].imshow(weight[win], cmap="magma")
    axes[2].set_title(f"border weight map (w0 {w0:g}, σ {sigma:g})")
    fig.colorbar(im, ax=axes[2], fraction=0.046, pad=0.04)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    return stats
