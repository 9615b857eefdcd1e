"""``unetkit predict MODEL INPUT... --output DIR``: segment images of any size with one model or the
mean of several (a ``--folds`` run folder, or checkpoints joined by commas)."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  unetkit predict runs/unet-x/checkpoints/best.pt data/test --output preds
  unetkit predict best.pt big_slide.tif --output preds --probabilities --overlay --tta
  unetkit predict model.onnx data/test --output preds --backend onnxruntime
  unetkit predict model.zip data/test --output preds            # a bioimage.io package
  unetkit predict best.pt data/val/images --output preds --truth data/val/masks   # then evaluate
  unetkit predict runs/unet-x data/test --output preds          # a run folder: its best.pt, or
                                                                # every fold's of a --folds run
  unetkit predict a.pt,b.pt,c.pt data/test --output preds       # several models, averaged
  unetkit predict best.pt slides/ --output preds --dask local:2  # two worker processes
  unetkit predict best.pt slides/ --output preds --num-parts 8 --part-id $SLURM_ARRAY_TASK_ID
  unetkit predict best.pt nuclei/ --output preds --rois --geojson
                                      # each nucleus as a Fiji ROI and a QuPath detection
  unetkit predict best.pt cells/ --output preds --instances watershed --rois
                                      # touching cells split; <name>_instances.tif + ROIs

Labels are written in your masks' own values (e.g. 0/255) and in the input's format. Reruns skip
inputs whose outputs exist (--overwrite recomputes) and delete the temporary files a killed run
left; outputs are written atomically. A 1-channel model reads a grey image saved as RGB (three
equal channels) as grey; real colour images, NaN/inf values and wrong channel counts are refused.
Inputs may be .npy, PNG/JPEG, TIFF (any compression, tiled, pyramidal OME-TIFF), NIfTI and zarr /
OME-Zarr (.zarr folders). Images and volumes larger than 64 Mpx in .npy, TIFF or zarr are predicted
band by band (volumes slab by slab along z) in bounded memory, with the outputs of a whole-image
prediction.

Post-processing: the labels get the clean-ups that training kept because they improved the
validation images (small-object removal, hole filling, keep-largest: for a higher Dice; a watershed
split of touching objects, and the removal where the masks name objects: for a higher object F1 at a
Dice cost of at most 0.005; RUN/postprocess.json lists what was tried and the scores); an ensemble
applies the steps all its models chose (a removal at the smallest of their sizes). --postprocess
none writes the raw argmax. Exported models (.onnx, bioimage.io .zip) carry it; band-by-band images
get none.

Instances for Fiji and QuPath: --instances writes <name>_instances.tif, every object of the labels
numbered 1..N in raster order (0 = background; uint16, uint32 above 65535 objects; the input's pixel
size kept): 'components' numbers each class's connected objects, 'watershed' also splits touching
ones at the necks of their distance transform. --rois writes <name>_rois.zip (Fiji: ROI Manager >
More > Open), --geojson <name>.geojson (QuPath: File > Import objects), one outline per object named
<class>-<id> (the checkpoint's class names, else 'class V' with V the class's mask value); outer boundaries only, holes filled.
Both are 2D only and imply --instances (components unless told otherwise). Images predicted band by
band are refused with these flags: their objects span bands.

Many images, several processes or machines: --dask local:N spreads the images over N worker
processes here, --dask tcp://host:8786 over the workers of a running Dask scheduler (they need
unetkit and the same paths); each worker loads the model once, Dask retries the images of a worker
that dies, and the outputs are those of one process, byte for byte. --num-parts K --part-id i
predicts the i-th of K disjoint shares of the images (every K-th from the i-th), for job arrays.

MODEL may name several models: a run folder of 'unetkit train --folds K' (every fold listed in its
ensemble.json, or the fold_*/checkpoints/best.pt found) or paths joined by commas. Their class
probabilities are averaged (each model with its own normalisation and tiling) and the labels are
the argmax of the mean; the models must share label map, dimensionality and input channels. Band
by band, the models must also normalise and tile alike (the folds of one run do).
"""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="segment images or folders with a trained model",
        description="Predict label images (and optionally probabilities and overlays).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "model",
        help="checkpoint (.pt) written by unetkit train, an exported .onnx, a bioimage.io package "
        "(.zip), a run folder, or several joined by commas (a.pt,b.pt): their probabilities are "
        "averaged",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="image files and/or folders (a dataset folder with images/, case folders, a zarr "
        "store, a DICOM series folder; nnU-Net channel files CASE_0000, CASE_0001 … of one case "
        "are read together)",
    )
    p.add_argument(
        "--output",
        "-o",
        required=True,
        help="folder for the outputs (not the inputs' own folder)",
    )
    p.add_argument(
        "--tile", help="input tile size, e.g. 512 or 96,128,128 (default: planned per image)"
    )
    p.add_argument(
        "--overlap",
        type=float,
        help="overlap fraction of sliding-window tiles with --tile (default 0.5)",
    )
    p.add_argument(
        "--max-tile",
        type=int,
        help="largest planned tile side in pixels (default 640 in 2D, 768 for valid-padding nets, "
        "128 in 3D)",
    )
    p.add_argument(
        "--min-overlap",
        type=int,
        help="least overlap of planned tiles in pixels (default 128 in 2D, 32 in 3D); each pixel is "
        "predicted at least half of it from a tile edge",
    )
    p.add_argument(
        "--blend",
        choices=("crop", "gaussian", "constant"),
        default="crop",
        help="how overlapping tiles of same-padding nets are stitched: crop (each pixel from the tile "
        "where it lies farthest from an edge; default), gaussian (MONAI's blending) or constant",
    )
    p.add_argument(
        "--tta",
        nargs="?",
        const="auto",
        choices=("auto", "flip", "d4", "none"),
        default="none",
        help="test-time augmentation (default none): flips (and in 2D rotations: d4, the paper's "
        "8 versions); a bare --tta is auto: d4 in 2D, flips in 3D",
    )
    p.add_argument(
        "--probabilities",
        nargs="?",
        const="tiff",
        choices=("tiff", "npz"),
        help="also write probability maps (float32 TIFF that Fiji opens, or float16 npz)",
    )
    p.add_argument("--overlay", action="store_true", help="also write <name>_overlay.png")
    p.add_argument(
        "--instances",
        nargs="?",
        const="components",
        choices=("components", "watershed"),
        help="also write <name>_instances.tif, each object its own id: components (connected "
        "objects of each class; the default) or watershed (touching objects split)",
    )
    p.add_argument(
        "--rois",
        action="store_true",
        help="also write <name>_rois.zip, one ImageJ ROI per object (Fiji ROI Manager; 2D only)",
    )
    p.add_argument(
        "--geojson",
        action="store_true",
        help="also write <name>.geojson, one QuPath detection per object (File > Import objects; "
        "2D only)",
    )
    p.add_argument(
        "--postprocess",
        choices=("auto", "none"),
        default="auto",
        help="auto (default): apply the post-processing validation chose for the checkpoint; "
        "none: the raw argmax",
    )
    p.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="spread the images over Dask workers: local:N (N worker processes here; local "
        "alone: 2, or with --device cuda one per GPU, each on its own) or a scheduler address "
        "such as tcp://host:8786 (workers need unetkit and the files)",
    )
    p.add_argument(
        "--num-parts",
        type=int,
        help="split the images into this many disjoint shares (with --part-id; e.g. SLURM arrays)",
    )
    p.add_argument("--part-id", type=int, help="which share to predict, 0 … num-parts − 1")
    p.add_argument(
        "--level",
        type=int,
        default=0,
        help="pyramid level of pyramidal TIFF/OME-TIFF and OME-Zarr inputs (0 = full resolution, "
        "the default); outputs have that level's size and pixel size",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "bf16", "fp16", "fp32"),
        help="auto (the default): bf16 where the device computes it natively, else fp32",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=("torch", "onnxruntime"),
        help="torch (the default) or onnxruntime (for an exported .onnx model, or the ONNX "
        "weights of a bioimage.io package)",
    )
    p.add_argument(
        "--batch-size", type=int, help="tiles per forward pass (default 1 on CPU, 4 on GPU)"
    )
    p.add_argument("--threads", type=int, help="CPU threads")
    p.add_argument("--overwrite", action="store_true", help="recompute inputs whose outputs exist")
    p.add_argument("--truth", help="mask folder: evaluate the predictions against it afterwards")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def build_predictor(args):
    """The predictor of ``args.model``: one model, or an ensemble of the several it names."""
    from ..errors import ConfigError
    from ..run_folder import model_files
    from .parsing import parse_value

    tile = parse_value(args.tile) if args.tile else None
    if tile is not None and not isinstance(tile, (int, tuple)):
        raise ConfigError(f"--tile must be integers like 512 or 96,128,128, got {args.tile!r}")
    tta = True if args.tta == "auto" else args.tta
    common = dict(
        tile=list(tile) if isinstance(tile, tuple) else tile,
        overlap=args.overlap,
        blend=args.blend,
        max_tile=args.max_tile,
        min_overlap=args.min_overlap,
        tta=tta,
        batch_size=args.batch_size,
        threads=args.threads,
    )
    files = model_files(args.model)
    if len(files) == 1:
        return _one_predictor(files[0], args, common)
    from ..inference.ensemble import EnsemblePredictor

    return EnsemblePredictor([_one_predictor(f, args, common) for f in files], files)


