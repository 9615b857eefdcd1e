"""Images read on access, not loaded: the sources of band-by-band prediction of huge images.

:func:`open_lazy` gives a channel-first ``(C, *spatial)`` array-like whose slicing reads only the
region asked for:

* ``.npy`` and uncompressed, contiguous TIFF: a NumPy memory map (the fastest; the band path drops
  its pages as it goes, :func:`~unetkit.io.memmap.release_pages`);
* compressed or tiled TIFF, OME-TIFF, pyramidal TIFF (choose the ``level``; 0 = full resolution):
  tifffile's zarr store of the series, decoded chunk by chunk;
* zarr arrays and OME-Zarr images (``.zarr`` folders; NGFF 0.4 and 0.5 multiscales, the ``level``-th
  dataset): the zarr array itself.

The last two come as a :class:`LazyImage`, which reorders the stored axes (``YXS``, ``TCZYX`` …) to
unetkit's channel-first order on each read, so nothing downstream needs to know the storage layout.
Reading is delegated to tifffile and zarr (their decoders and chunk stores are the well-kept part);
only the axis bookkeeping is written here.

:func:`level_count` says how many levels a pyramidal input has (predict gives its labels as many).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..errors import ConfigError, DataError
from .meta import ImageMeta
from .ome_zarr import UNITS_FROM_NGFF

#: Stored axis letters unetkit maps to channels, depth and the plane; anything else must have length 1.
_CHANNEL_LETTERS = "CS"
_DEPTH_LETTERS = "ZIQ"
#: OME-Zarr axis names → letters.
_NGFF_AXES = {"t": "T", "c": "C", "z": "Z", "y": "Y", "x": "X"}


def is_zarr_path(path) -> bool:
    """``True`` for a ``.zarr`` folder (a zarr array or group, OME-Zarr included)."""
    return Path(path).name.lower().endswith(".zarr")


class LazyImage:
    """A ``(C, *spatial)`` view of an array stored in another axis order, read on indexing.

    ``image[:, y0:y1, x0:x1]`` reads that region from the store (only the chunks it touches) and
    returns it channel first as a NumPy array; integer indices drop their axis as NumPy's do. Axes
    other than channels and space (``T`` …) must have length 1 and are read at index 0; a depth axis
    of length 1 (a 2D image stored as ``TCZYX``, as bioformats2raw writes) is dropped, so the image
    is 2D.

    Attributes:
        shape, ndim, dtype: of the channel-first view.
        meta: what the store says about the image (spacing, unit, the stored axes).
    """

    def __init__(
        self,
        array: Any,
        axes: str,
        path: Path,
        meta: ImageMeta,
        channels: Optional[list] = None,
        close: Optional[Callable[[], None]] = None,
    ):
        axes = axes.upper()
        shape = tuple(int(n) for n in array.shape)
        if len(axes) != len(shape) or len(set(axes)) != len(axes):
            raise DataError(f"axes {axes!r} do not describe an array of shape {shape}", path)
        channel = [a for a in axes if a in _CHANNEL_LETTERS]
        depth = [a for a in axes if a in _DEPTH_LETTERS and shape[axes.index(a)] > 1]
        if len(channel) > 1 or len(depth) > 1 or "Y" not in axes or "X" not in axes:
            raise DataError(
                f"cannot read axes {axes!r} (shape {shape}) as (C, [Z,] Y, X): one channel axis, at "
                "most one depth axis and both Y and X are needed",
                path,
            )
        spatial = depth + ["Y", "X"]
        others = [a for a in axes if a not in channel and a not in spatial]
        too_long = [f"{a}={shape[axes.index(a)]}" for a in others if shape[axes.index(a)] > 1]
        if too_long:
            raise DataError(
                f"axes {axes!r} (shape {shape}) hold more than one image ({', '.join(too_long)}); "
                "store one image per file or array",
                path,
            )
        self._array, self._axes, self._path = array, axes, Path(path)
        self._channel = channel[0] if channel else None
        self._spatial = spatial
        n_channels = shape[axes.index(self._channel)] if self._channel else 1
        self._channels = channels  # stored channel indices kept (alpha dropped), or all
        if channels is not None:
            n_channels = len(channels)
        self.shape = (n_channels, *(shape[axes.index(a)] for a in spatial))
        self.ndim = len(self.shape)
        self.dtype = np.dtype(array.dtype)
        self.meta = meta
        self._close = close

    @property
    def spatial_axes(self) -> str:
        """The stored letters of the view's spatial axes, in order (``"YX"``, ``"ZYX"``, ``"IYX"``)."""
        return "".join(self._spatial)

    def _region(self, key) -> tuple[tuple, list]:
        """``key`` in view order → one slice per view axis and the view axes integers dropped."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            i = next(i for i, k in enumerate(key) if k is Ellipsis)
            key = key[:i] + (slice(None),) * (self.ndim - len(key) + 1) + key[i + 1 :]
        if len(key) > self.ndim:
            raise IndexError(f"too many indices for an image of shape {self.shape}")
        key = key + (slice(None),) * (self.ndim - len(key))
        region, dropped = [], []
        for axis, (k, n) in enumerate(zip(key, self.shape)):
            if isinstance(k, (int, np.integer)):
                k = int(k) + n if k < 0 else int(k)
                if not 0 <= k < n:
                    raise IndexError(f"index {k} is out of bounds for axis {axis} of size {n}")
                region.append(slice(k, k + 1))
                dropped.append(axis)
            elif isinstance(k, slice):
                region.append(slice(*k.indices(n)))
            else:
                raise TypeError("a lazily read image takes integers and slices only")
        return tuple(region), dropped

    def __getitem__(self, key) -> np.ndarray:
        region, dropped = self._region(key)
        view_axes = ["C", *self._spatial]
        stored_key, stored_order, squeeze = [], [], []
        for i, letter in enumerate(self._axes):
            if letter == self._channel:
                stored_key.append(region[0] if self._channels is None else slice(None))
                stored_order.append("C")
            elif letter in self._spatial:
                stored_key.append(region[view_axes.index(letter)])
                stored_order.append(letter)
            else:  # a length-1 axis (T, a single Z …): read at 0, then dropped
                stored_key.append(slice(0, 1))
                squeeze.append(i)
        try:
            data = np.asarray(self._array[tuple(stored_key)])
        except Exception as exc:  # decoders and stores raise many types for a damaged chunk
            detail = " ".join(str(exc).split()) or type(exc).__name__
            raise DataError(
                f"cannot read the region {_show(region)} ({type(exc).__name__}: {detail}); the "
                "file or store is damaged or incomplete",
                self._path,
            ) from exc
        data = data.squeeze(axis=tuple(squeeze)) if squeeze else data
        if self._channel is None:
            data = data[None]
            stored_order = ["C", *stored_order]
        data = np.transpose(data, [stored_order.index(a) for a in view_axes])
        if self._channels is not None:
            data = data[np.asarray(self._channels)[region[0]]]
        if dropped:
            data = data.squeeze(axis=tuple(dropped))
        return data

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        """Release the file handles of the store (reads after this fail)."""
        if self._close is not None:
            self._close()
            self._close = None

    def __enter__(self) -> LazyImage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LazyImage({self._path.name}, shape={self.shape}, dtype={self.dtype}, stored axes {self._axes})"


def _show(region: tuple) -> str:
    return "[" + ", ".join(f"{s.start}:{s.stop}" for s in region) + "]"


def open_lazy(path, level: int = 0):
    """A ``(C, *spatial)`` array-like of ``path`` that reads from disk on access.

    Args:
        path: ``.npy``, a TIFF (any compression, tiling, OME, pyramid) or a ``.zarr`` folder (a zarr
            array, or an OME-Zarr image group).
        level: pyramid level of a pyramidal TIFF or an OME-Zarr multiscales image (0 = full
            resolution).

    Returns:
        a NumPy memory map (``.npy``, uncompressed contiguous TIFF at level 0) or a
        :class:`LazyImage`; a 2D image comes as ``(1, H, W)``, a volume as ``(C, D, H, W)``.

    Raises:
        DataError: an unreadable file or store, a level the image does not have, axes that are not
            one image, or a file type that cannot be read lazily; the message names the path.
    """
    path = Path(path)
    if not path.exists():
        raise DataError("input not found", path)
    name = path.name.lower()
    if is_zarr_path(path):
        return _open_zarr(path, level)
    if name.endswith(".npy"):
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DataError(f"cannot memory-map this .npy file ({exc})", path) from None
        return _channel_first_memmap(arr, path)
    if name.endswith((".tif", ".tiff")):
        mapped = _tiff_memmap(path) if level == 0 else None
        # compressed, tiled, not one contiguous block or axes a view cannot reorder: through zarr
        return mapped if mapped is not None else _open_tiff(path, level)
    raise DataError(
        "cannot read this file type lazily; give a .npy, .tif/.tiff or .zarr image", path
    )


def level_count(path) -> int:
    """How many resolution levels the image at ``path`` stores: a pyramidal TIFF's (its first
    series), an OME-Zarr multiscales image's; 1 for other files and for what cannot be read (reading
    the image itself reports that)."""
    path = Path(path)
    try:
        if is_zarr_path(path):
            attrs = dict(_zarr().open(str(path), mode="r").attrs)
            return max(
                1, len(attrs.get("ome", attrs).get("multiscales", [{}])[0].get("datasets", []))
            )
        if path.name.lower().endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                return len(tf.series[0].levels) if tf.series else 1
    except Exception:  # unreadable here is unreadable for open_lazy too, which says why
        return 1
    return 1


#: Stored TIFF axes a memory map can show channel first without copying: letters → view recipe.
_MEMMAP_AXES = {
    "YX": "add",
    "CYX": "as is",
    "ZYX": "add",
    "IYX": "add",
    "QYX": "add",
    "CZYX": "as is",
    "ZCYX": "swap",
}


def _tiff_memmap(path: Path) -> Optional[np.ndarray]:
    """A channel-first memory-map view of an uncompressed, contiguous TIFF whose axes allow one,
    else ``None``."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                return None
            series = tf.series[0]
            axes, shape = str(series.axes).upper(), tuple(series.shape)
        recipe = _MEMMAP_AXES.get(axes)
        if recipe is None or (axes[0] in "IQ" and shape[0] == 1):
            return None
        arr = tifffile.memmap(path, mode="r")
    except (ValueError, OSError, IndexError):
        return None
    if arr.shape != shape:
        return None
    if recipe == "add":
        return arr[None]
    return np.swapaxes(arr, 0, 1) if recipe == "swap" else arr


