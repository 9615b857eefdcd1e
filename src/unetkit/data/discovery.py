"""Find image/mask pairs (cases) in a dataset folder.

Two layouts are recognised, ``root`` being the folder that holds them (a split folder such as
``isbi2012/train`` is fine):

* **images/masks**: ``root/images/*`` and ``root/masks/*`` (folder aliases:
  ``image``/``imgs``/``img``/``original``/``raw`` and ``mask``/``labels``/``label``/``gt``/
  ``ground_truth``; case, spaces and hyphens are ignored, so CVC-ClinicDB's ``Original/`` and
  ``Ground Truth/`` match; ``original/`` and ``raw/`` only where no other image folder name is
  there, so a ``raw/`` beside ``images/`` is an extra folder), paired by file stem (``01.png`` ↔
  ``01.png``; the formats may differ). Masks may carry a suffix (``01_mask.png``): pass
  ``mask_suffix="_mask"``, or leave it ``None`` and it is detected: each mask stem that is an image
  stem plus a suffix (or the image stem itself, suffix ``""``) votes for that suffix, and the suffix
  most masks share wins (a tie gives ``""``). So one stray mask does not undo the detection: only
  the masks that do not fit it are reported.
  Other sibling folders whose files match the image stems (DRIVE's ``fov/``) go into
  :attr:`Case.extra` under the folder name, matched the same way.
* **case folders** (the 2018 Data Science Bowl layout): ``root/CASE/images/CASE.png`` (one image)
  and ``root/CASE/masks/*.png``, one binary file per object; the case id is the folder name and
  :attr:`Case.mask` the ``masks/`` folder (or, when it holds one file named as the image, that
  label file). Recognised when ``root`` has no ``images/`` and most of its sub-folders with an
  ``images/`` hold just one image named as the folder (split folders hold many, named otherwise). The same
  per-object folders may also sit in a ``masks/`` folder beside ``images/`` (``masks/CASE/``).
  :mod:`~unetkit.data.object_masks` reads them as instance ids.
* **nnU-Net raw**: ``root/imagesTr/CASE_0000.nii.gz`` (one file per channel, ``_0000``,
  ``_0001`` …) and ``root/labelsTr/CASE.nii.gz``; ``root/dataset.json`` is read when present
  (its ``channel_names``/``modality`` fix the channel count, its ``labels`` the label map, see
  :attr:`Discovery.dataset_json`). A case whose channel files do not match that count is one
  problem naming the first missing (or unexpected) file; the case is listed in
  :attr:`Discovery.incomplete`.
  A folder where no image name ends in ``_NNNN`` (Medical Segmentation Decathlon style) has one
  file per case.

Hidden files (``.DS_Store``, ``._x.png``) and ``Thumbs.db``/``desktop.ini`` are skipped silently.
Any other file that is not an image (``README.txt``) in an image or mask folder is a **problem**
(:func:`find_cases` raises): a stray file there is more often a mistake than documentation.

:func:`scan_dataset` collects every problem (``check-data`` lists them); :func:`find_cases`
raises a :class:`~unetkit.errors.DataError` for them. Results are sorted by case id.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

from ..errors import DataError
from ..io.readers import SUPPORTED_SUFFIXES, list_images, split_suffix
from .object_masks import EMPTY_MESSAGE, is_object_mask_folder, object_folder_problem

PathLike = Union[str, Path]

#: folder names of images and of masks; matched ignoring case, spaces and hyphens (``Images``,
#: ``Ground Truth`` and ``ground-truth`` match too, :func:`alias_dirs`)
IMAGE_DIR_NAMES = ("images", "image", "imgs", "img", "original", "raw")
#: image folder names taken only where no other image folder name is there: beside ``images/``, a
#: ``raw/`` folder is more often the raw microscope files kept alongside (an extra folder) than a
#: second image folder
FALLBACK_DIR_NAMES = ("original", "raw")
MASK_DIR_NAMES = ("masks", "mask", "labels", "label", "gt", "ground_truth", "groundtruth")

_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_SHOW = 5  # file names listed in one aggregated message


def channel_suffix(stem: str) -> Optional[tuple[str, int]]:
    """``"case_0001"`` → ``("case", 1)``: the case and channel of an nnU-Net image name, else
    ``None``."""
    m = _CHANNEL_RE.match(stem)
    return (m.group("case"), int(m.group("channel"))) if m else None


@dataclass
class Case:
    """One training/inference case.

    Attributes:
        case_id: the image stem (``"01"``; nnU-Net: the name without ``_0000``).
        images: one path per channel file, in channel order (usually one file).
        mask: the label file, or ``None`` when the dataset has no masks for it.
        extra: sibling files with the same stem, by folder name (``{"fov": Path(...)}``).
    """

    case_id: str
    images: list
    mask: Optional[Path] = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "case_id": self.case_id,
            "images": [str(p) for p in self.images],
            "mask": None if self.mask is None else str(self.mask),
            "extra": {k: str(v) for k, v in self.extra.items()},
        }


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset folder, on one line: ``"<path>: <message>"``.

    ``kind`` is one of ``missing``, ``layout``, ``empty``, ``non-image``, ``duplicate``,
    ``no-mask``, ``no-image``, ``channels``, ``dataset-json``.
    """

    kind: str
    path: Path
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class Discovery:
    """What :func:`scan_dataset` found: the cases, the layout and every problem."""

    root: Path
    layout: str = ""  # "images/masks", "case folders" or "nnunet"
    cases: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    image_dir: Optional[Path] = None
    mask_dir: Optional[Path] = None
    mask_suffix: str = ""
    extra_dirs: dict = field(default_factory=dict)
    dataset_json: Optional[dict] = None
    incomplete: set = field(
        default_factory=set
    )  # nnU-Net case ids with missing/unexpected channel files

    def add(self, kind: str, path: PathLike, message: str) -> None:
        self.problems.append(Problem(kind, Path(path), message))

    def error(self) -> DataError:
        """One :class:`DataError` summarising the problems (image/mask mismatches aggregated)."""
        first = self.problems[0]
        same = [p for p in self.problems if p.kind == first.kind]
        if (
            first.kind in ("no-mask", "no-image")
            and len(same) > 1
            and self.layout != "case folders"
        ):
            folder = self.mask_dir if first.kind == "no-mask" else self.image_dir
            what = (
                "image(s) have no mask in"
                if first.kind == "no-mask"
                else "mask(s) have no image in"
            )
            names = ", ".join(p.path.name for p in same[:_SHOW])
            more = f" and {len(same) - _SHOW} more" if len(same) > _SHOW else ""
            hint = f" (mask suffix {self.mask_suffix!r})" if self.mask_suffix else ""
            message, path, rest = (
                f"{len(same)} {what} {folder.name}/{hint}: {names}{more}"
                + (_channel_files_hint(same) if first.kind == "no-mask" else ""),
                folder,
                len(self.problems) - len(same),
            )
        else:
            message, path, rest = first.message, first.path, len(self.problems) - 1
        if rest:
            message += (
                f" (and {rest} more problem(s); run 'unetkit check-data {self.root}' to list them)"
            )
        return DataError(message, path)


