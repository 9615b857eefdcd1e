"""``unetkit plan DATA_DIR``: fingerprint the data, measure this machine, print and save the plan."""

from __future__ import annotations

import argparse

from .parsing import (
    CHANNEL_NAMES_HELP,
    IGNORE_VALUE_HELP,
    MASK_KIND_HELP,
    MASK_KINDS,
    channel_names,
)

EPILOG = """\
examples:
  unetkit plan data/train --time-budget 5             # prints the decisions, writes plan.json
  unetkit plan data/train --val data/val --output runs/plan.json
  unetkit train data/train --plan runs/plan.json      # train with a saved plan

The plan fits the budget on THIS machine: the probe times a few training steps of each candidate
network (cached per machine). 'unetkit train DATA_DIR' makes the same plan itself when no --config
is given.
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "plan",
        help="plan network, patch, batch, augmentation and schedule from the data and the time "
        "budget",
        description="Fingerprint a dataset, time candidate networks on this machine and choose "
        "patch, depth, width, batch, loss, sampling, augmentation and schedule for the time "
        "budget; every decision is printed with its reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "data_dir",
        help="training folder: images/ + masks/, case folders (CASE/images/ + CASE/masks/, one "
        "file per object) or nnU-Net imagesTr/ + labelsTr/",
    )
    p.add_argument(
        "--val",
        metavar="VAL_DIR",
        help="fixed validation folder (its size sets the validation cost)",
    )
    p.add_argument(
        "--time-budget",
        type=float,
        metavar="MINUTES",
        help="training time to plan for (default 10)",
    )
    p.add_argument(
        "--device", default="auto", help="auto, cpu, cuda or cuda:N (where training will run)"
    )
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp16", "fp32"),
        help="the precision training will use (as unetkit train --precision): the probe times it "
        "(default auto: bf16 where the device computes it natively)",
    )
    p.add_argument(
        "--scale",
        type=float,
        help="plan for this fraction of the stored resolution (default: planned; 1 = as stored)",
    )
    p.add_argument(
        "--target-spacing",
        help="plan for every case resampled to this voxel size, in the files' unit and array "
        "order: 1 or 3,0.8,0.8 (as unetkit train --target-spacing; default: planned where the "
        "cases' voxel sizes differ)",
    )
    p.add_argument("--mask-suffix", help="mask file suffix such as _mask (default: detected)")
    p.add_argument("--mask-kind", choices=MASK_KINDS, default="auto", help=MASK_KIND_HELP)
    p.add_argument("--ignore-value", type=int, metavar="V", help=IGNORE_VALUE_HELP)
    p.add_argument("--channel-names", type=channel_names, metavar="NAMES", help=CHANNEL_NAMES_HELP)
    p.add_argument(
        "--orientation",
        metavar="CODE",
        help="plan for volumes turned to this orientation (RAS, LPS …, as unetkit train "
        "--orientation); the plan keeps it for train --plan",
    )
    p.add_argument(
        "--output", default="plan.json", help="where to write the plan (default plan.json)"
    )
    p.set_defaults(run=run)


def make_plan_for(
    data_dir,
    val_dir=None,
    budget_minutes=None,
    device: str = "auto",
    mask_suffix=None,
    mask_kind: str = "auto",
    say=print,
    scale=None,
    channel_names=None,
    orientation=None,
    target_spacing=None,
    precision: str = "auto",
    ignore_value=None,
):
    """Fingerprint ``data_dir`` and plan for ``budget_minutes`` on ``device`` (shared with train);
    ``scale``: a resolution the user fixed (one factor, or one per axis: their smallest is planned
    for); ``channel_names``: the user's (``--channel-names``), one per image channel;
    ``orientation``: the code volumes are turned to (``data.orientation``), so that the fingerprint
    measures the arrays the net will see; ``precision``: the one training will use (the probe
    times it); ``ignore_value``: the mask value of unlabelled pixels (``--ignore-value``)."""
    from ..data.discovery import find_cases, scan_dataset
    from ..data.fingerprint import fingerprint_dataset
    from ..errors import ConfigError
    from ..planning import make_plan

    fp = fingerprint_dataset(
        data_dir,
        val_dir,
        mask_suffix=mask_suffix,
        mask_kind=mask_kind,
        orientation=orientation,
        ignore_value=ignore_value,
    )
    for line in fp.describe():
        say(f"data: {line}")
    if channel_names is not None and len(channel_names) != fp.channels:
        raise ConfigError(
            f"--channel-names gives {len(channel_names)} name(s) ({', '.join(channel_names)}) but "
            f"the images have {fp.channels} channel(s); give one name per channel"
        )
    from ..io.readers import spatial_shape

    val = find_cases(val_dir, mask_suffix=mask_suffix) if val_dir is not None else None
    sizes = [spatial_shape(c.images[0]) for c in val] if val else None
    return make_plan(
        fp,
        budget_minutes,
        device,
        val_cases=len(val) if val is not None else None,
        val_sizes=sizes if sizes and all(sizes) else None,
        progress=lambda m: say(f"probe: {m}"),
        scale=min(scale) if isinstance(scale, (list, tuple)) else scale,
        channel_names=channel_names,
        dataset_json=scan_dataset(data_dir, mask_suffix=mask_suffix).dataset_json,
        target_spacing=target_spacing,
        precision=precision,
    )


def run(args) -> int:
    from .. import runtime
    from ..errors import ConfigError
    from ..utils import check_output_file

    # every argument is checked before any image is read
    if args.time_budget is not None and not args.time_budget > 0:
        raise ConfigError(f"--time-budget must be > 0 minutes, got {args.time_budget:g}")
    if args.scale is not None and not 0 < args.scale <= 4:
        raise ConfigError(f"--scale must be in (0, 4], got {args.scale:g}")
    target_spacing = _target_spacing(args.target_spacing)
    if target_spacing is not None and args.scale is not None:
        raise ConfigError(
            "give --scale or --target-spacing, not both (a target spacing is the resolution)"
        )
    from ..io.orientation import check_orientation

    orientation = check_orientation(args.orientation, "--orientation")
    runtime.resolve_precision(args.precision, runtime.resolve_device(args.device))
    check_output_file(args.output)
    plan = make_plan_for(
        args.data_dir,
        args.val,
        args.time_budget,
        args.device,
        args.mask_suffix,
        args.mask_kind,
        ignore_value=args.ignore_value,
        scale=args.scale,
        channel_names=args.channel_names,
        orientation=orientation,
        target_spacing=target_spacing,
        precision=args.precision,
    )
    if orientation is not None:
        plan.decide(
            "orientation",
            orientation,
            "set by the user (--orientation): volumes with a stated geometry are turned to it "
            "before they are measured, trained and predicted",
            **{"data.orientation": orientation},
        )
    print(plan.table())
    plan.save(args.output)
    print(
        f"\nwrote {args.output}; train with it: unetkit train {args.data_dir} --plan {args.output}"
    )
    return 0


def _target_spacing(text):
    """``--target-spacing`` as a list of positive numbers (one, or one per axis), or ``None``."""
    from ..errors import ConfigError
    from .parsing import parse_value

    if text is None:
        return None
    value = parse_value(text)
    values = list(value) if isinstance(value, (tuple, list)) else [value]
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values
    ):
        raise ConfigError(
            f"--target-spacing must be positive numbers like 1 or 3,0.8,0.8, got {text!r}"
        )
    return [float(v) for v in values]