def _channel_first_memmap(arr: np.ndarray, path: Path) -> np.ndarray:
    """A ``.npy`` memory map as ``(C, H, W)`` / ``(C, D, H, W)`` (a 2D array gains the channel)."""
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise DataError(f"expected (H, W), (C, H, W) or (C, D, H, W), got shape {arr.shape}", path)
    if arr.shape[-1] in (3, 4) and arr.shape[0] > 4:  # (H, W, S) samples-last
        raise DataError(
            "samples-last (H, W, RGB) .npy images cannot be read channel first; save the image "
            "as (C, H, W) .npy or planar TIFF",
            path,
        )
    return arr


def _zarr():
    try:
        import zarr
    except ImportError:
        raise ConfigError(
            "reading compressed TIFF and zarr images lazily needs the zarr package: "
            "pip install 'zarr>=3'"
        ) from None
    return zarr


def _opaque_sample(array, axes: str, index: int, most: int = 1 << 20) -> bool:
    """:func:`~unetkit.io.tiff_meta.opaque` of sample ``index`` of a large array, judged on an
    even grid of at most ``most`` of its pixels (reading it whole is what lazy reading avoids)."""
    from .tiff_meta import opaque

    shape = array.shape
    spatial = [k for k, a in enumerate(axes) if a != "S"]
    step = max(1, int(np.ceil((np.prod([shape[k] for k in spatial]) / most) ** (1 / len(spatial)))))
    region = tuple(
        index if a == "S" else slice(None, None, step if k in spatial else None)
        for k, a in enumerate(axes)
    )
    return opaque(np.asarray(array[region]))