def _channel_files_hint(unmatched: list) -> str:
    """``"; …"`` when the images without a mask are named as one file per channel
    (``CASE_0000``, ``CASE_0001``): they are grouped into cases only in the nnU-Net layout."""
    stems = [p.path.name.split(".")[0] for p in unmatched]
    matches = [_CHANNEL_RE.match(s) for s in stems]
    if not stems or not all(matches):
        return ""
    channels: dict = {}
    for m in matches:
        channels.setdefault(m["case"], set()).add(int(m["channel"]))
    # frame_0001 … frame_0005 are frames: channel files number each case's channels from 0000
    if not all(0 in c and len(c) > 1 for c in channels.values()):
        return ""
    return (
        "; images named one file per channel (CASE_0000, CASE_0001 …) are grouped into cases in "
        "the nnU-Net layout only: put them in imagesTr/ and the masks (CASE.png) in labelsTr/, "
        "or save each case as one multi-channel file"
    )


def find_cases(
    root: PathLike, mask_suffix: Optional[str] = None, require_masks: bool = True
) -> list[Case]:
    """The cases of a dataset folder, sorted by case id.

    Args:
        root: folder with ``images/`` + ``masks/`` (or nnU-Net ``imagesTr/`` + ``labelsTr/``).
        mask_suffix: suffix of mask stems (``"_mask"`` for ``01_mask.png``); ``None`` detects it.
        require_masks: when ``False`` a missing mask folder or a missing mask is allowed
            (``Case.mask`` is ``None``), e.g. for inference.

    Returns:
        The cases, sorted by ``case_id``.

    Raises:
        DataError: folder missing or empty, image without mask, mask without image, duplicate
            stems, a non-image file in an image/mask folder, … (one line naming the path).

    Example:
        >>> cases = find_cases("data/isbi2012/train")  # doctest: +SKIP
        >>> cases[0].case_id, cases[0].images[0].name, cases[0].mask.name
        ('00', '00.png', '00.png')
    """
    found = scan_dataset(root, mask_suffix=mask_suffix, require_masks=require_masks)
    if found.problems:
        raise found.error()
    return found.cases


