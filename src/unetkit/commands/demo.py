"""``unetkit demo``: the whole job on synthetic touching cells, end to end (what ``make demo`` runs)."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  unetkit demo                          # about 6–7 minutes on 2 CPU cores; report in demo_out/report/
  unetkit demo --quick --out /tmp/demo  # about a minute: a smaller set and 36 s of training
  unetkit demo --no-weight-map --out demo_ablation   # the same run without the border weight map

Steps: seeded synthetic microscopy (touching irregular cells, thin gaps, uneven illumination, blur,
noise) → train the original valid-padding U-Net with elastic augmentation and the paper's
border-weighted cross-entropy → overlap-tile prediction of a large image → watershed instances →
pixel and object metrics → report (curves, overlays, weight map, metrics table, README.md).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="the whole job on synthetic cells: data, training, overlap-tile, instances, report",
        description="Generate touching cells, train the original U-Net with the border weight map, "
        "predict a large image by overlap-tile, separate and evaluate the cells, and "
        "write a report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--out",
        default="demo_out",
        metavar="DIR",
        help="demo folder: data/, run/ and report/ (default demo_out; replaced by the next demo)",
    )
    p.add_argument(
        "--quick", action="store_true", help="small data set and 36 s of training (about a minute)"
    )
    p.add_argument(
        "--no-weight-map",
        action="store_true",
        help="train without the border weight map (the ablation: touching cells merge)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the data and the training (default 0)"
    )
    p.add_argument(
        "--minutes", type=float, metavar="M", help="training time budget (default 6, --quick 0.6)"
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: one per core)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (epoch lines only)")
    p.set_defaults(run=run)


def run(args) -> int:
    from .. import runtime
    from ..demo.pipeline import DemoOptions, run_demo

    options = DemoOptions(
        out_dir=args.out,
        quick=args.quick,
        weight_map=not args.no_weight_map,
        seed=args.seed,
        train_minutes=args.minutes,
        threads=args.threads,
        progress=not args.no_progress,
    )
    # the process is the command's: the demo trains and predicts on the auto device
    runtime.configure_process(
        options.threads, reuse_freed_memory=runtime.resolve_device("auto").type == "cpu"
    )
    run_demo(options)
    return 0
