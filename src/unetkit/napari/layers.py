"""napari layer data ↔ unetkit arrays (NumPy only: no napari, no Qt).

napari holds a grey image as ``(*spatial)``, a colour one as ``(*spatial, 3|4)`` with
``layer.rgb`` set, and several channels either as one stack ``(C, *spatial)`` or as one layer per
channel; unetkit takes ``(C, *spatial)``. The rules, fixed here once:

* ``rgb`` layers: the colour axis moves to the front (a grey image stored as RGB is then read as
  grey by :func:`~unetkit.inference.predictor.check_image` for a one-channel model, as on the CLI);
* a layer with the model's number of spatial axes (for training: the labels' shape) is one
  channel;
* a layer with one axis more is a channel-first stack ``(C, *spatial)``.

Labels are written back as class indices (0 = background, which napari shows transparent), placed
with the image's scale and translation on its last spatial axes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np

from ..errors import DataError
from ..utils import ensure_output_dir, output_error


def layer_array(layer: Any) -> np.ndarray:
    """A layer's full-resolution pixels as NumPy (level 0 of a multiscale layer)."""
    data = layer.data[0] if getattr(layer, "multiscale", False) else layer.data
    return np.asarray(data)


def where(name: str) -> str:
    """How messages name a layer: ``layer 'cells'``."""
    return f"layer {name!r}"


def image_for_model(data: np.ndarray, rgb: bool, spatial_dims: int, name: str) -> np.ndarray:
    """An Image layer's pixels as the ``(C, *spatial)`` array a ``spatial_dims``-D model takes
    (module docstring); channel count and values are checked by ``check_image`` afterwards.

    Raises:
        DataError: the layer has too few or too many axes for the model, naming the layer.
    """
    data = np.asarray(data)
    if rgb:
        data = np.moveaxis(data, -1, 0)
    elif data.ndim == spatial_dims:
        data = data[None]
    if data.ndim != spatial_dims + 1:
        kind = "a 2D image (H, W)" if spatial_dims == 2 else "a 3D volume (D, H, W)"
        raise DataError(
            f"has shape {tuple(np.shape(data))}{' (RGB)' if rgb else ''}; the model is "
            f"{spatial_dims}D and takes {kind}, or a stack of channels first: pick such a layer "
            "or a model of its dimensionality",
            where(name),
        )
    return data


def layer_spacing(layer: Any, spatial_dims: int) -> tuple[Optional[tuple], Optional[str]]:
    """The voxel size a layer states on its last ``spatial_dims`` axes (its ``scale``) and the
    unit of it (its ``units``, as unetkit names them: ``um``, ``mm`` …; ``None`` for napari's
    ``pixel`` or a unit that is not a length). ``(None, None)`` when the layer says nothing:
    napari's default scale of 1 in pixels."""
    from ..io.ome_zarr import UNITS_FROM_NGFF

    scale = placement(layer, spatial_dims).scale
    named = list(getattr(layer, "units", ()) or ())[-spatial_dims:]
    units = {UNITS_FROM_NGFF.get(str(u)) for u in named}  # pint's names are NGFF's
    unit = units.pop() if len(units) == 1 else None
    if unit is None and all(s == 1.0 for s in scale):
        return None, None
    return scale, unit