def scan_dataset(
    root: PathLike, mask_suffix: Optional[str] = None, require_masks: bool = True
) -> Discovery:
    """Like :func:`find_cases`, but returns every problem in :attr:`Discovery.problems` instead of raising."""
    root = Path(root)
    found = Discovery(root=root)
    if not root.exists():
        found.add("missing", root, "dataset folder not found")
        return found
    if not root.is_dir():
        found.add("missing", root, "is a file; expected a dataset folder with images/ and masks/")
        return found
    if (root / "imagesTr").is_dir():
        _scan_nnunet(found, require_masks)
    elif not _has_dir(root, IMAGE_DIR_NAMES) and (case_folders := _case_folders(root)):
        _scan_case_folders(found, case_folders, require_masks)
    else:
        _scan_images_masks(found, mask_suffix, require_masks)
    found.cases.sort(key=lambda c: c.case_id)
    return found


# ------------------------------------------------------------------------------------ shared parts
def _list_images(found: Discovery, folder: Path, object_folders: bool = False) -> dict[str, Path]:
    """Image files of ``folder`` by stem; records non-image, duplicate and empty-folder problems.

    With ``object_folders`` (a mask folder), a sub-folder holding only image files is a per-object
    mask folder (:mod:`~unetkit.data.object_masks`), listed under its whole name.
    """
    listing = list_images(folder)
    if object_folders:
        for entry in [e for e in listing.others if is_object_mask_folder(e)]:
            listing.others.remove(entry)
            listing.by_stem.setdefault(entry.name, []).append(entry)
    for entry in listing.others:
        problem = object_folder_problem(entry) if object_folders else None
        if problem is not None:
            found.add("non-image", *problem)
        elif entry.is_dir():
            found.add(
                "non-image",
                entry,
                f"is a folder inside {folder.name}/; expected image files only (or DICOM series "
                "folders: *.dcm slices)",
            )
        else:
            suffix = split_suffix(entry)[1] or "(none)"
            found.add(
                "non-image",
                entry,
                f"not an image file (suffix {suffix}); supported: "
                f"{', '.join(SUPPORTED_SUFFIXES)}; move it out of {folder.name}/",
            )
    for stem, paths in listing.duplicates().items():
        found.add(
            "duplicate",
            folder,
            f"{len(paths)} files with the stem {stem!r}: "
            f"{', '.join(p.name for p in paths)}; keep one",
        )
    if not listing.by_stem:
        found.add(
            "empty",
            folder,
            f"no image files in the folder (supported: {', '.join(SUPPORTED_SUFFIXES)})",
        )
    return listing.first()


