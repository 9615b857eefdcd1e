"""The demo's own words: the report folder's ``metrics.json``, ``metrics.md`` and ``README.md``, and
the summary printed at the end. The figures come from :mod:`unetkit.evaluation.report`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..utils import json_default

#: a :class:`~unetkit.demo.pipeline.DemoResult` (not imported: the pipeline imports this module)
DemoResult = Any


def write_demo_report(report: Path, result: DemoResult, components: dict) -> None:
    """``metrics.json``, ``metrics.md`` and ``README.md`` of the report folder."""
    info, m, t = result.info, result.metrics, result.timings
    payload = {
        "metrics": m,
        "metrics_connected_components": components,
        "timings_s": t,
        "info": info,
        "data": result.data.stats,
    }
    (report / "metrics.json").write_text(json.dumps(payload, indent=2, default=json_default))
    from ..evaluation.report import instance_metrics_table

    table = instance_metrics_table(m, components, ("watershed instances", "connected components"))
    (report / "metrics.md").write_text("# Metrics of the large image\n\n" + table)
    stats = result.data.stats
    lg = stats["large"]
    wm = info.get("weight_map_stats")
    loss = (
        f" weighted by the border weight map (w0 {info['w0']:g}, σ {info['sigma']:g})"
        if info["weight_map"]
        else " (unweighted: the ablation)"
    )
    lines = [
        "# unetkit demo report",
        "",
        f"Seed {stats['seed']}; {'with' if info['weight_map'] else '**without**'} the border weight map"
        f"{' (the ablation)' if not info['weight_map'] else ''}; {'quick' if info['quick'] else 'full'} preset; "
        f"finished in {t['total']:.0f} s.",
        "",
        "## Data",
        f"- Synthetic microscopy (`data/`): {stats['train']['images']} training and "
        f"{stats.get('val', {}).get('images', 0)} validation images of {stats['train']['shape'][0]}×"
        f"{stats['train']['shape'][1]} px; a large image of {lg['shape'][0]}×{lg['shape'][1]} px with "
        f"{lg['cells']} cells.",
        f"- {100 * stats['touching_fraction']:.1f} % of all cells touch another cell (within 2 px, i.e. across the "
        "1-px line cut between them in the truth).",
        "",
        "## Training",
        f"- Model: `unet-original`, {info['base_features']} features wide, depth {info['depth']} "
        f"({info['parameters']:,} parameters), valid convolutions: input {_size(info['patch_input'])} → "
        f"output {_size(info['patch_label'])} px per training patch, batch {info['batch_size']}.",
        f"- Loss: cross-entropy{loss}; "
        f"default augmentation with elastic deformation; AdamW, lr {info['lr']:g}, poly schedule run on "
        f"the clock over the {info['train_minutes']:g}-minute budget.",
        f"- {info['epochs']} epochs in {t['train']:.0f} s ({info['stop_reason']}; median speed "
        f"{info['images_per_s']:.1f} patches/s); highest validation Dice {info['best_val_dice']:.4f} at epoch "
        f"{info['best_epoch']}. Curves: ![curves](curves.png)",
        f"- Model used: `{info['checkpoint']}` (epoch {info['checkpoint_epoch']}), the candidate with the higher "
        "mean AP on the validation images ("
        + ", ".join(
            f"`{n}` epoch {c['epoch']}: {c['val_map']:.3f}" for n, c in info["candidates"].items()
        )
        + ").",
        "",
        "## Large image: overlap-tile prediction",
        f"- Tiles of {_size(info['tile_in'])} px → {_size(info['tile_out'])} px ({info['tiles']} tiles; the output "
        f"tiles abut, the context beyond the image border is mirrored), {t['predict']:.1f} s.",
        f"- Instances: seeded watershed on the predicted background probability (seeds where it is ≤ "
        f"{info['separation']['seed_threshold']:g}), objects under 20 px dropped, each grown by "
        f"{info['separation']['expand']} px; both settings chosen on the validation images (mean AP "
        f"{info['separation']['val_map']:.3f} there).",
        "",
        "## bioimage.io package",
        f"- {info['bioimageio']['line']}",
        "- Open it in Fiji (deepImageJ), ilastik or QuPath, or run it here: "
        "`unetkit predict demo_out/model.bioimageio.zip IMAGES --output preds`.",
        "",
        "## Metrics",
        "",
        table,
        "The second column takes the connected components of the predicted cell mask as the instances, with no "
        "watershed: what the network separates on its own.",
        "",
        "## Pictures",
        "- `overlay.png`: the whole large image, truth outlines green, predicted outlines magenta (white where "
        "they agree).",
        "- `overlay_zoom.png`: a crop ×2: image | truth instances | predicted instances (merged cells outlined "
        "red). ![zoom](overlay_zoom.png)",
        "- `probability.png`: the predicted cell probability of the large image.",
        "- `weight_map.png`: a training image, its mask and its border weight map"
        + (
            f" (maximum {wm['max']:.1f}; mean {wm['mean_gap']:.1f} on the gaps between touching cells, "
            f"{wm['mean_cell']:.2f} inside cells)."
            if wm
            else "."
        ),
        "",
    ]
    (report / "README.md").write_text("\n".join(lines))


def _size(sizes) -> str:
    return "×".join(str(int(v)) for v in sizes) if sizes else "?"


def summary_text(result: DemoResult) -> str:
    """The short summary printed at the end."""
    m, t, i, st = result.metrics, result.timings, result.info, result.data.stats
    mins, secs = divmod(int(round(t["total"])), 60)
    return "\n".join(
        [
            f"unetkit demo: done in {mins} min {secs:02d} s "
            f"({'with' if i['weight_map'] else 'WITHOUT'} the border weight map)",
            f"  data     {st['large']['cells']} cells in the large image, {100 * st['touching_fraction']:.1f} % "
            "of cells touch another",
            f"  training {i['epochs']} epochs in {t['train']:.0f} s ({i['images_per_s']:.1f} patches/s); using "
            f"{i['checkpoint']} (epoch {i['checkpoint_epoch']}); {i['parameters']:,} parameters",
            f"  predict  {i['tiles']} overlap tiles {_size(i['tile_in'])} → {_size(i['tile_out'])} px in "
            f"{t['predict']:.1f} s",
            f"  objects  F1@0.5 {m['obj_f1']:.3f}  AP@0.5 {m['ap50']:.3f}  AP@0.5:0.95 {m['map']:.3f}  "
            f"({m['n_pred']:.0f} predicted / {m['n_true']:.0f} true, {m['merged']} merged)",
            f"  pixels   Dice {m['dice']:.4f}  pixel error {m['pixel_error']:.4f}  Rand error {m['rand_error']:.4f}",
            f"  package  {i['bioimageio']['line']}" if "bioimageio" in i else "",
            f"  report   {result.report_dir / 'README.md'}",
        ]
    )


__all__ = ["summary_text", "write_demo_report"]
