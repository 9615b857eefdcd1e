"""``unetkit evaluate PRED_DIR TRUTH_DIR``: score predicted label images against truth masks.

Prints the per-class summary (mean ± std, median, and how many scores were undefined or
penalised) and, with ``--out DIR``, writes ``per_case.csv``, ``summary.json``, ``report.md``,
``boxplots.png`` and overlays of the best and worst cases there. The same as
:func:`unetkit.evaluation.evaluate_folders`.
"""

from __future__ import annotations

import argparse
import math

from .parsing import label_values

EPILOG = """\
metric groups: overlap (dice iou precision recall specificity pixel_error), boundary (hd hd95 assd
nsd), connectomics (rand_error rand_precision rand_recall voi_split voi_merge voi), objects
(obj_precision obj_recall obj_f1 ap50 ap75 map n_true n_pred), auc (needs --probs); default: all
groups, auc only when --probs is given. nsd counts boundaries within --nsd-tolerance (default one
pixel) as agreeing.

examples:
  unetkit evaluate runs/pred data/isbi2012/val/masks --out runs/eval
  unetkit evaluate runs/pred data/drive/val/masks --fov data/drive/val/fov --metrics overlap auc --probs runs/prob
  unetkit evaluate runs/instances data/cells/masks --instances --metrics objects
"""


def _spacing(text: str) -> tuple:
    try:
        values = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas (e.g. 0.5,0.5), got {text!r}"
        ) from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _tolerance(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"expected a distance >= 0 in the spacing's unit (e.g. 2 or 0.5), got {text!r}"
        )
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate",
        help="score predicted label images against truth masks (CSV, JSON, Markdown report)",
        description="Score every predicted label image of PRED_DIR against the truth mask of the same stem in "
        "TRUTH_DIR: overlap, boundary, connectomics (Rand/VOI) and object metrics, per case and class.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "pred_dir", metavar="PRED_DIR", help="predicted label images (same values as the masks)"
    )
    parser.add_argument(
        "truth_dir", metavar="TRUTH_DIR", help="truth masks (or a dataset folder with masks/)"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        default=None,
        help="write per_case.csv, summary.json, report.md and pictures here",
    )
    parser.add_argument(
        "--fov", metavar="DIR", default=None, help="field-of-view masks by stem (e.g. DRIVE fov/)"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        metavar="M",
        default=None,
        help="metric groups or names (space or comma separated); default: all groups, auc only "
        "when --probs is given",
    )
    parser.add_argument(
        "--instances",
        action="store_true",
        help="masks and predictions are instance label images (each id > 0 is one object)",
    )
    parser.add_argument(
        "--labels",
        type=label_values,
        default=None,
        metavar="V,V,...",
        help="the class values in class order, e.g. 0,255 (default: inferred from the truth masks)",
    )
    parser.add_argument(
        "--images",
        metavar="DIR",
        default=None,
        help="images for the overlays (default: images/ beside a masks/ folder)",
    )
    parser.add_argument(
        "--probs", metavar="DIR", default=None, help="probability maps by stem, for the auc metric"
    )
    parser.add_argument(
        "--spacing",
        type=_spacing,
        default=None,
        metavar="S[,S...]",
        help="pixel size per axis for distances, in array order (y,x; z,y,x for volumes; "
        "default: from the truth files, else 1)",
    )
    parser.add_argument(
        "--nsd-tolerance",
        type=_tolerance,
        default=None,
        metavar="T",
        help="normalised surface Dice tolerance, in the spacing's unit (mm, um ...); boundaries "
        "this close count as agreeing (default: one pixel of the finest axis)",
    )
    parser.add_argument(
        "--mask-suffix",
        default=None,
        help="what the truth masks' names add to the case's, such as _mask for 01_mask.png "
        "(default: detected from the images beside the masks, or the predictions)",
    )
    parser.add_argument(
        "--ignore-value",
        type=int,
        metavar="V",
        help="the truth masks' value of unlabelled pixels (partial annotations, as unetkit train "
        "--ignore-value): left out, as outside a field of view; only the overlap metrics (and "
        "auc) are scored then",
    )
    parser.add_argument("--include-background", action="store_true", help="also score class 0")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ..data.labels import LabelMap
    from ..errors import ConfigError
    from ..evaluation.evaluate import evaluate_folders
    from ..utils import jsonable

    if args.labels is not None and args.instances:
        raise ConfigError(
            "--labels does not apply to --instances (instance masks are background 0 / object ids)"
        )
    result = evaluate_folders(
        args.pred_dir,
        args.truth_dir,
        out_dir=args.out,
        fov_dir=args.fov,
        metrics=args.metrics,
        instances=args.instances,
        label_map=LabelMap(args.labels) if args.labels is not None else None,
        image_dir=args.images,
        prob_dir=args.probs,
        spacing=args.spacing,
        include_background=args.include_background,
        nsd_tolerance=args.nsd_tolerance,
        mask_suffix=args.mask_suffix,
        ignore_value=args.ignore_value,
    )
    for warning in result.summary.get("warnings", []):
        print(f"unetkit evaluate: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(jsonable(result.summary), indent=2))
    else:
        s = result.summary
        print(f"{s['num_cases']} case(s), classes {', '.join(s['classes'])}")
        print(result.format(), end="")
        for path in result.files.values():
            print(f"wrote {path}")
    return 0