def continues_number(stem: str, suffix: str) -> bool:
    """Whether ``stem + suffix`` only continues a number (``"1"`` + ``"0"``: the name ``10``,
    not image ``1`` with a suffix ``0``): a digit suffix after a digit is never a name suffix."""
    return suffix[:1].isdigit() and stem[-1:].isdigit()


def _suffix_votes(image_stems: Sequence[str], other_stems: Sequence[str]) -> Counter:
    """How many other stems are an image stem + each suffix: a stem equal to an image stem votes
    for ``""``; otherwise the longest image stem it starts with gives its suffix; a stem matching
    no image stem, or only by continuing its number (:func:`continues_number`), does not vote."""
    images = set(image_stems)
    votes: Counter = Counter()
    for stem in other_stems:
        if stem in images:
            votes[""] += 1
            continue
        prefixes = [
            s
            for s in images
            if stem.startswith(s) and len(stem) > len(s) and not continues_number(s, stem[len(s) :])
        ]
        if prefixes:
            votes[stem[len(max(prefixes, key=len)) :]] += 1
    return votes


def _detect_suffix(image_stems: Sequence[str], other_stems: Sequence[str]) -> str:
    """The suffix ``s`` shared by most other stems of the form image stem + ``s``
    (:func:`_suffix_votes`); ``""`` when nothing matches or when two suffixes tie for the most
    votes.
    """
    ranked = _suffix_votes(image_stems, other_stems).most_common(2)
    if not ranked or (len(ranked) == 2 and ranked[0][1] == ranked[1][1]):
        return ""
    return ranked[0][0]


def _mixed_suffixes(image_stems: Sequence[str], mask_stems: Sequence[str]) -> Optional[str]:
    """One line when the masks are named with several suffixes after their images' names
    (``a_mask.png``, ``b_label.png``): only one suffix is read, so the others' masks and images
    are each a problem of their own, and this says why; ``None`` otherwise."""
    votes = _suffix_votes(image_stems, mask_stems)
    # "0_mask" after image "1" is mask "10_mask" of a missing image "10", not a second suffix
    named = [(suffix, n) for suffix, n in votes.most_common() if suffix and not suffix[0].isdigit()]
    if len(named) < 2 or (votes[""] and votes[""] >= named[0][1]):
        return None
    shown = ", ".join(f"{suffix!r} {n}" for suffix, n in named[:6])
    return (
        f"mask names add {len(named)} different suffixes to their images' names ({shown}): "
        "masks are paired by one suffix, so name every mask as its image plus the same suffix "
        f"(e.g. STEM{named[0][0]}.png) or as its image"
    )


def _strip(stems: dict[str, Path], suffix: str) -> tuple[dict[str, Path], list[Path]]:
    """``stems`` keyed without ``suffix``; files whose stem lacks it are returned apart."""
    if not suffix:
        return dict(stems), []
    kept, lacking = {}, []
    for stem, path in stems.items():
        if stem.endswith(suffix) and len(stem) > len(suffix):
            kept[stem[: -len(suffix)]] = path
        else:
            lacking.append(path)
    return kept, lacking


