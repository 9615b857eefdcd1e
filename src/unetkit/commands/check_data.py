"""``unetkit check-data DIR``: validate a dataset folder before training.

Prints a summary (pairs, sizes, dtypes, channels, label values and class frequencies, intensity
statistics, NaN/inf counts) and the problems, one line each naming the file. Exit status 0 when
the dataset is clean, 2 when there is any problem. ``--labels 0,255`` states the class values: any
other mask value is then reported (without it, the ``labels`` of an nnU-Net ``dataset.json`` are
used when present, else the masks are checked against each other).
"""

from __future__ import annotations

import argparse

from .parsing import IGNORE_VALUE_HELP, MASK_KIND_HELP, MASK_KINDS, label_values


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-data",
        help="validate a dataset folder (pairs, sizes, labels, intensities) before training",
        description="Validate a dataset folder (images/ + masks/, case folders CASE/images/ + "
        "CASE/masks/ with one file per object, or nnU-Net imagesTr/ + labelsTr/) and list every "
        "problem, one line per file. Exit status 0 when clean, 2 on any problem.",
    )
    parser.add_argument("root", metavar="DIR", help="dataset folder, e.g. data/isbi2012/train")
    parser.add_argument(
        "--mask-suffix",
        default=None,
        metavar="S",
        help="suffix of mask names, e.g. _mask for 01_mask.png (default: detected)",
    )
    parser.add_argument(
        "--in-channels",
        type=_positive_int,
        default=None,
        metavar="N",
        help="expected image channel count (default: images must agree with each other)",
    )
    parser.add_argument(
        "--labels",
        type=label_values,
        default=None,
        metavar="V,V,...",
        help="the class values of the masks, e.g. 0,255; any other value is a problem (default: "
        "the labels of an nnU-Net dataset.json, else masks are compared with each other)",
    )
    parser.add_argument(
        "--mask-kind",
        default="auto",
        choices=MASK_KINDS,
        help=MASK_KIND_HELP,
    )
    parser.add_argument(
        "--max-classes",
        type=_positive_int,
        default=16,
        metavar="N",
        help="with --mask-kind auto, more distinct mask values than this is a problem (default 16)",
    )
    parser.add_argument("--ignore-value", type=int, metavar="V", help=IGNORE_VALUE_HELP)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(run=run)
    return parser


def run(args: argparse.Namespace) -> int:
    import json

    from ..data.checks import check_dataset
    from ..data.labels import LabelMap
    from ..errors import ConfigError

    if args.labels is not None and args.mask_kind in ("colors", "instances"):
        raise ConfigError(
            f"--labels lists integer class values; it does not apply to --mask-kind {args.mask_kind}"
        )
    label_map = LabelMap(args.labels) if args.labels is not None else None
    report = check_dataset(
        args.root,
        mask_suffix=args.mask_suffix,
        in_channels=args.in_channels,
        label_map=label_map,
        mask_kind=args.mask_kind,
        max_classes=args.max_classes,
        ignore_value=args.ignore_value,
    )
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.format())
    return 0 if report.ok else 2
