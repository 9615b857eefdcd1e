"""napari layer data ↔ unetkit arrays (NumPy only: no napari, no Qt).

napari holds a grey image as ``(*spatial)``, a colour one as ``(*spatial, 3|4)`` with
``layer.rgb`` set, and several channels either as one stack ``(C, *spatial)`` or as one layer per
channel; unetkit takes ``(C, *spatial)``. The rules, fixed here once:

* ``rgb`` layers: the colour axis moves to the front (a grey image stored as RGB is then read as
  grey by :func:`~unetkit.inference.batch.check_image` for a one-channel model, as on the CLI);
* a layer with the model's number of spatial axes (for training: the labels' shape) is one
  channel;
* a layer with one axis more is a channel-first stack ``(C, *spatial)``.

Labels are written back as class indices (0 = background, which napari shows transparent), placed
with the image's scale and translation on its last spatial axes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, NamedTuple, Sequence

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


class Placement(NamedTuple):
    """Where a result lies in the viewer: a layer's ``scale`` and ``translate`` (world units)."""

    scale: tuple
    translate: tuple

    def with_leading_axis(self) -> Placement:
        """The placement of a ``(K, *spatial)`` stack (one plane per class)."""
        return Placement((1.0, *self.scale), (0.0, *self.translate))


def placement(layer: Any, spatial_dims: int) -> Placement:
    """The layer's scale and translation on its last ``spatial_dims`` axes (an RGB layer's scale
    has no colour entry; a channel stack's first entry is the channel axis)."""
    scale = tuple(float(s) for s in np.asarray(layer.scale)[-spatial_dims:])
    translate = tuple(float(t) for t in np.asarray(layer.translate)[-spatial_dims:])
    return Placement(scale, translate)


def labels_dtype(num_classes: int) -> np.dtype:
    """The smallest unsigned type that holds class indices ``0 … num_classes − 1``."""
    return np.dtype(
        np.uint8 if num_classes <= 256 else np.uint16 if num_classes <= 65536 else np.uint32
    )


# -- training ------------------------------------------------------------------------------------
class TrainingPair(NamedTuple):
    """One training case from the viewer: ``image`` ``(C, *spatial)``, ``mask`` ``(*spatial)``."""

    name: str
    image: np.ndarray
    mask: np.ndarray


def pair_layers(images: Sequence[Any], labels: Sequence[Any]) -> list[tuple[Any, Any]]:
    """Image and Labels layers paired in the order given (the order the widget lists them).

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
    return list(zip(images, labels))


def training_pair(
    image: np.ndarray, rgb: bool, labels: np.ndarray, image_name: str, labels_name: str
) -> TrainingPair:
    """An Image layer and the Labels layer painted on it as one training case. The labels give
    the spatial shape; the image must have it, with or without a leading channel axis (or RGB).
    Every pixel left at 0 is background: a mask is the whole truth of its image.

    Raises:
        DataError: shapes that do not match, labels that are not integers, or labels holding
            fewer than two values, naming the layers.
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
    if values.size < 2:
        raise DataError(
            f"holds only the value {values[0] if values.size else 'none'}; paint the objects "
            "(1, 2, …) and leave the background at 0",
            where(labels_name),
        )
    return TrainingPair(image_name, image, mask)


def case_stem(index: int, name: str) -> str:
    """A file stem for the ``index``-th case from a layer name: ``03_cells_1``."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "image"
    return f"{index:02d}_{slug[:40]}"


def write_training_folder(pairs: Sequence[TrainingPair], folder: Path) -> Path:
    """Write the cases in the layout ``unetkit train`` reads: ``folder/images/STEM.npy``
    ``(C, *spatial)`` and ``folder/masks/STEM.npy`` ``(*spatial)``, same stems. ``.npy`` keeps
    every value and dtype and states the channel axis, which TIFF would leave to a guess for a
    ``(C, H, W)`` or ``(1, D, H, W)`` array.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    for i, pair in enumerate(pairs):
        stem = case_stem(i, pair.name)
        mask = pair.mask if pair.mask.ndim == 2 else pair.mask[None]  # (1, D, H, W) for volumes
        for sub, array in (("images", pair.image), ("masks", mask)):
            path = folder / sub / f"{stem}.npy"
            ensure_output_dir(path.parent)
            try:
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
    "pair_layers",
    "placement",
    "training_pair",
    "where",
    "write_training_folder",
]