def _one_predictor(model_path, args, common: dict):
    from ..errors import ConfigError
    from ..inference.predictor import Predictor

    if model_path.suffix.lower() == ".zip":  # a bioimage.io package: its weights, our tiling
        from ..inference.bioimageio import package_predictor
        from ..inference.postprocess import PostProcessing

        if args.postprocess == "none":
            common["postprocess"] = PostProcessing()
        return package_predictor(model_path, args.backend, args.device, args.precision, **common)
    if args.postprocess == "none":
        from ..inference.postprocess import PostProcessing

        common["postprocess"] = PostProcessing()
    onnx = model_path.suffix.lower() == ".onnx"
    if args.backend == "onnxruntime" or onnx:
        try:
            from ..inference.export import OnnxRunner
        except ImportError as exc:
            raise ConfigError(
                f"the onnxruntime backend is unavailable ({exc}); pip install 'unetkit[export]'"
            ) from None
        if not onnx:
            raise ConfigError(
                "--backend onnxruntime needs an exported .onnx model (unetkit export CHECKPOINT)"
            )
        if args.device not in (None, "auto", "cpu") or args.precision not in (None, "auto", "fp32"):
            raise ConfigError(
                f"an .onnx model runs on the CPU in fp32 (onnxruntime); drop --device "
                f"{args.device} / --precision {args.precision}, or predict with the checkpoint"
            )
        return OnnxRunner(model_path, threads=args.threads).predictor(**common)
    return Predictor.from_checkpoint(
        model_path, device=args.device, precision=args.precision, **common
    )


