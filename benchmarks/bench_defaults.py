"""unetkit's planned defaults vs MONAI's common recipe, same wall-clock budget, on the shared sets.

* **unetkit**: exactly what a user runs, no flag but the budget:
  ``unetkit train TRAIN --val VAL --time-budget M`` (it plans from the data and this machine, trains,
  keeps ``checkpoints/best.pt`` chosen on VAL), then ``unetkit predict best.pt VAL/images -o OUT``.
* **example** (``--recipes``): the shipped hand-tuned recipe of the set, ``unetkit train TRAIN --val VAL
  --config examples/SET.yaml --time-budget M`` (ISBI 2012 and DRIVE have one), predicted the same
  way: the planned defaults should match or beat it.
* **MONAI's common recipe**: ``BasicUNet(features=(32, 32, 64, 128, 256, 32))``,
  ``DiceCELoss(to_onehot_y=True, softmax=True)``, Adam lr 1e-3, batches of 4 random 256² crops
  (a shorter side: whole, mirror-padded to 256) with random flips, intensities z-scored per
  image, fp32, the last weights; prediction with ``sliding_window_inference`` (roi 256, overlap 0.25).

Every step runs in its own process with ``OMP_NUM_THREADS=2`` (unetkit takes torch's default
thread count from it). Training minutes are wall-clock from process start to the end of training
(unetkit's include its planning: the budget is the whole command's); predict seconds are the
wall-clock of the predicting process, start-up included. Both sides write label images, scored
here by one function (``scoring.case_scores``): Dice and pixel error of the structure (ISBI 2012:
membrane = mask value 0; DRIVE: vessels inside the field of view; MoNuSeg: nuclei) and, for
MoNuSeg, object F1 at IoU 0.5 of the prediction's connected components against the instances.
unetkit's ``best.pt`` is chosen on the same validation images (what ``--val`` does for a user);
MONAI's recipe keeps its last weights.

``monuseg-fluo`` (``--sets``, not in the default list) stands in for the grey fluorescence nuclei
sets unetkit is also judged on: MoNuSeg's haematoxylin channel as bright nuclei on black, cut to
odd sizes and saved as RGBA (:func:`make_fluorescence_set`). unetkit trains on its train split
alone, as ``unetkit train DATA --time-budget M`` with no ``--val`` (it holds out its own
validation images), and both recipes are scored on the val split, which the run never saw.
``polyp-like`` stands in for the colour endoscopy sets of varying size in the same way: DRIVE's
fundus images resized to 481–1348 px wide, each with one or two large, low-contrast dome-shaped
objects drawn in (:func:`make_polyp_set`); trained and scored as ``monuseg-fluo``.

    python benchmarks/bench_defaults.py [--minutes 5] [--sets isbi2012,drive,monuseg]
        (or --sets monuseg-fluo,polyp-like)
        [--recipes unetkit,example,monai] [--data ../shared/data] [--out results.json] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from scoring import case_scores, mean_scores

REPO = Path(__file__).resolve().parents[1]
SETS = ("isbi2012", "drive", "monuseg")
#: Sets built here from a shared one (:func:`make_fluorescence_set`, :func:`make_polyp_set`), by
#: the shared set each is made from; not in the default list.
DERIVED = {"monuseg-fluo": "monuseg", "polyp-like": "drive"}
#: What each set's Dice measures; ISBI 2012's structure is the mask value 0 (membrane).
STRUCTURE = {
    "isbi2012": "membrane",
    "drive": "vessels in the field of view",
    "monuseg": "nuclei",
    "monuseg-fluo": "nuclei",
    "polyp-like": "polyps",
}
#: Crop sizes (H, W) of the fluorescence-like set: the odd sizes of fluorescence nuclei sets
#: (BBBC038 / DSB 2018 ship 256×256, 256×320, 260×347, 360×360, 520×696, 512×640 and strips).
FLUO_SIZES = ((256, 256), (256, 320), (260, 347), (360, 360), (520, 696), (161, 519), (512, 640))
#: Sizes (H, W) of the endoscopy-like set (:func:`make_polyp_set`): the 481–1348 px widths of the
#: endoscopy frames #14 names, at their usual 4:3 to 5:4 aspect.
POLYP_SIZES = (
    (400, 481),
    (480, 576),
    (500, 622),
    (576, 720),
    (640, 810),
    (768, 1000),
    (1080, 1348),
)
#: the polyps' mean radius as a fraction of the image's short side (0.16–0.5 of it across)
POLYP_RADIUS = (0.08, 0.25)
THREADS = 2
CROP, BATCH = 256, 4


def make_fluorescence_set(monuseg: Path, out: Path) -> Path:
    """A grey fluorescence-like nuclei set from MoNuSeg, with real nuclei shapes and instances.

    Each H&E image becomes its haematoxylin optical density (``skimage.color.rgb2hed``), scaled to
    0–255 by its 1st–99.8th percentiles: bright nuclei on a dark background, as in a DAPI/Hoechst
    channel. Two crops of different :data:`FLUO_SIZES` per image give odd sizes; the grey is saved
    as RGBA, as many fluorescence sets are. Masks stay binary 0/255 with an ``instances/`` folder.
    Returns ``out`` holding ``train/`` and ``val/`` (MoNuSeg's own split).
    """
    from PIL import Image
    from skimage.color import rgb2hed

    k = 0
    for split in ("train", "val"):
        for sub in ("images", "masks", "instances"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((monuseg / split / "images").glob("*.png")):
            rgb = read_png(path)[..., :3]
            haem = rgb2hed(rgb)[..., 0]
            lo, hi = np.percentile(haem, (1, 99.8))
            grey = (np.clip((haem - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
            mask = read_png(monuseg / split / "masks" / path.name)
            inst = read_png(monuseg / split / "instances" / path.name)
            for corner in ((0, 0), (1, 1)):  # top-left and bottom-right: never overlapping
                h, w = FLUO_SIZES[k % len(FLUO_SIZES)]
                k += 1
                y0 = 0 if corner[0] == 0 else grey.shape[0] - h
                x0 = 0 if corner[1] == 0 else grey.shape[1] - w
                window = np.s_[y0 : y0 + h, x0 : x0 + w]
                rgba = np.dstack([grey[window]] * 3 + [np.full((h, w), 255, np.uint8)])
                name = f"{path.stem}_{corner[0]}.png"
                Image.fromarray(rgba).save(out / split / "images" / name)
                Image.fromarray(mask[window]).save(out / split / "masks" / name)
                Image.fromarray(inst[window].astype(np.uint16)).save(
                    out / split / "instances" / name
                )
    return out


def _polyp(shape: tuple[int, int], fov: np.ndarray, rng: np.random.Generator):
    """One polyp-like object in an image of ``shape``, centred at a random pixel of ``fov``: its
    mask, its surface normal ``(3, H, W)`` and ``rho``, the distance from its centre in units of
    its wobbly radius (1 on the edge)."""
    h, w = shape
    radius = rng.uniform(*POLYP_RADIUS) * min(h, w)
    ys, xs = np.nonzero(fov)
    k = rng.integers(0, len(ys))
    cy, cx = int(ys[k]), int(xs[k])
    aspect, angle = rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / aspect
    phi = np.arctan2(v, u)
    wobble = 1 + sum(
        rng.uniform(0, 0.08) * np.cos(j * phi + rng.uniform(0, 2 * np.pi)) for j in range(2, 6)
    )
    rho = np.hypot(u, v) / (radius * wobble)  # 1 on the wobbly edge
    mask = rho < 1
    height = np.clip(1 - rho**2, 0, 1)  # a low dome: the slopes stay gentle up to its edge
    gy, gx = np.gradient(height * radius * 0.6)
    normal = np.stack([-gx, -gy, np.ones_like(gx)])
    normal /= np.linalg.norm(normal, axis=0)
    return mask, normal, rho


def make_polyp_set(drive: Path, out: Path) -> Path:
    """An endoscopy-like colour set of large low-contrast objects ("polyps") from DRIVE's fundus images.

    The hidden endoscopy sets #14 names (colour, 481–1348 px wide, one large polyp per image) have
    no public stand-in on this disk. Here each DRIVE image (reddish, textured, black outside a
    round field of view, as endoscopy frames are) is resized to one of :data:`POLYP_SIZES` and gets
    one polyp-like object (two in one image of six): a dome 0.16–0.5 × the short side across, with
    a wobbly edge, lit from near the camera (darker toward its edge, specular spots), a faint
    shadow around it, cut by the field of view, slightly redder than the tissue, and the tissue's own texture from elsewhere in the image
    inside it (so its vessels do not continue across the edge). Its colour alone does not tell it
    from the tissue; the shading, the edge and its size do, so a net must see most of the object.
    Two variants of each image, seeded by name; masks binary 0/255. Returns ``out`` holding
    ``train/`` and ``val/`` (DRIVE's own split).
    """
    from PIL import Image
    from scipy import ndimage
    from skimage.transform import resize

    k = 0
    for split in ("train", "val"):
        for sub in ("images", "masks"):
            (out / split / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((drive / split / "images").glob("*.png")):
            source = read_png(path)[..., :3].astype(np.float32)
            source_fov = read_png(drive / split / "fov" / path.name) > 0
            for variant in range(2):
                rng = np.random.default_rng([int(path.stem), variant])
                h, w = POLYP_SIZES[k % len(POLYP_SIZES)]
                k += 1
                tissue = resize(source, (h, w), order=1, anti_aliasing=True)
                fov = resize(source_fov.astype(np.float32), (h, w), order=1) > 0.5
                core = fov & (resize(source_fov.astype(np.float32), (h, w), order=0) > 0)
                depth = ndimage.distance_transform_edt(core)
                inner = depth > 0.15 * min(h, w)  # centres 15 % of the short side off the FOV edge
                deep = depth > 0.03 * min(h, w)  # off the dark rim: detail taken from here only
                sigma = (0.03 * min(h, w), 0.03 * min(h, w), 0)
                smooth = np.maximum(ndimage.gaussian_filter(tissue, sigma), 1.0)
                image, mask = tissue.copy(), np.zeros((h, w), bool)
                # the light comes from near the camera, as an endoscope's does
                light = np.array([*rng.normal(0, 0.3, 2), 1.0])
                light /= np.linalg.norm(light)
                for _ in range(2 if rng.random() < 1 / 6 else 1):
                    inside, normal, rho = _polyp((h, w), inner, rng)
                    inside &= fov  # the field of view cuts it, as the frame cuts a polyp
                    # the detail of tissue elsewhere at the local brightness of the tissue here
                    shift = tuple(int(s) for s in rng.integers(-min(h, w) // 3, min(h, w) // 3, 2))
                    ratio = np.roll(tissue / smooth, shift, axis=(0, 1))
                    usable = np.roll(deep, shift, axis=(0, 1))[..., None]
                    texture = np.where(usable, ratio * smooth, tissue)
                    lit = np.tensordot(light, normal, axes=1)
                    shade = 0.7 + 0.35 * lit
                    tint = np.array([rng.uniform(1.02, 1.08), rng.uniform(0.92, 0.98), 0.95])
                    dome = texture * tint * shade[..., None]
                    # a soft edge, 8 % of the radius wide
                    edge = np.clip((1 - rho) / 0.08, 0, 1)[..., None]
                    image = image * (1 - edge) + dome * edge
                    rim = (rho >= 1) & (rho < 1.06)  # a faint shadow around it
                    image[rim] *= 0.93
                    spec = lit > 0.998
                    image[spec & inside] = 0.6 * image[spec & inside] + 0.4 * 255
                    mask |= inside
                image = image * rng.uniform(0.85, 1.15) + rng.normal(0, 3, image.shape)
                image[~fov] = tissue[~fov]
                name = f"{path.stem}_{variant}.png"
                rgb = np.clip(image, 0, 255).astype(np.uint8)
                Image.fromarray(rgb).save(out / split / "images" / name)
                Image.fromarray((mask * 255).astype(np.uint8)).save(out / split / "masks" / name)
    return out


def read_png(path: Path) -> np.ndarray:
    """A PNG as ``(H, W)`` or ``(H, W, 3)``: grey or colour as stored, without an alpha channel.

    The alpha channel is dropped (as unetkit's reader drops it): kept, MONAI's recipe would get a
    constant fourth channel of 255 beside the grey of the fluorescence set's RGBA images, and its
    z-score over all channels would squeeze the grey signal into a fraction of the unit range.
    """
    from PIL import Image

    image = Image.open(path)
    if image.mode in ("RGBA", "LA"):  # not palette images: a mask's palette indices are its labels
        image = image.convert(image.mode[:-1] if image.mode == "LA" else "RGB")
    return np.asarray(image)


def structure(mask: np.ndarray, dataset: str) -> np.ndarray:
    """The scored structure of a mask (or predicted label image) of the mask's values."""
    return mask == 0 if dataset == "isbi2012" else mask > 0


def score_set(pred_dir: Path, val: Path, dataset: str) -> dict:
    """Mean :func:`scoring.case_scores` of the label images in ``pred_dir`` against ``val``."""
    from unetkit.io.naming import prediction_paths

    per_case = []
    for path in sorted((val / "masks").glob("*.png")):
        pred = read_png(prediction_paths(pred_dir, path.stem, path.suffix)["labels"])
        roi = read_png(val / "fov" / path.name) > 0 if (val / "fov").is_dir() else None
        inst = val / "instances" / path.name
        per_case.append(
            case_scores(
                structure(pred, dataset),
                structure(read_png(path), dataset),
                roi=roi,
                instances=read_png(inst).astype(np.int64) if inst.is_file() else None,
            )
        )
    return mean_scores(per_case)


def timed(cmd: list[str], log: Path, cwd: Path | None = None) -> float:
    """Run ``cmd`` with :data:`THREADS` threads, output to ``log``; returns its wall-clock seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": str(THREADS)}
    t0 = time.monotonic()
    with open(log, "w") as f:
        res = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed; see {log}:\n{log.read_text()[-3000:]}")
    return seconds


def run_unetkit(
    train: Path,
    val: Path,
    minutes: float,
    work: Path,
    config: Path | None = None,
    held_out: bool = False,
) -> dict:
    """``unetkit train`` then ``unetkit predict``, as a user runs them (run folder under ``work``).

    With ``config`` the run trains that shipped recipe (``--config``) instead of planning. With
    ``held_out`` it trains on ``train`` alone (unetkit splits off its own validation images) and
    ``val`` is only predicted: a set the run never saw, as on a user's own data.
    """
    cli = [sys.executable, "-m", "unetkit"]
    work.mkdir(parents=True)
    recipe = ["--config", str(config)] if config else []
    given_val = [] if held_out else ["--val", str(val)]
    train_s = timed(
        [*cli, "train", str(train), *given_val, *recipe, "--time-budget", f"{minutes:g}"],
        work / "train.log",
        cwd=work,  # the run folder lands in work/runs/, the default --output
    )
    (run,) = (work / "runs").iterdir()
    predict_s = timed(
        [*cli, "predict", str(run / "checkpoints" / "best.pt"), str(val / "images")]
        + ["-o", str(work / "pred")],
        work / "predict.log",
    )
    if config:
        import yaml

        recipe_cfg = yaml.safe_load(config.read_text())
        chosen = {
            "width": recipe_cfg["model"].get("options", {}).get("base_features"),
            "patch": recipe_cfg["data"].get("patch_size"),
            "resolution": 1,
        }
    else:
        plan = json.loads((run / "plan.json").read_text())
        chosen = {d["name"]: d["value"] for d in plan["decisions"]}
    return {
        "train_minutes": train_s / 60,
        "predict_seconds": predict_s,
        "width": chosen.get("width"),
        "patch": chosen.get("patch"),
        "scale": chosen.get("resolution"),
        "run": str(run),
    }


def run_monai(train: Path, val: Path, minutes: float, work: Path) -> dict:
    """MONAI's recipe: training and prediction, each in its own process."""
    child = [sys.executable, __file__, "--data", str(train.parent), "--work", str(work)]
    work.mkdir(parents=True)
    launch = ["--child", "train", "--minutes", f"{minutes:g}", "--start", f"{time.time():.3f}"]
    timed([*child, *launch], work / "train.log")
    stats = json.loads((work / "train.json").read_text())
    predict_s = timed([*child, "--child", "predict"], work / "predict.log")
    return {**stats, "predict_seconds": predict_s, "width": 32, "patch": [CROP, CROP], "scale": 1}


def zscore(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` → ``(C, H, W)`` float32 with mean 0 and std 1 over the image."""
    x = image.astype(np.float32)
    x = x[None] if x.ndim == 2 else np.moveaxis(x, -1, 0)
    return (x - x.mean()) / max(float(x.std()), 1e-8)


def random_crop(x: np.ndarray, y: np.ndarray, rng: np.random.Generator):
    """A random ``CROP``² window of ``x (C, H, W)`` and ``y (H, W)`` with random flips; an axis
    shorter than ``CROP`` is taken whole and mirror-padded to ``CROP`` (as MONAI's ``SpatialPad``
    with ``mode="reflect"``; its default pads zeros, which would add a dark frame the set's images
    do not have), so images of several sizes stack into one batch."""
    pads = []
    for axis, n in enumerate(y.shape):
        if n > CROP:
            start = rng.integers(0, n - CROP + 1)
            x = x.take(np.arange(start, start + CROP), axis=axis + 1)
            y = y.take(np.arange(start, start + CROP), axis=axis)
        pads.append((0, max(CROP - n, 0)))
        if rng.random() < 0.5:
            x, y = np.flip(x, axis + 1), np.flip(y, axis)
    x = np.pad(x, [(0, 0), *pads], mode="reflect")
    y = np.pad(y, pads, mode="reflect")
    return np.ascontiguousarray(x), np.ascontiguousarray(y)


def monai_model(in_channels: int, classes: int):
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=classes,
        features=(32, 32, 64, 128, 256, 32),
    )


def monai_train(data: Path, minutes: float, start: float, work: Path) -> None:
    """Train until ``minutes`` after ``start`` (the parent's clock when it launched this process)."""
    import torch
    from monai.losses import DiceCELoss

    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    paths = sorted((data / "train" / "masks").glob("*.png"))
    masks = [read_png(p) for p in paths]
    values = np.unique(np.concatenate([np.unique(m) for m in masks]))  # class k = k-th mask value
    ys = [np.searchsorted(values, m).astype(np.int64) for m in masks]
    xs = [zscore(read_png(data / "train" / "images" / p.name)) for p in paths]
    model = monai_model(xs[0].shape[0], len(values))
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    steps = 0
    while time.time() - start < minutes * 60:
        batch = [random_crop(xs[i], ys[i], rng) for i in rng.integers(0, len(xs), BATCH)]
        x = torch.from_numpy(np.stack([b[0] for b in batch]))
        y = torch.from_numpy(np.stack([b[1] for b in batch]))[:, None]
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
    train_minutes = (time.time() - start) / 60
    torch.save({"state": model.state_dict(), "values": values.tolist()}, work / "last.pt")
    stats = {"train_minutes": train_minutes, "steps": steps, "images": steps * BATCH}
    (work / "train.json").write_text(json.dumps(stats))


def monai_predict(data: Path, work: Path) -> None:
    """Label images (the masks' values) of ``val/images`` into ``work/pred``, named as unetkit's."""
    import torch
    from monai.inferers import sliding_window_inference
    from PIL import Image

    from unetkit.io.naming import prediction_paths

    torch.set_num_threads(THREADS)
    saved = torch.load(work / "last.pt", weights_only=True)
    values = np.asarray(saved["values"])
    model = None
    out = work / "pred"
    out.mkdir()
    for path in sorted((data / "val" / "images").glob("*.png")):
        x = torch.from_numpy(zscore(read_png(path)))[None]
        if model is None:
            model = monai_model(x.shape[1], len(values))
            model.load_state_dict(saved["state"])
            model.eval()
        with torch.inference_mode():
            logits = sliding_window_inference(x, (CROP, CROP), BATCH, model, overlap=0.25)
        labels = values[logits.argmax(1)[0].numpy()].astype(np.uint8)
        Image.fromarray(labels).save(prediction_paths(out, path.stem, path.suffix)["labels"])


def example_config(name: str) -> Path | None:
    """The shipped recipe ``examples/NAME.yaml`` for a set, if there is one."""
    path = REPO / "examples" / f"{name}.yaml"
    return path if path.is_file() else None


def run_all(
    data: Path,
    sets: list[str],
    minutes: float,
    keep: Path | None = None,
    recipes: tuple[str, ...] = ("unetkit", "monai"),
) -> dict:
    """Each recipe on each set, one after the other; returns ``{set: {recipe: result}}``."""
    work = keep or Path(tempfile.mkdtemp(prefix="unetkit-defaults-"))
    results: dict = {}
    for name in sets:
        root = data / name
        if name == "monuseg-fluo":
            root = make_fluorescence_set(data / "monuseg", work / f"{name}-data")
        elif name == "polyp-like":
            root = make_polyp_set(data / "drive", work / f"{name}-data")
        train, val = root / "train", root / "val"
        results[name] = {}
        for recipe in recipes:
            if recipe == "example":
                config = example_config(name)
                if config is None:
                    print(
                        f"{name}: no examples/{name}.yaml, example recipe skipped", file=sys.stderr
                    )
                    continue
                out = run_unetkit(train, val, minutes, work / name / recipe, config=config)
            elif recipe == "unetkit":
                held_out = name in DERIVED  # scored on images the run never saw
                out = run_unetkit(train, val, minutes, work / name / recipe, held_out=held_out)
            else:
                out = run_monai(train, val, minutes, work / name / recipe)
            out.update(score_set(work / name / recipe / "pred", val, name))
            results[name][recipe] = out
            print(f"{name} {recipe}: {json.dumps(out)}", file=sys.stderr, flush=True)
    return results


def _num(value, fmt: str = ".4f") -> str:
    return "–" if value is None else format(value, fmt)


def table(results: dict, minutes: float) -> str:
    """The Markdown table: one row per (set, recipe)."""
    labels = {
        "unetkit": "unetkit (planned, `--time-budget` only)",
        "monai": "MONAI common recipe (BasicUNet-32, fp32)",
        "example": "unetkit `examples/<set>.yaml` (hand-tuned recipe)",
    }
    lines = [
        f"{minutes:g} min of training per recipe ({THREADS} threads), scored on each set's val images",
        "| set (Dice of) | recipe | Dice | pixel error | object F1@0.5 | trained min | predict s "
        "| width / patch / scale |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for name, by_recipe in results.items():
        for recipe, r in by_recipe.items():
            patch = "×".join(str(p) for p in r["patch"]) if r.get("patch") else "–"
            lines.append(
                f"| {name} ({STRUCTURE[name]}) | {labels[recipe]} | {_num(r['dice'])} | "
                f"{_num(r['pixel_error'])} | {_num(r.get('obj_f1'))} | "
                f"{r['train_minutes']:.1f} | {r['predict_seconds']:.1f} | "
                f"{r['width']} / {patch} / {r['scale']:g} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=5.0, help="training budget per recipe")
    ap.add_argument(
        "--sets",
        default=",".join(SETS),
        help="comma-separated (default: the three shared sets); also monuseg-fluo, MoNuSeg made a "
        "grey fluorescence-like set of odd sizes, and polyp-like, DRIVE made an endoscopy-like set "
        "of large objects; both trained without --val and scored on unseen images",
    )
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument(
        "--recipes",
        default="unetkit,monai",
        help="comma-separated from unetkit, example (examples/<set>.yaml), monai",
    )
    ap.add_argument("--out", help="also write the results as JSON here")
    ap.add_argument("--keep", help="folder for the runs and predictions (default: temporary)")
    ap.add_argument("--child", choices=("train", "predict"), help=argparse.SUPPRESS)
    ap.add_argument("--start", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child == "train":
        monai_train(Path(args.data), args.minutes, args.start, Path(args.work))
        return
    if args.child == "predict":
        monai_predict(Path(args.data), Path(args.work))
        return
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    data = Path(args.data)
    for name in sets:
        if name not in STRUCTURE:
            raise SystemExit(
                f"unknown set {name!r}; choose from {', '.join(SETS + tuple(DERIVED))}"
            )
        source = DERIVED.get(name, name)
        if not (data / source / "train" / "images").is_dir():
            raise SystemExit(
                f"{source} not found under {data} (expects {source}/train and {source}/val)"
            )
        if name == "polyp-like":  # made inside DRIVE's field of view
            for split in ("train", "val"):
                if not (data / source / split / "fov").is_dir():
                    raise SystemExit(
                        f"{data / source / split / 'fov'} not found: {name} is made from DRIVE's "
                        "images and their field-of-view masks (see ../shared/data/README)"
                    )
        if name == "monuseg-fluo":  # made from MoNuSeg's instance ids as well as its images
            for split in ("train", "val"):
                if not (data / source / split / "instances").is_dir():
                    raise SystemExit(
                        f"{data / source / split / 'instances'} not found: {name} is made from "
                        "MoNuSeg's images and its instance ids (see ../shared/data/README)"
                    )
    recipes = tuple(r.strip() for r in args.recipes.split(",") if r.strip())
    for recipe in recipes:
        if recipe not in ("unetkit", "example", "monai"):
            raise SystemExit(f"unknown recipe {recipe!r}; choose from unetkit, example, monai")
    keep = Path(args.keep) if args.keep else None
    results = run_all(data, sets, args.minutes, keep, recipes)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    from unetkit.runtime import cpu_info

    print(f"CPU: {cpu_info().describe()}")  # the flags decide the CPU path: say which machine
    print(table(results, args.minutes))


if __name__ == "__main__":
    main()
