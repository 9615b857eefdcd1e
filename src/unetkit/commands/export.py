"""``unetkit export CHECKPOINT``: write the model as ONNX or TorchScript and check it against PyTorch."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  unetkit export runs/unet/checkpoints/best.pt                      # -> best.onnx, checked
  unetkit export best.pt --format torchscript --output unet.torchscript.pt
  unetkit export best.pt --input-size 572                           # trace size (valid-padding U-Net)
  unetkit export best.pt --input-size 64,128,128 --opset 18 --no-check

The ONNX file has a dynamic batch axis, and dynamic spatial axes where the model's traced graph
generalises (checked at a second size); the unetkit metadata (label map, normalisation, tile size,
valid input sizes) is stored in it. ONNX export needs: pip install unetkit[export]
"""

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX or TorchScript (checked against PyTorch)",
        description="Export a checkpoint's model (logits output, eval mode) to ONNX or TorchScript, "
        "then run the written file at two input shapes and compare it with PyTorch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a unetkit checkpoint (.pt) written by 'unetkit train'")
    p.add_argument(
        "--format", choices=tuple(SUFFIXES), default="onnx", help="output format (default onnx)"
    )
    p.add_argument(
        "--output", "-o", help="file to write (default: CHECKPOINT with .onnx / .torchscript.pt)"
    )
    p.add_argument(
        "--input-size",
        help="spatial size to trace at: 256 or 64,128,128 (default: the training "
        "patch size, rounded down to an exportable size)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    p.add_argument("--static", action="store_true", help="ONNX: fixed batch (1) and spatial size")
    p.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    p.add_argument(
        "--threads", type=int, help="onnxruntime threads for the check (default: all cores)"
    )
    p.set_defaults(run=run)


def default_output(checkpoint: str, fmt: str) -> str:
    """``runs/x/best.pt`` → ``runs/x/best.onnx`` (or ``best.torchscript.pt``)."""
    from pathlib import Path

    path = Path(checkpoint)
    return str(path.parent / (path.stem + SUFFIXES[fmt]))


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError, DataError
    from ..utils import check_output_file
    from .parsing import parse_value

    if not Path(args.checkpoint).exists():
        raise DataError("checkpoint not found", args.checkpoint)
    if not Path(args.checkpoint).is_file():
        raise DataError(
            "is a folder, not a checkpoint file; give the .pt file (e.g. RUN/checkpoints/best.pt)",
            args.checkpoint,
        )
    output = args.output or default_output(args.checkpoint, args.format)
    if Path(output).resolve() == Path(args.checkpoint).resolve():
        raise ConfigError(f"--output {output} would overwrite the checkpoint; choose another file")
    check_output_file(
        output
    )  # before torch is imported: a path that can never be written fails at once
    size = None
    if args.input_size:
        size = parse_value(args.input_size)
        if not (isinstance(size, int) and not isinstance(size, bool)) and not (
            isinstance(size, tuple)
            and all(isinstance(s, int) and not isinstance(s, bool) for s in size)
        ):
            raise ConfigError(
                f"--input-size must be integers like 256 or 64,128,128, got {args.input_size!r}"
            )

    from ..inference import export as ex

    if args.format == "onnx":
        ex.require("onnx")
        if not args.no_check:
            ex.require("onnxruntime")
        report = ex.export_onnx(
            args.checkpoint,
            output,
            input_size=size,
            opset=args.opset,
            dynamic=not args.static,
            check=not args.no_check,
            threads=args.threads,
        )
    else:
        if args.static:
            raise ConfigError(
                "--static applies to ONNX only (a traced TorchScript module has no declared axes)"
            )
        report = ex.export_torchscript(
            args.checkpoint, output, input_size=size, check=not args.no_check
        )
    print(report.describe())
    return 0
