"""``unetkit export CHECKPOINT``: write the model as ONNX, TorchScript or a bioimage.io package and
check it (against PyTorch; a package also with bioimage.io's own test); with ``--int8`` also an int8
ONNX copy, kept only where its labels agree with fp32 on the validation images."""

from __future__ import annotations

import argparse

EPILOG = """\
examples:
  unetkit export runs/unet/checkpoints/best.pt                      # -> best.onnx, checked
  unetkit export best.pt --format torchscript --output unet.torchscript.pt
  unetkit export best.pt --input-size 572                           # trace size (valid-padding U-Net)
  unetkit export best.pt --input-size 64,128,128 --opset 18 --no-check
  unetkit export best.pt --format bioimageio --output nuclei.zip --author "Ada Lovelace"
  unetkit export runs/unet/checkpoints/best.pt --int8               # + best.int8.onnx, if it agrees
  unetkit export best.pt --int8 --calibration data/train --validation data/val

The ONNX file has a dynamic batch axis, and dynamic spatial axes where the model's traced graph
generalises (checked at a second size); the unetkit metadata (label map, normalisation, tile size,
valid input sizes) is stored in it. ONNX export needs: pip install unetkit[export]

--int8 also writes <output>.int8.onnx: ONNX Runtime static int8 quantisation (QDQ, u8 activations,
7-bit per-channel int8 weights) calibrated on tiles of the training images, then the validation
images are predicted with both files through the same tiling. The int8 file is kept only where its
labels agree with fp32 on at least 99.9 % of the validation pixels; otherwise nothing is written
(not the fp32 file either) and the command exits with status 2 naming the agreement found. The speed of both on one tile is printed
and stored in the file. The images default to the run's own (RUN/config.yaml, RUN/splits.json);
--calibration / --validation take a dataset folder or a folder of images instead.

--format bioimageio writes a bioimage.io model package (.zip) for Fiji/deepImageJ, ilastik, QuPath
and napari: TorchScript and ONNX weights, the training normalisation as bioimage.io preprocessing,
softmax as postprocessing, test tensors, a cover, a README and citations; it is tested with
bioimageio.core before it is written (offline). Authors default to your login name, the licence
to CC-BY-4.0 (the model zoo's usual one for weights). Needs: pip install 'unetkit[bioimageio]'
"""

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "bioimageio": ".bioimageio.zip"}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a checkpoint to ONNX, TorchScript or a bioimage.io package (checked)",
        description="Export a checkpoint's model (logits output, eval mode) to ONNX, TorchScript "
        "or a bioimage.io package, then run the written file at two input shapes and compare it "
        "with PyTorch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", help="a unetkit checkpoint (.pt) written by 'unetkit train'")
    p.add_argument(
        "--format", choices=tuple(SUFFIXES), default="onnx", help="output format (default onnx)"
    )
    p.add_argument(
        "--output",
        "-o",
        help="file to write (default: CHECKPOINT with .onnx / .torchscript.pt / .bioimageio.zip)",
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
    q = p.add_argument_group("int8 (--format onnx)")
    q.add_argument(
        "--int8",
        action="store_true",
        help="also write an int8 copy (<output>.int8.onnx), kept only where its labels agree with "
        "fp32 on ≥ 99.9 %% of the validation pixels",
    )
    q.add_argument(
        "--calibration",
        metavar="DIR",
        help="images to calibrate the int8 ranges on (default: the run's training images)",
    )
    q.add_argument(
        "--validation",
        metavar="DIR",
        help="images the int8 labels are checked on (default: the run's validation images)",
    )
    bio = p.add_argument_group("bioimage.io package (--format bioimageio)")
    bio.add_argument(
        "--author",
        action="append",
        help="an author's name; repeat for several (default: your login name)",
    )
    bio.add_argument(
        "--license", default="CC-BY-4.0", help="SPDX licence of the weights (default CC-BY-4.0)"
    )
    bio.add_argument("--name", help="model name shown on bioimage.io (default from the model)")
    bio.add_argument("--tag", action="append", default=[], help="an extra tag; repeatable")
    bio.add_argument(
        "--sample",
        help="an image for the test tensors and the cover, or 'run' for the run's first "
        "validation image large enough (default: a seeded synthetic one; a package for upload "
        "then carries none of your data)",
    )
    p.set_defaults(run=run)


def default_output(checkpoint: str, fmt: str) -> str:
    """``runs/x/best.pt`` → ``runs/x/best.onnx`` (or ``best.torchscript.pt``)."""
    from pathlib import Path

    path = Path(checkpoint)
    return str(path.parent / (path.stem + SUFFIXES[fmt]))


def int8_output(onnx_output: str) -> str:
    """``runs/x/best.onnx`` → ``runs/x/best.int8.onnx`` (beside the fp32 file)."""
    from pathlib import Path

    path = Path(onnx_output)
    stem = path.name[: -len(".onnx")] if path.name.lower().endswith(".onnx") else path.name
    return str(path.parent / (stem + ".int8.onnx"))


def run(args) -> int:
    from pathlib import Path

    from ..errors import ConfigError, DataError
    from ..utils import check_output_file
    from .parsing import parse_value

    if not Path(args.checkpoint).exists():
        raise DataError("checkpoint not found", args.checkpoint)
    if not Path(args.checkpoint).is_file():
        from ..run_folder import folder_not_file

        raise DataError(folder_not_file(args.checkpoint), args.checkpoint)
    output = args.output or default_output(args.checkpoint, args.format)
    if Path(output).resolve() == Path(args.checkpoint).resolve():
        raise ConfigError(f"--output {output} would overwrite the checkpoint; choose another file")
    from ..run_folder import is_saved_weights

    if is_saved_weights(output):
        raise ConfigError(
            f"--output {output} is a PyTorch checkpoint, which the export would replace; choose "
            "another file (or delete it first)"
        )
    check_output_file(
        output
    )  # before torch is imported: a path that can never be written fails at once
    if args.int8 and args.format != "onnx":
        raise ConfigError(
            f"--int8 applies to --format onnx only (it quantises the ONNX file), not {args.format}"
        )
    if (args.calibration or args.validation) and not args.int8:
        raise ConfigError("--calibration and --validation go with --int8")
    int8_path = int8_output(output) if args.int8 else None
    if int8_path is not None:
        check_output_file(int8_path)
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

    if args.format == "bioimageio":
        return _bioimageio(args, output, size)
    if args.author or args.name or args.tag or args.sample:
        raise ConfigError("--author, --name, --tag and --sample apply to --format bioimageio only")

    from ..inference import export as ex

    if args.format == "onnx":
        ex.require("onnx")
        if not args.no_check or args.int8:
            ex.require("onnxruntime")
        sources = None
        if args.int8:  # every image found before anything is written
            from ..inference.quantize import run_images

            ex.require("onnxruntime.quantization")
            sources = run_images(args.checkpoint, args.calibration, args.validation)

        def export_to(path):
            return ex.export_onnx(
                args.checkpoint,
                path,
                input_size=size,
                opset=args.opset,
                dynamic=not args.static,
                check=not args.no_check,
                threads=args.threads,
            )

        if sources is None:
            print(export_to(output).describe(), flush=True)
            return 0
        # with --int8 both files or neither: the fp32 one is staged until the int8 one is kept,
        # so an int8 refusal (exit 2) leaves nothing new behind
        from ..utils import atomic_path

        with atomic_path(output) as staged:
            report = export_to(staged)
            int8 = _int8(staged, int8_path, sources, args.threads)
        report.path = Path(output)
        print(report.describe(), flush=True)
        int8.source = Path(output)
        print(int8.describe())
        return 0
    if args.static:
        raise ConfigError(
            "--static applies to ONNX only (a traced TorchScript module has no declared axes)"
        )
    report = ex.export_torchscript(
        args.checkpoint, output, input_size=size, check=not args.no_check
    )
    print(report.describe())
    return 0


def _int8(staged, int8_path: str, sources, threads):
    """Quantise the staged fp32 ONNX file into ``int8_path``: the report, or
    :class:`Int8Refused` (exit status 2) naming the agreement when the labels disagree."""
    from ..inference.export import OnnxRunner
    from ..inference.quantize import Int8Refused, quantize_int8

    print(sources.describe(), flush=True)
    orientation = OnnxRunner(staged, threads=threads).metadata.get("orientation")
    calibration, validation = sources.read(orientation)
    try:
        return quantize_int8(staged, int8_path, calibration, validation, threads=threads)
    except Int8Refused as exc:
        reason = str(exc).split(f"; {staged}")[0]
        raise Int8Refused(
            f"{reason}; nothing was written (export without --int8 for the fp32 model)",
            exc.report,
        ) from None


def _bioimageio(args, output: str, size) -> int:
    from ..errors import ConfigError

    if args.static:
        raise ConfigError(
            "--static applies to ONNX only (a bioimage.io package keeps dynamic axes)"
        )
    from ..inference.bioimageio import export_bioimageio, require_bioimageio

    require_bioimageio("bioimageio.core", "onnx", "onnxruntime")  # before the model is built
    report = export_bioimageio(
        args.checkpoint,
        output,
        input_size=size,
        authors=args.author,
        license=args.license,
        name=args.name,
        tags=args.tag,
        sample=args.sample,
        opset=args.opset,
        check=not args.no_check,
        threads=args.threads,
    )
    print(report.describe())
    return 0