def output_settings(args) -> str:
    """The settings besides the model that change what ``predict`` writes (pyramid level,
    test-time augmentation, post-processing, the instance method), as a suffix of the model id
    an output folder records: a rerun with another of them predicts again instead of skipping
    the old outputs as done. Defaults add nothing, so folders recorded before still match."""
    parts = [
        f"level {args.level}" if args.level else "",
        f"tta {args.tta}" if args.tta not in (None, "none") else "",
        f"postprocess {args.postprocess}" if args.postprocess not in (None, "auto") else "",
        f"instances {args.instances}" if args.instances not in (None, "components") else "",
    ]
    return "".join(f" {p}" for p in parts if p)


def preflight(args) -> None:
    """Checks that need no model (standard library only, before torch is imported): numeric
    settings, the model and input paths exist, the output folder can be a folder. Each failure is
    one error naming the option, value or path."""
    from pathlib import Path

    from ..errors import ConfigError, DataError
    from ..run_folder import model_files
    from ..utils import check_output_dir, check_tile_settings
    from .parsing import parse_value

    tile = parse_value(args.tile) if args.tile else None
    if tile is not None and not isinstance(tile, (int, tuple)):
        raise ConfigError(f"--tile must be integers like 512 or 96,128,128, got {args.tile!r}")
    check_tile_settings(
        tile, args.overlap, args.max_tile, args.min_overlap, args.batch_size, args.threads
    )
    if (args.num_parts is None) != (args.part_id is None):
        raise ConfigError("--num-parts and --part-id go together (e.g. --num-parts 4 --part-id 0)")
    if args.num_parts is not None and not (
        args.num_parts >= 1 and 0 <= args.part_id < args.num_parts
    ):
        raise ConfigError(
            f"--part-id {args.part_id} of --num-parts {args.num_parts}: the part id must be "
            f"0 … num-parts − 1 and num-parts ≥ 1"
        )
    if args.level < 0:
        raise ConfigError(f"--level must be 0 (full resolution) or more, got {args.level}")
    model_files(args.model)  # every model file exists (a run folder: its checkpoints)
    for inp in args.inputs:
        if not Path(inp).exists():
            raise DataError("input not found", inp)
    if args.truth is not None and not Path(args.truth).is_dir():  # before predicting, not after
        raise DataError("--truth: mask folder not found", args.truth)
    check_output_dir(args.output)