def _folder_key(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def is_dir_alias(name: str, names: Sequence[str]) -> bool:
    """``name`` is one of ``names`` (:data:`IMAGE_DIR_NAMES`, :data:`MASK_DIR_NAMES`), ignoring case,
    spaces and hyphens."""
    return _folder_key(name) in names


def alias_dirs(folder: PathLike, names: Sequence[str]) -> list[Path]:
    """The sub-folders of ``folder`` named one of ``names`` (see :func:`is_dir_alias`), in the order
    of ``names``."""
    folder = Path(folder)
    try:
        entries = [d for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")]
    except OSError:
        return []
    order = {n: i for i, n in enumerate(names)}
    hits = [d for d in entries if _folder_key(d.name) in order]
    return sorted(hits, key=lambda d: (order[_folder_key(d.name)], d.name))


def _find_dir(found: Discovery, names: Sequence[str]) -> Optional[Path]:
    return _find_dir_in(found, found.root, names)


# ----------------------------------------------------------------------------------- images/masks
def _scan_images_masks(found: Discovery, mask_suffix: Optional[str], require_masks: bool) -> None:
    root = found.root
    image_dir = _find_dir(found, IMAGE_DIR_NAMES)
    if image_dir is None:
        splits = sorted(
            d.name
            for d in root.iterdir()
            if d.is_dir() and (alias_dirs(d, IMAGE_DIR_NAMES) or (d / "imagesTr").is_dir())
        )
        hint = (
            f"; it holds split folders ({', '.join(splits)}): pass one of them"
            if splits
            else "; expected root/images/ + root/masks/, or nnU-Net root/imagesTr/ + root/labelsTr/"
        )
        also = "" if splits else f" (also looked for {', '.join(IMAGE_DIR_NAMES[1:])}/)"
        found.add("layout", root, f"no images/ folder{also}{hint}")
        return
    found.layout = "images/masks"
    found.image_dir = image_dir
    mask_dir = _find_dir(found, MASK_DIR_NAMES)
    found.mask_dir = mask_dir
    images = _list_images(found, image_dir)
    masks: dict[str, Path] = {}
    if mask_dir is None:
        if require_masks:
            found.add(
                "layout",
                root,
                f"no masks/ folder beside {image_dir.name}/ (also looked for "
                f"{', '.join(MASK_DIR_NAMES[1:])}/)",
            )
    else:
        raw = _list_images(found, mask_dir, object_folders=True)
        suffix = mask_suffix if mask_suffix is not None else ""
        if mask_suffix is None and raw and not set(raw) <= set(images):
            suffix = _detect_suffix(sorted(images), sorted(raw))
            mixed = _mixed_suffixes(sorted(images), sorted(raw))
            if mixed:  # first: the per-file problems it causes follow
                found.problems.insert(0, Problem("layout", mask_dir, mixed))
        found.mask_suffix = suffix
        masks, lacking = _strip(raw, suffix)
        for path in lacking:
            found.add(
                "no-image",
                path,
                _backup_folder_fix(mask_dir)
                if path.is_dir()
                else f"mask name lacks the mask suffix {suffix!r}; rename it to STEM{suffix}"
                f"{path.suffix or '.png'} or move it out of {mask_dir.name}/",
            )
    extra_maps = dict(_extra_dirs(found, images))
    found.extra_dirs = {name: root / name for name in extra_maps}
    for stem in sorted(images):
        mask = masks.get(stem)
        if mask is None and mask_dir is not None and require_masks:
            expected = f"{stem}{found.mask_suffix}.*"
            found.add(
                "no-mask",
                images[stem],
                f"no mask in {mask_dir.name}/ (expected {mask_dir.name}/{expected})",
            )
        extra = {}
        for name, by_stem in extra_maps.items():
            if stem in by_stem:
                extra[name] = by_stem[stem]
        found.cases.append(Case(stem, [images[stem]], mask, extra))
    for stem in sorted(set(masks) - set(images)):
        where = f"{mask_dir.name}/"  # masks are only read from a mask folder
        fix = (
            _backup_folder_fix(mask_dir) + " or add the image"
            if masks[stem].is_dir()
            else f"add the image or move the mask out of {where}"
        )
        found.add(
            "no-image", masks[stem], f"no image in {image_dir.name}/ with the stem {stem!r}; {fix}"
        )


def _backup_folder_fix(mask_dir: Path) -> str:
    """What a folder inside the mask folder is taken for, and the fix when it is not that."""
    return (
        f"a folder in {mask_dir.name}/ is read as one image's masks, one file per object: move it "
        f"out of {mask_dir.name}/ (a backup?)"
    )


def _extra_dirs(found: Discovery, images: dict[str, Path]) -> list[tuple[str, dict[str, Path]]]:
    """Sibling folders whose image files match image stems (own suffix detected): (name, {stem: path})."""
    skip = {found.image_dir, found.mask_dir}
    out = []
    for folder in sorted(found.root.iterdir()):
        if not folder.is_dir() or folder in skip or folder.name.startswith("."):
            continue
        files: dict[str, Path] = list_images(folder).first()
        if not files:
            continue
        suffix = "" if set(files) <= set(images) else _detect_suffix(sorted(images), sorted(files))
        matched, _ = _strip(files, suffix)
        matched = {s: p for s, p in matched.items() if s in images}
        if matched:
            out.append((folder.name, matched))
    return out


# ----------------------------------------------------------------------------------- case folders
def _has_dir(folder: Path, names: Sequence[str]) -> bool:
    return bool(alias_dirs(folder, names))


def _case_folders(root: Path) -> list[Path]:
    """The sub-folders of ``root`` that are case folders, when ``root`` is laid out that way.

    A case folder holds ``images/`` with one image named as the folder (``CASE/images/CASE.png``);
    split folders (``train/``, ``val/``) hold many, named otherwise. So the layout is recognised when
    most sub-folders with an ``images/`` folder hold exactly that one image (the others are then
    reported, not mistaken for splits).
    """
    candidates = [
        d
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".") and _has_dir(d, IMAGE_DIR_NAMES)
    ]
    named = 0
    for folder in candidates:
        stems = list(list_images(alias_dirs(folder, IMAGE_DIR_NAMES)[0]).by_stem)
        named += stems == [folder.name]
    return candidates if named > len(candidates) / 2 else []


def is_case_folder_dataset(root: PathLike) -> bool:
    """``root`` holds case folders (``case/images/<one image>`` + ``case/masks/``, the 2018 Data
    Science Bowl layout) and no ``images/`` of its own."""
    root = Path(root)
    return root.is_dir() and not _has_dir(root, IMAGE_DIR_NAMES) and bool(_case_folders(root))


def _scan_case_folders(found: Discovery, folders: list[Path], require_masks: bool) -> None:
    """One case per folder: ``case/images/<one image>`` and ``case/masks/`` with one binary file
    per object (the 2018 Data Science Bowl layout); the case id is the folder name. A ``masks/``
    holding a single file named as the image (``CASE.png``, or with a suffix: ``CASE_mask.png``) is
    that case's label image, read as any mask file is."""
    found.layout = "case folders"
    for folder in folders:
        image_dir = _find_dir_in(found, folder, IMAGE_DIR_NAMES)
        images = _list_images(found, image_dir)
        if len(images) > 1:
            found.add(
                "layout",
                image_dir,
                f"{len(images)} images in a case folder's {image_dir.name}/ "
                f"({', '.join(p.name for p in list(images.values())[:_SHOW])}); a case folder holds "
                "one image, its objects' masks in masks/",
            )
            continue
        if not images:  # already an "empty" problem
            continue
        image = next(iter(images.values()))
        mask_dir = _find_dir_in(found, folder, MASK_DIR_NAMES)
        mask = None
        if mask_dir is None:
            if require_masks:
                found.add(
                    "no-mask",
                    image,
                    f"no masks/ folder in the case folder {folder.name}/ (expected "
                    f"{folder.name}/masks/ with one binary file per object; an image without "
                    "objects: one all-black file)",
                )
        elif not any(not e.name.startswith(".") for e in mask_dir.iterdir()):
            found.add("empty", mask_dir, f"{EMPTY_MESSAGE} of the image's size")
        else:
            files = _list_images(found, mask_dir)  # non-image files, an empty folder: problems
            if len(files) == 1 and next(iter(files)).startswith(split_suffix(image)[0]):
                mask = next(iter(files.values()))  # one label image, not one object
            elif files:
                mask = mask_dir
        found.cases.append(Case(folder.name, [image], mask, {}))


def _find_dir_in(found: Discovery, folder: Path, names: Sequence[str]) -> Optional[Path]:
    hits = alias_dirs(folder, names)
    preferred = [d for d in hits if _folder_key(d.name) not in FALLBACK_DIR_NAMES]
    hits = preferred or hits  # raw/ beside images/ is an extra folder, not a second image folder
    if len(hits) > 1:
        found.add("layout", folder, f"both {hits[0].name}/ and {hits[1].name}/ exist; keep one")
    return hits[0] if hits else None


# ---------------------------------------------------------------------------------------- nnU-Net
def _read_dataset_json(found: Discovery) -> None:
    path = found.root / "dataset.json"
    if not path.is_file():
        return
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        found.add("dataset-json", path, f"unreadable dataset.json ({' '.join(str(exc).split())})")
        return
    if not isinstance(data, dict):
        found.add("dataset-json", path, "dataset.json must hold a JSON object")
        return
    found.dataset_json = data


def _scan_nnunet(found: Discovery, require_masks: bool) -> None:
    found.layout = "nnunet"
    root = found.root
    _read_dataset_json(found)
    image_dir = root / "imagesTr"
    found.image_dir = image_dir
    mask_dir = root / "labelsTr"
    found.mask_dir = mask_dir if mask_dir.is_dir() else None
    files = _list_images(found, image_dir)
    channel_names = None
    if found.dataset_json is not None:
        channel_names = found.dataset_json.get("channel_names", found.dataset_json.get("modality"))
    expected = len(channel_names) if isinstance(channel_names, dict) else None
    per_case: dict[str, dict[int, Path]] = {}
    named = {stem: _CHANNEL_RE.match(stem) for stem in files}
    if files and not any(named.values()):  # one (possibly 4D) file per case
        per_case = {stem: {0: path} for stem, path in files.items()}
        expected = None
    else:
        for stem, m in named.items():
            if m is None:
                found.add(
                    "non-image",
                    files[stem],
                    "nnU-Net image name must end in _NNNN (the channel index, "
                    "e.g. case_0000.nii.gz)",
                )
                continue
            per_case.setdefault(m.group("case"), {})[int(m.group("channel"))] = files[stem]
    counts = {len(ch) for ch in per_case.values()}
    if expected is None and counts:
        expected = max(counts)
    source = (
        "dataset.json lists"
        if expected is not None
        and found.dataset_json is not None
        and isinstance(channel_names, dict)
        else "other cases have"
    )
    for case_id, channels in sorted(per_case.items()):
        want = list(range(expected or 0))
        if sorted(channels) != want and expected:
            found.incomplete.add(case_id)
            have = ", ".join(channels[c].name for c in sorted(channels))
            missing = [c for c in want if c not in channels]
            if missing:
                ending = split_suffix(next(iter(channels.values())))[1]
                names = [f"{case_id}_{c:04d}{ending}" for c in missing]
                also = ", ".join(names[1 : _SHOW + 1]) + (
                    f" and {len(names) - _SHOW - 1} more" if len(names) > _SHOW + 1 else ""
                )
                found.add(
                    "channels",
                    image_dir / names[0],
                    f"channel file missing (case {case_id!r}: {source} {expected} channel(s), found {have}"
                    + (f"; also missing {also})" if also else ")"),
                )
            else:
                extra = [channels[c] for c in sorted(channels) if c not in want]
                found.add(
                    "channels",
                    extra[0],
                    f"unexpected channel file(s) {', '.join(p.name for p in extra)} "
                    f"of case {case_id!r} ({source} {expected} channel(s))",
                )
    masks: dict[str, Path] = {}
    if found.mask_dir is not None:
        masks = _list_images(found, found.mask_dir)
    elif require_masks:
        found.add("layout", root, "no labelsTr/ folder beside imagesTr/")
    for case_id, channels in sorted(per_case.items()):
        mask = masks.get(case_id)
        if mask is None and found.mask_dir is not None and require_masks:
            found.add(
                "no-mask",
                channels[min(channels)],
                f"no label in labelsTr/ (expected labelsTr/{case_id}.*)",
            )
        found.cases.append(Case(case_id, [channels[c] for c in sorted(channels)], mask, {}))
    for stem in sorted(set(masks) - set(per_case)):
        found.add("no-image", masks[stem], f"no image in imagesTr/ for the case {stem!r}")