class Placement(NamedTuple):
    """Where a result lies in the viewer: a layer's ``scale``, ``translate``, ``rotate`` (a
    matrix), ``shear`` (napari's upper-triangle vector) and ``affine`` (a homogeneous matrix) on
    its spatial axes, in world units; :meth:`kwargs` gives them to ``add_labels``/``add_image``."""

    scale: tuple
    translate: tuple
    rotate: Optional[np.ndarray] = None
    shear: Optional[np.ndarray] = None
    affine: Optional[np.ndarray] = None

    def with_leading_axis(self) -> Placement:
        """The placement of a ``(K, *spatial)`` stack (one plane per class): the new axis is not
        moved, turned or sheared."""
        d = len(self.scale)
        rotate = affine = shear = None
        if self.rotate is not None:
            rotate = np.eye(d + 1)
            rotate[1:, 1:] = self.rotate
        if self.affine is not None:
            affine = np.eye(d + 2)
            affine[1:, 1:] = self.affine
        if self.shear is not None:
            full = np.zeros((d + 1, d + 1))
            full[1:, 1:][np.triu_indices(d, 1)] = self.shear
            shear = full[np.triu_indices(d + 1, 1)]
        return Placement((1.0, *self.scale), (0.0, *self.translate), rotate, shear, affine)

    def kwargs(self) -> dict:
        """Keyword arguments that place a new layer here."""
        out: dict = {"scale": self.scale, "translate": self.translate}
        for key in ("rotate", "shear", "affine"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def placement(layer: Any, spatial_dims: int) -> Placement:
    """The layer's scale, translation, rotation, shear and affine on its last ``spatial_dims``
    axes (an RGB layer's have no colour entry; a channel stack's first axis is the channel axis,
    left out), so that a result drawn with them lies exactly over the layer."""
    if np.asarray(layer.scale).size < spatial_dims:
        raise DataError(
            f"has {np.asarray(layer.scale).size} axes; {spatial_dims} are needed here (a "
            f"{spatial_dims}D model or labels): pick a layer of that dimensionality",
            where(layer.name),
        )
    scale = tuple(float(s) for s in np.asarray(layer.scale)[-spatial_dims:])
    translate = tuple(float(t) for t in np.asarray(layer.translate)[-spatial_dims:])
    rotate = getattr(layer, "rotate", None)
    shear = getattr(layer, "shear", None)
    affine = getattr(getattr(layer, "affine", None), "affine_matrix", None)
    if rotate is not None:
        rotate = np.asarray(rotate, float)[-spatial_dims:, -spatial_dims:]
    if shear is not None:
        shear = np.asarray(shear, float)
        n = int(round((1 + np.sqrt(1 + 8 * shear.size)) / 2))  # napari keeps n(n − 1)/2 values
        full = np.zeros((n, n))
        full[np.triu_indices(n, 1)] = shear
        shear = full[-spatial_dims:, -spatial_dims:][np.triu_indices(spatial_dims, 1)]
    if affine is not None:
        affine = np.asarray(affine, float)
        keep = [*range(affine.shape[0] - 1 - spatial_dims, affine.shape[0])]
        affine = affine[np.ix_(keep, keep)]
    return Placement(scale, translate, rotate, shear, affine)


def labels_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned type that holds class indices ``0 … num_classes − 1``."""
    return np.dtype(
        np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.uint32
    )


# -- training ------------------------------------------------------------------------------------
class TrainingPair(NamedTuple):
    """One training case from the viewer: ``image`` ``(C, *spatial)``, ``mask`` ``(*spatial)``,
    and the image layer's voxel size and its unit (:func:`layer_spacing`) where it states one."""

    name: str
    image: np.ndarray
    mask: np.ndarray
    spacing: Optional[tuple] = None
    unit: Optional[str] = None


def pair_layers(images: Sequence[Any], labels: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Image and Labels layers paired: by name where a Labels layer's name holds one chosen
    image's name as its longest whole-word match, claimed by no other Labels layer (``cells_2
    labels`` → ``cells_2``, as Predict names its layers); the rest by shape where an image fits
    one of the rest only; what is left in the order given (the order the widget lists them,
    which is the viewer's, not the order clicked: :func:`pairing_line` says which pairs were
    made, so a wrong one can be seen).

    Raises:
        DataError: nothing chosen or not as many Labels layers as Image layers.
    """
    if not images or not labels:
        raise DataError(
            "choose at least one Image layer and the Labels layer painted on it", "training data"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{len(images)} Image layer(s) ({', '.join(repr(i.name) for i in images)}) but "
            f"{len(labels)} Labels layer(s) ({', '.join(repr(m.name) for m in labels)}); choose "
            "one Labels layer per Image layer, in the same order",
            "training data",
        )
    taken = _paired_by_name(images, labels)
    rest_images = [im for im in images if not any(im is a for a, _ in taken)]
    rest_labels = [lab for lab in labels if not any(lab is b for _, b in taken)]
    taken += _paired_by_shape(rest_images, rest_labels)
    rest_images = [im for im in images if not any(im is a for a, _ in taken)]
    rest_labels = [lab for lab in labels if not any(lab is b for _, b in taken)]
    taken += list(zip(rest_images, rest_labels))  # what names and shapes leave: in order
    order = {id(im): i for i, im in enumerate(images)}
    return sorted(taken, key=lambda pair: order[id(pair[0])])


def _paired_by_name(images: Sequence[Any], labels: Sequence[Any]) -> list:
    """The pairs names make: a Labels layer with the image whose name is the longest one its own
    name holds as a whole word, where that image is claimed by no other Labels layer."""
    claims: dict = {}
    for lab in labels:
        named = [im for im in images if _names(im.name, lab.name)]
        if not named:
            continue
        longest = max(len(im.name) for im in named)
        best = [im for im in named if len(im.name) == longest]
        if len(best) == 1:
            claims.setdefault(id(best[0]), (best[0], []))[1].append(lab)
    return [(im, labs[0]) for im, labs in claims.values() if len(labs) == 1]


def _names(image_name: str, labels_name: str) -> bool:
    """Whether a Labels layer's name holds the image's as a whole word (``a`` is in ``a labels``
    and ``a_mask``, not in ``Labels``; ``img1`` not in ``img10 labels``)."""
    pattern = rf"(?<![^\W_]){re.escape(image_name)}(?![^\W_])"
    return bool(image_name) and re.search(pattern, labels_name) is not None


def _spatial_shape(layer: Any) -> Optional[tuple]:
    """A layer's shape without an RGB axis, from its data's ``shape`` (a lazy layer stays
    unread), or ``None`` for an object without data."""
    shape = getattr(getattr(layer, "data", None), "shape", None)
    if shape is None:
        return None
    shape = tuple(int(n) for n in shape)
    return shape[:-1] if getattr(layer, "rgb", False) else shape


def _paired_by_shape(images: Sequence[Any], labels: Sequence[Any]) -> list:
    """The pairs shapes make: an image with the one Labels layer of exactly its shape (else of
    its last axes: a channel stack's first axis aside), where no other image fits that layer."""
    fits = []
    for im in images:
        shape = _spatial_shape(im)
        if shape is None:
            continue
        shapes = [(lab, _spatial_shape(lab)) for lab in labels]
        same = [lab for lab, ls in shapes if ls == shape]
        if not same:
            same = [
                lab for lab, ls in shapes if ls and len(ls) < len(shape) and shape[-len(ls) :] == ls
            ]
        if len(same) == 1:
            fits.append((im, same[0]))
    return [(im, lab) for im, lab in fits if sum(lab is other for _, other in fits) == 1]


def numbered_objects_hint(pairs: Sequence[TrainingPair], mask_kind: str) -> Optional[str]:
    """With "labels are: found from the data", a hint where every Labels layer holds a few values
    1 … n that are each one region (napari's "new label" per cell) and the data's own reading
    (:func:`~unetkit.data.labels.infer_label_map`, as training reads the layers) still takes them
    for classes: they would train as n classes unless the user says they are objects."""
    from ..data.labels import each_value_one_region, infer_label_map
    from ..errors import UnetkitError

    if mask_kind != "auto" or not pairs:
        return None
    for pair in pairs:
        values = np.unique(pair.mask)
        if (values != 0).sum() < 2 or not each_value_one_region(pair.mask):
            return None
    try:
        label_map = infer_label_map([np.asarray(p.mask)[None] for p in pairs], kind="auto")
    except UnetkitError:
        return None  # too many values for classes: the run says so itself
    if label_map.kind != "labels":
        return None  # read as objects already
    counts = [int((np.unique(p.mask) != 0).sum()) for p in pairs]
    return (
        f"each painted value is one region ({', '.join(map(str, counts))} per layer): they train "
        f"as {label_map.num_classes - 1} classes besides the background; if they are objects (a "
        "label per cell), choose 'labels are: objects (a value per object)'"
    )


def pairing_line(pairs: Sequence[tuple[Any, Any]]) -> str:
    """The pairs as the status line shows them: ``'a' ↔ 'a labels', 'b' ↔ 'Labels'``."""
    return ", ".join(f"{im.name!r} ↔ {lab.name!r}" for im, lab in pairs)


def check_label_axes(image: Any, labels: np.ndarray, labels_name: str) -> None:
    """A Labels layer with more axes than its image (a z-stack's 3D labels painted over a 2D
    image) is refused naming both, before the image's scale is read for the labels' axes.

    Raises:
        DataError: naming the Labels layer.
    """
    spatial = len(_spatial_shape(image))
    if np.ndim(labels) > spatial:
        raise DataError(
            f"has {np.ndim(labels)} axes {tuple(np.shape(labels))} but its image {image.name!r} "
            f"has {spatial} {_spatial_shape(image)}: paint on a Labels layer of the image's "
            "height and width (a channel stack's labels have no channel axis)",
            where(labels_name),
        )


def placement_warning(image: Any, labels: Any) -> Optional[str]:
    """A warning where a Labels layer is shown elsewhere than its image (another scale or
    translation on screen): the pair trains pixel for pixel (a mask file opened without its
    image's calibration is right so), but strokes painted on screen lie over other pixels."""
    dims = min(len(_spatial_shape(image)), np.ndim(layer_array(labels)))
    if dims < 1 or not hasattr(image, "scale") or not hasattr(labels, "scale"):
        return None
    a, b = placement(image, dims), placement(labels, dims)
    if np.allclose(a.scale, b.scale, rtol=1e-6) and np.allclose(
        a.translate, b.translate, rtol=0, atol=1e-6 * max(map(abs, a.scale))
    ):
        return None
    return (
        f"{where(labels.name)} is shown at scale {b.scale}, translate {b.translate}, its image "
        f"{image.name!r} at {a.scale}, {a.translate}: they train pixel for pixel, but strokes "
        "painted on screen lie over other pixels of the image; give the Labels layer the image's "
        "scale and translate if you painted it"
    )


PAINT_EVERY_CLASS = (
    "with 'classes painted in part' paint strokes of every class, the background included "
    "(1 = background, 2 = nucleus …): unpainted pixels (0) are learnt from nothing"
)


def check_painted_classes(pairs: Sequence[TrainingPair], labels_names: Sequence[str]) -> None:
    """Classes painted in part: the layers together must hold two painted values (classes),
    said naming the layers (the run's own check would name its temporary training folder).

    Raises:
        DataError: naming the Labels layers.
    """
    painted = np.unique(np.concatenate([np.unique(p.mask) for p in pairs]))
    painted = painted[painted != 0]
    if painted.size < 2:
        raise DataError(
            f"only the value {painted[0]} is painted; {PAINT_EVERY_CLASS}",
            ", ".join(where(n) for n in labels_names),
        )


def training_pair(
    image: np.ndarray,
    rgb: bool,
    labels: np.ndarray,
    image_name: str,
    labels_name: str,
    spacing: Optional[tuple] = None,
    unit: Optional[str] = None,
    class_values: Optional[Sequence] = None,
    partial: bool = False,
) -> TrainingPair:
    """An Image layer and the Labels layer painted on it as one training case. The labels give
    the spatial shape; the image must have it, with or without a leading channel axis (or RGB).
    Every pixel left at 0 is background: a mask is the whole truth of its image. ``spacing``,
    ``unit``: the image layer's voxel size (:func:`layer_spacing`), which the plan then sees as it
    sees a calibrated file's. ``class_values``: the mask value of each class index, which Predict
    keeps in the layers it adds (``metadata["unetkit"]``): a predicted layer corrected with the
    brush trains in its model's own values (0/255 stays 0/255, so a fine-tuned model writes what
    its parent wrote), where every index painted has one.

    ``partial``: the labels are strokes ("classes painted in part"), 0 unpainted: something must
    be painted (:func:`check_painted_classes` checks the layers hold two classes together).

    Raises:
        DataError: shapes that do not match, labels that are not integers, or labels holding
            fewer than two values (two painted ones with ``partial``), naming the layers.
    """
    mask = np.asarray(labels)
    if mask.dtype.kind not in "biu":
        raise DataError(f"holds {mask.dtype} values; labels must be integers", where(labels_name))
    image = np.moveaxis(np.asarray(image), -1, 0) if rgb else np.asarray(image)
    if image.shape == mask.shape:
        image = image[None]
    elif image.shape[1:] != mask.shape:
        raise DataError(
            f"has shape {tuple(image.shape)}{' (RGB, colour first)' if rgb else ''} but its labels "
            f"{where(labels_name)} have shape {tuple(mask.shape)}; paint the labels on this image "
            "(same height and width) or pair the layers in the same order",
            where(image_name),
        )
    values = np.unique(mask)
    if partial and not (values != 0).any():  # 0 is no class here
        raise DataError(f"has nothing painted; {PAINT_EVERY_CLASS}", where(labels_name))
    if values.size < 2:
        raise DataError(
            f"holds only the value {values[0] if values.size else 'none'}; paint the objects "
            "(1, 2, …) and leave the background at 0",
            where(labels_name),
        )
    if (
        class_values is not None
        and all(isinstance(v, (int, np.integer)) and v >= 0 for v in class_values)
        and len(set(class_values)) == len(class_values)
        and int(mask.min()) >= 0
        and int(mask.max()) < len(class_values)
    ):
        table = np.asarray(class_values, dtype=np.int64)
        mask = table[mask].astype(np.min_scalar_type(int(table.max())))
    if spacing is not None and len(spacing) != mask.ndim:
        spacing, unit = None, None
    return TrainingPair(image_name, image, mask, spacing, unit)


def case_stem(index: int, name: str) -> str:
    """A file stem for the ``index``-th case from a layer name: ``03_cells_1``."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "image"
    return f"{index:02d}_{slug[:40]}"


def write_training_folder(pairs: Sequence[TrainingPair], folder: Path) -> Path:
    """Write the cases in the layout ``unetkit train`` reads: ``folder/images/STEM.npy``
    ``(C, *spatial)`` and ``folder/masks/STEM.npy`` ``(*spatial)``, same stems. ``.npy`` keeps
    every value and dtype and states the channel axis. A case whose image layer states a voxel
    size is written as ``.tif`` instead, calibrated with it (unetkit's TIFF writer states the axes
    and keeps the dtype), so the plan chooses patch, spacing and kernels from it as it would from
    the user's calibrated files.

    Returns:
        ``folder``.
    """
    from ..io.meta import ImageMeta
    from ..io.writers import write_image

    folder = Path(folder)
    for i, pair in enumerate(pairs):
        stem = case_stem(i, pair.name)
        calibrated = pair.spacing is not None
        # the writer takes (C, *spatial); a .npy mask is (H, W) or (1, D, H, W)
        mask = pair.mask[None] if calibrated or pair.mask.ndim == 3 else pair.mask
        meta = ImageMeta(spacing=pair.spacing, spacing_unit=pair.unit)
        for sub, array in (("images", pair.image), ("masks", mask)):
            path = folder / sub / f"{stem}.{'tif' if calibrated else 'npy'}"
            ensure_output_dir(path.parent)
            try:
                if calibrated:
                    write_image(path, np.ascontiguousarray(array), meta)
                else:
                    np.save(path, np.ascontiguousarray(array))
            except OSError as exc:
                raise output_error(exc, path) from None
    return folder


__all__ = [
    "Placement",
    "TrainingPair",
    "case_stem",
    "image_for_model",
    "labels_dtype",
    "layer_array",
    "layer_spacing",
    "pair_layers",
    "placement",
    "training_pair",
    "where",
    "write_training_folder",
]
