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

Plots use matplotlib's Agg canvas directly (no pyplot, no global backend change).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from ..io.display import stretch
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
    "rand_error",
    "voi",
    "obj_f1",
    "map",
    "auc",
)
_COLOURS = {"tp": (0, 200, 0), "fp": (230, 30, 30), "fn": (40, 90, 255)}


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
    return "\n".join(lines).rstrip() + "\n"


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


def _find_image(image_dir: Optional[Path], case: str) -> Optional[Path]:
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
    image_dir: Optional[Path],
    fovs: Optional[dict],
) -> Path:
    from ..data.labels import read_mask
    from ..io import read_image, write_image

    truth, _, _ = read_mask(truths[case], result.label_map)
    pred, _, _ = read_mask(preds[case], result.label_map)
    image = None
    found = _find_image(image_dir, case)
    if found is not None:
        arr, _ = read_image(found)
        image = arr if arr.shape[1:] == truth.shape else None
    fov = None
    if fovs is not None:
        arr, _ = read_image(fovs[case])
        fov = np.any(arr != 0, axis=0)
    t, p, img, f = _slice_2d(truth, pred, image, fov)
    write_image(path, overlay(t, p, img, f))
    return path


def write_report(
    result,
    out_dir: PathLike,
    *,
    truths: dict,
    preds: dict,
    image_dir: Optional[Path] = None,
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
        f"- regions: {'instance ids' if s['instances'] else 'connected components'} "
        f"(connectivity {s['connectivity']}); per-case scores in `per_case.csv`",
        "",
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