def run(args) -> int:
    preflight(args)
    from pathlib import Path

    from .. import runtime
    from ..inference.batch import predict_files
    from ..run_folder import (
        incomplete_folds_warning,
        model_digest,
        model_files,
        ordered_model_digest,
        weak_folds_warning,
    )

    predictor = build_predictor(args)
    # the process is the command's: its threads, and on CPU freed activations kept for the next tile
    runtime.configure_process(args.threads, reuse_freed_memory=predictor.device.type == "cpu")
    print(predictor.describe(), flush=True)
    for warning in (weak_folds_warning(args.model), incomplete_folds_warning(args.model)):
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
    ensemble_line = getattr(predictor, "postprocess_line", None)
    if ensemble_line is not None:
        line = ensemble_line(getattr(predictor, "spacing_unit", None))
        if line:
            print(line)
    elif predictor.postprocess:
        steps = predictor.postprocess.describe(
            getattr(predictor, "spacing_unit", None), predictor.spatial_dims
        )
        print(f"post-processing (chosen on validation): {steps}")
    files = model_files(args.model)
    model_id = model_digest(files) + output_settings(args)
    if len(files) > 1 and Path(args.output).is_dir():  # recorded in member order before
        from ..inference.batch import adopt_record

        adopt_record(
            Path(args.output), ordered_model_digest(files) + output_settings(args), model_id
        )
    outputs = dict(
        probabilities=args.probabilities,
        overlay=args.overlay,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        instances=args.instances,
        rois=args.rois,
        geojson=args.geojson,
        part=None if args.num_parts is None else (args.part_id, args.num_parts),
        level=args.level,
        # outputs of another model, or of other settings that change what is written, in the
        # folder are not skipped as done
        model_id=model_id,
    )
    if args.dask:
        import functools

        from ..inference import cluster

        client, threads = cluster.connect(args.dask, args.threads, gpus=cluster.uses_gpu(predictor))
        try:
            print(f"Dask: {len(client.scheduler_info()['workers'])} worker(s) at {args.dask}")
            results = cluster.predict_files_dask(
                functools.partial(build_predictor, args),
                args.inputs,
                args.output,
                client,
                threads=threads,
                predictor=predictor,
                say=lambda line: print(f"note: {line}"),
                **outputs,
            )
        finally:
            cluster.close(client)
    else:
        results = predict_files(
            predictor, args.inputs, args.output, say=lambda line: print(f"note: {line}"), **outputs
        )
    written = sum(r.status == "written" for r in results)
    skipped = len(results) - written
    again = " (--overwrite predicts them again)" if skipped else ""
    print(
        f"predicted {written} image(s), skipped {skipped} already done{again}; outputs in "
        f"{args.output}"
    )
    if args.truth:
        from ..evaluation import evaluate_folders

        result = evaluate_folders(
            args.output,
            args.truth,
            out_dir=f"{args.output}/evaluation",
            label_map=predictor.label_map,
        )
        print(result.format() if hasattr(result, "format") else result)
    return 0