def _open_tiff(path: Path, level: int) -> LazyImage:
    """A compressed/tiled/pyramidal TIFF through tifffile's zarr store of its first series."""
    import tifffile

    from .tiff_meta import _tiff_alpha_samples_of, _tiff_spacing

    zarr = _zarr()
    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise DataError("TIFF file contains no image data", path)
            series = tf.series[0]
            levels = len(series.levels)
            if not 0 <= level < levels:
                raise DataError(
                    f"level {level} does not exist: the image has {levels} level(s), 0…{levels - 1}",
                    path,
                )
            axes = str(series.axes).upper()
            full = tuple(series.levels[0].shape)
            shape = tuple(series.levels[level].shape)
            alpha = _tiff_alpha_samples_of(tf, shape, axes, shaped_too=True)
            store = tifffile.imread(path, aszarr=True, series=0, level=level)
            array = zarr.open(store, mode="r")
            if alpha and getattr(tf, "is_shaped", False):  # as read_image judges them
                alpha = [i for i in alpha if _opaque_sample(array, axes, i)]
            channels = None
            if alpha:
                channels = [i for i in range(shape[axes.index("S")]) if i not in alpha]
            meta = ImageMeta(
                path=str(path),
                format="tiff",
                dtype=str(np.dtype(array.dtype)),
                axes=axes,
                channel_axis=next((a for a in axes if a in _CHANNEL_LETTERS), None),
                alpha_dropped=bool(alpha),
            )
            image = LazyImage(array, axes, path, meta, channels=channels, close=store.close)
            spatial = image.spatial_axes
            meta.spacing, meta.spacing_unit = _tiff_spacing(
                tf, ("Z" if len(spatial) == 3 else "") + "YX"
            )
    except DataError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(f"unreadable TIFF file ({type(exc).__name__}: {detail})", path) from exc
    if meta.spacing is not None and level:  # a pyramid level's pixels are larger
        factors = [full[axes.index(a)] / shape[axes.index(a)] for a in spatial]
        meta.spacing = tuple(s * f for s, f in zip(meta.spacing, factors))
    meta.shape = image.shape
    return image


