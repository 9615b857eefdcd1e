"""The target spacing: the voxel size every case is resampled to before training and prediction.

A network learns shapes in voxels. When the cases of a dataset come at different voxel sizes (CT
with 1 mm and 5 mm slices, microscopes at two magnifications), the same organ or cell is a
different object in voxels from case to case, and a net trained on the stored grids must learn
every version of it. nnU-Net resamples every case to one target spacing first; so does unetkit
(``data.target_spacing``, :func:`unetkit.data.resample.spacing_factors`), with nnU-Net's rule:

* the target is the **median** spacing per axis over the training cases;
* for strongly **anisotropic** data — the coarsest axis's median spacing more than
  ``ANISOTROPY`` × the finest other axis's, *and* that axis holding few voxels (its median size
  × ``ANISOTROPY`` below the smallest median size of the others) — the coarse axis's target is the
  10th percentile of its spacings instead (at least the other axes' coarsest target): the few
  thin-slice cases are not thinned out to the median, and thick-slice cases are interpolated only
  as far as needed.

It applies only where it changes something and the spacings can be trusted:

* every case read states a spacing (a folder where some files state none would mix physical and
  pixel units), and the files that name a unit name the same one (a median over mm and µm would
  be meaningless; 2D files must name one);
* some case's factor ``spacing / target`` differs from 1 by more than ``SPREAD`` on some axis;
  otherwise every case is (nearly) on the target grid already and nothing is resampled.

Example:
    >>> fp.spacing, fp.spacing_spread["p10"]  # doctest: +SKIP
    ([5.0, 0.8, 0.8], [1.5, 0.7, 0.7])
    >>> plan_target_spacing(fp)[0]  # doctest: +SKIP
    [1.5, 0.8, 0.8]
"""

from __future__ import annotations

from typing import Optional

import numpy as np

#: anisotropy threshold of nnU-Net's rule (spacing ratio, and the voxel-count ratio)
ANISOTROPY = 3.0
#: cases whose factors all lie within this of 1 need no resampling
SPREAD = 0.1
#: the fingerprint's per-object lengths in pixels (:class:`~unetkit.data.fingerprint.Fingerprint`
#: ``objects``), rescaled with the sizes on the target grid
OBJECT_LENGTHS = ("diameter_px", "extent_px", "width_px")


def target_spacing_rule(
    median_spacing: list, p10_spacing: list, median_size: list
) -> tuple[list[float], Optional[int]]:
    """The target spacing from the median spacing and size per axis and the 10th percentile of the
    spacings; also the axis the anisotropy rule lowered (``None`` when it did not apply)."""
    target = [float(s) for s in median_spacing]
    if len(target) < 2:
        return target, None
    worst = max(range(len(target)), key=lambda a: target[a])
    others = [a for a in range(len(target)) if a != worst]
    aniso_spacing = target[worst] > ANISOTROPY * min(target[a] for a in others)
    aniso_voxels = median_size[worst] * ANISOTROPY < min(median_size[a] for a in others)
    if not (aniso_spacing and aniso_voxels):
        return target, None
    lowered = max(float(p10_spacing[worst]), max(target[a] for a in others))
    if lowered >= target[worst]:
        return target, None
    target[worst] = lowered
    return target, worst


def plan_target_spacing(fp) -> tuple[Optional[list[float]], str]:
    """``(target spacing or None, reason)`` for a :class:`~unetkit.data.fingerprint.Fingerprint`:
    ``None`` when the cases stay on their stored grids (the reason says why)."""
    spread = getattr(fp, "spacing_spread", None)
    if getattr(fp, "spacing", None) is None or not spread:
        return None, "the files state no voxel size: trained as stored"
    if spread.get("files", 0) < fp.cases:
        return None, (
            f"only {spread['files']} of {fp.cases} files state a voxel size: trained as stored"
        )
    units = spread.get("units") or []
    if len(units) > 1:  # a median over mm and um is no spacing at all
        return None, (
            f"the files state voxel sizes in different units ({', '.join(units)}): trained as "
            "stored; save them in one unit to have them resampled to one grid"
        )
    if fp.spatial_dims == 2 and fp.spacing_unit is None:
        return None, "the files' pixel sizes name no unit or different ones: trained as stored"
    target, lowered = target_spacing_rule(fp.spacing, spread["p10"], fp.sizes["median"])
    ratios = [
        r for lo, hi, t in zip(spread["min"], spread["max"], target) for r in (lo / t, hi / t)
    ]
    unit = f" {fp.spacing_unit}" if fp.spacing_unit else ""
    shown = "×".join(f"{v:g}" for v in target) + unit
    if all(abs(r - 1) <= SPREAD for r in ratios):
        return None, f"every case is within {100 * SPREAD:g} % of {shown}: trained as stored"
    lo = "×".join(f"{v:g}" for v in spread["min"])
    hi = "×".join(f"{v:g}" for v in spread["max"])
    why = (
        f"voxel sizes differ between cases ({lo} … {hi}{unit}): every case is resampled to "
        f"{shown}, "
    )
    if lowered is None:
        why += "the median (nnU-Net's rule)"
    else:
        why += (
            f"the median except axis {lowered}, which is {fp.spacing[lowered] / min(target):.1f}× "
            "coarser than the others and short: its 10th percentile (nnU-Net's anisotropy rule)"
        )
    return target, why + "; predict resamples each image the same way and the result back"


def on_target_grid(fp, target: list[float]):
    """A copy of ``fp`` whose sizes are in voxels of the ``target`` spacing (the cases' physical
    extents divided by it; without extents, each size times the median spacing / target): what the
    patch and schedule rules plan with.

    The objects' lengths in pixels (equivalent diameter, extent, thickness) are rescaled too, by
    the geometric mean of the per-axis factors median spacing / target: exact for the equivalent
    diameter (an object's voxel count scales by their product), a close estimate for the others,
    which the fingerprint keeps as one length per object rather than per axis."""
    import dataclasses

    extent = (fp.spacing_spread or {}).get("extent")
    if extent:
        sizes = {k: [v / t for v, t in zip(e, target)] for k, e in extent.items()}
    else:
        f = [s / t for s, t in zip(fp.spacing, target)]
        sizes = {k: [v * a for v, a in zip(fp.sizes[k], f)] for k in fp.sizes}
    for k in sizes:
        if k != "median":  # the others are sizes of actual cases: whole voxels
            sizes[k] = [max(1, int(round(v))) for v in sizes[k]]
    factors = [s / t for s, t in zip(fp.spacing, target)]
    length = float(np.prod(factors)) ** (1.0 / len(factors))
    objects = fp.objects
    if objects and abs(length - 1.0) > 1e-9:
        objects = {
            cls: {
                key: (
                    {q: (None if v is None else v * length) for q, v in value.items()}
                    if key in OBJECT_LENGTHS and isinstance(value, dict)
                    else value
                )
                for key, value in summary.items()
            }
            for cls, summary in objects.items()
        }
    return dataclasses.replace(fp, sizes=sizes, objects=objects)


__all__ = ["ANISOTROPY", "SPREAD", "on_target_grid", "plan_target_spacing", "target_spacing_rule"]