def _open_zarr(path: Path, level: int) -> LazyImage:
    """A zarr array (channel first, as ``.npy``) or an OME-Zarr image group (its ``level``-th dataset)."""
    zarr = _zarr()
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"not a readable zarr store ({type(exc).__name__}: {detail}): give a zarr array's "
            "folder or an OME-Zarr image's (the one holding its zarr.json or .zattrs)",
            path,
        ) from exc
    scale = unit = None
    if isinstance(node, zarr.Array):
        if level:
            raise DataError(
                f"level {level} does not exist: a plain zarr array has level 0 only", path
            )
        array = node
        axes = {2: "YX", 3: "CYX", 4: "CZYX"}.get(array.ndim)
        if axes is None:
            raise DataError(
                f"expected a zarr array (H, W), (C, H, W) or (C, D, H, W), got shape {array.shape}",
                path,
            )
    else:
        attrs = dict(node.attrs)
        multiscales = attrs.get("ome", attrs).get("multiscales")
        if not multiscales:
            raise DataError(
                "is a zarr group but not an OME-Zarr image (no 'multiscales' metadata); unetkit "
                "reads a .zarr array or an OME-Zarr image: save the image array as its own .zarr "
                "(zarr.save('image.zarr', array)) or write OME-Zarr metadata for the group",
                path,
            )
        image = multiscales[0]
        datasets = image.get("datasets", [])
        if not 0 <= level < len(datasets):
            raise DataError(
                f"level {level} does not exist: the image has {len(datasets)} level(s), "
                f"0…{len(datasets) - 1}",
                path,
            )
        try:
            array = node[datasets[level]["path"]]
        except KeyError:
            raise DataError(
                f"the multiscales metadata names the array {datasets[level]['path']!r}, which is "
                f"missing: copy the store whole (arrays: {', '.join(sorted(node.array_keys())) or 'none'})",
                path,
            ) from None
        names = [a["name"] if isinstance(a, dict) else a for a in image.get("axes", [])]
        if not names:
            names = ["t", "c", "z", "y", "x"][-array.ndim :]  # NGFF 0.3 and older: tczyx
        try:
            axes = "".join(_NGFF_AXES[n.lower()] for n in names)
        except KeyError as exc:
            raise DataError(
                f"OME-Zarr axis {exc.args[0]!r} is not one of t, c, z, y, x", path
            ) from None
        scale, unit = _ngff_scale(image, datasets[level], axes)
    meta = ImageMeta(
        path=str(path),
        format="zarr",
        dtype=str(np.dtype(array.dtype)),
        axes=axes,
        channel_axis="C" if "C" in axes else None,
    )
    lazy = LazyImage(array, axes, path, meta)
    if scale is not None:
        meta.spacing = tuple(scale[axes.index(a)] for a in lazy.spatial_axes)
        meta.spacing_unit = unit
    meta.shape = lazy.shape
    return lazy


def _ngff_scale(image: dict, dataset: dict, axes: str) -> tuple[Optional[list], Optional[str]]:
    """The physical size per stored axis of a dataset (its scale transformation times the
    multiscales-wide one) and the unit of X, or ``(None, None)`` without a scale."""
    scale = [1.0] * len(axes)
    found = False
    for transforms in (
        dataset.get("coordinateTransformations", []),
        image.get("coordinateTransformations", []),
    ):
        for t in transforms or []:
            if t.get("type") == "scale" and len(t.get("scale", [])) == len(axes):
                scale = [a * float(b) for a, b in zip(scale, t["scale"])]
                found = True
    if not found:
        return None, None
    unit = None
    for entry in image.get("axes", []):
        if isinstance(entry, dict) and entry.get("name", "").lower() == "x" and entry.get("unit"):
            unit = UNITS_FROM_NGFF.get(entry["unit"], entry["unit"])
    return scale, unit


__all__ = ["LazyImage", "is_zarr_path", "level_count", "open_lazy"]
