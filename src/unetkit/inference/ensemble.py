"""Ensembles: several models' class probabilities averaged (the folds of ``unetkit train --folds K``).

:class:`EnsemblePredictor` holds one :class:`~unetkit.inference.predictor.Predictor` per model and
stands in for a predictor wherever :func:`~unetkit.inference.batch.predict_files` takes one: its
:meth:`~EnsemblePredictor.predict_proba` is the mean of the members' ``predict_proba`` (each with its
own normalisation, tiling, test-time augmentation), its labels the argmax of that mean. The members
must agree on the label map, the dimensionality, the input channels and the orientation. The labels get the
post-processing steps that every member's validation chose (each fold chose on its own validation
images for its own model; :func:`agreed_postprocessing`): a step only some members kept is left
out, a small-object removal every member kept is applied at the smallest of their sizes.

Images predicted band by band (:func:`~unetkit.inference.large.predict_large`, huge ``.npy`` / TIFF)
run the members side by side, tile by tile: each member's logits become log-probabilities (softmax
is blind to a per-pixel constant, so stitching those gives each member's own stitched
probabilities), the members' maps are stitched as one stack, and each finished band is turned into
the mean of the members' probabilities. That needs members that normalise an image alike and tile
it alike (the folds of one run do); others are refused with a one-line :class:`ConfigError` for
those images only.

Example:
    >>> ens = EnsemblePredictor.from_checkpoints(["fold_0/checkpoints/best.pt",
    ...                                            "fold_1/checkpoints/best.pt"])  # doctest: +SKIP
    >>> probs = ens.predict_proba(image)   # (K, *spatial), the members' mean  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .postprocess import PostProcessing
from .predictor import Predictor
from .tiling import TilePlan


def agreed_postprocessing(choices: Sequence[PostProcessing]) -> PostProcessing:
    """The steps every member's post-processing has, in the first member's order: a step of the
    same kind for the same class in each (the same watershed ``h``), a small-object removal at
    the smallest of the members' sizes (the most cautious; each fold sizes it from its own
    validation objects, so folds rarely name one size). A member's step the others lack is left
    out; members of different connectivity share nothing."""
    from dataclasses import replace

    first = choices[0]
    if any(c.connectivity != first.connectivity for c in choices):
        return PostProcessing(connectivity=first.connectivity)
    steps = []
    for step in first.steps:
        same = [
            next(
                (s for s in c.steps if (s.name, s.label, s.h) == (step.name, step.label, step.h)),
                None,
            )
            for c in choices
        ]
        if any(s is None for s in same):
            continue
        if step.name == "remove_small":
            volumes = [s.min_volume for s in same]
            step = replace(
                step,
                min_size=min(s.min_size for s in same),
                min_volume=None if None in volumes else min(volumes),
            )
        steps.append(step)
    return PostProcessing(tuple(steps), first.connectivity)


def _sizes_apart(steps: Sequence) -> str:
    """``", sizes 20/80 px"`` where the members' removals of one class differ in size, else
    ``""`` (a step is described by the first member's)."""
    sizes = [s.min_size for s in steps if s.name == "remove_small"]
    if len(set(sizes)) < 2:
        return ""
    return f", sizes {'/'.join(str(v) for v in sizes)} px"


def log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """``(B, K, …)`` logits → ``(B, K', …)`` log class probabilities (log-softmax; one sigmoid
    channel ``z`` → ``(log σ(−z), log σ(z))``), so members of either kind stack alike."""
    if logits.shape[1] == 1:
        return torch.cat([F.logsigmoid(-logits), F.logsigmoid(logits)], dim=1)
    return torch.log_softmax(logits, dim=1)


class EnsemblePredictor:
    """The mean class probabilities of several predictors (module docstring).

    Args:
        members: the predictors, at least one; they must share the label map, ``spatial_dims``,
            the model's input channels and the orientation.
        names: one name per member for messages and :meth:`describe` (default ``model 0``, …);
            :meth:`from_checkpoints` uses the checkpoint paths.
        postprocess: the clean-ups of the mean's labels (default: the members' own when they all
            chose the same, else none).

    Raises:
        ConfigError: no member, or a member that differs from the first in label map,
            dimensionality, input channels or orientation (one line naming that member).
    """

    def __init__(
        self,
        members: Sequence[Predictor],
        names: Optional[Sequence[str]] = None,
        postprocess: Optional[PostProcessing] = None,
    ):
        members = list(members)
        if not members:
            raise ConfigError("an ensemble needs at least one model")
        names = [str(n) for n in names] if names is not None else []
        names = names or [f"model {i}" for i in range(len(members))]
        if len(names) != len(members):
            raise ConfigError(f"{len(members)} ensemble members but {len(names)} names")
        first = members[0]

        def facts(p: Predictor) -> dict:
            labels = p.label_map
            return {
                "label map": list(labels.values) if labels is not None else None,
                "label kind": labels.kind if labels is not None else None,
                "dimensionality": f"{p.spatial_dims}D",
                "input channels": getattr(p.model, "in_channels", None),
                "orientation": getattr(p, "orientation", None),
            }

        ref = facts(first)
        for member, name in zip(members[1:], names[1:]):
            for what, value in facts(member).items():
                if value != ref[what]:
                    raise ConfigError(
                        f"{name}: its {what} {value} differs from {ref[what]} of {names[0]}; the "
                        "models of an ensemble must share label map, dimensionality, input "
                        "channels and orientation"
                    )
        units = {getattr(m, "spacing_unit", None) for m in members} - {None}
        if len(units) > 1:  # one voxel size is given to all: it cannot be in two units
            raise ConfigError(
                f"the models were trained on files calibrated in different units "
                f"({', '.join(sorted(units))}); an ensemble's members must share the unit of "
                "their voxel sizes"
            )
        self.members, self.names = members, names
        #: the first member's model, for what callers read off a model (input channels, classes)
        self.model = first.model
        self.spatial_dims = first.spatial_dims
        self.label_map = first.label_map
        self.device = first.device
        self.batch_size = first.batch_size
        #: a member's resolution factor (``None`` when every member works as stored); each member
        #: resamples for itself on whole images, band-by-band prediction refuses any
        self.scale = next((m.scale for m in members if m.scale is not None), None)
        #: a member's target voxel size (``None`` when none resamples by spacing), as :attr:`scale`
        self.target_spacing = next(
            (m.target_spacing for m in members if m.target_spacing is not None), None
        )
        #: a member's voxel size as trained (as stored) and the unit of its voxel sizes, for
        #: :func:`~unetkit.inference.predictor.spacing_for_model`
        self.trained_spacing = next(
            (m.trained_spacing for m in members if m.trained_spacing is not None), None
        )
        self.spacing_unit = next((m.spacing_unit for m in members if m.spacing_unit), None)
        #: every member was trained on grey stored as RGB: a grey image is copied into its channels
        self.grey_as_colour = all(getattr(m, "grey_as_colour", False) for m in members)
        #: the members' one orientation code (``data.orientation``), which predict_files applies
        self.orientation = getattr(first, "orientation", None)
        if postprocess is None:  # the members' choice where they agree (module docstring)
            postprocess = agreed_postprocessing([m.postprocess for m in members])
        #: the clean-ups predict_files applies to the labels of the mean
        self.postprocess = postprocess
        same = all(_norm_state(m) == _norm_state(first) for m in members)
        #: the members' one normalisation, for band-by-band prediction (``None`` when they differ:
        #: :meth:`plan` then refuses)
        self.normalizer = first.normalizer if same else None

    @classmethod
    def from_checkpoints(cls, paths: Sequence[Union[str, Path]], **kwargs) -> EnsemblePredictor:
        """One :meth:`Predictor.from_checkpoint` per path, with the same keyword arguments."""
        paths = [Path(p) for p in paths]
        return cls([Predictor.from_checkpoint(p, **kwargs) for p in paths], [str(p) for p in paths])

    def postprocess_line(self, unit: Optional[str] = None) -> Optional[str]:
        """What predict says of the clean-ups: the steps every member chose (applied), and those
        some chose but not all (left out, naming the members); ``None`` when no member chose any.
        """
        chosen = [m.postprocess for m in self.members if m.postprocess is not None]
        if not any(c.steps for c in chosen):
            return None
        dims = self.spatial_dims
        n = len(self.members)
        if len({c.connectivity for c in chosen}) > 1:
            return (
                f"post-processing: none (the {n} models count objects with different "
                "connectivities, so no step is shared)"
            )
        agreed = {(s.name, s.label, s.h) for s in self.postprocess.steps}
        left: dict = {}  # (name, label, h) -> (the members' steps, the members choosing it)
        for i, c in enumerate(self.members):
            for s in c.postprocess.steps if c.postprocess is not None else ():
                if (s.name, s.label, s.h) not in agreed:
                    steps, who = left.setdefault((s.name, s.label, s.h), ([], []))
                    steps.append(s)
                    who.append(i)
        applied = (
            f"post-processing (the steps all {n} models chose on validation): "
            f"{self.postprocess.describe(unit, dims)}"
            if self.postprocess.steps
            else f"post-processing: none (no step was chosen by all {n} models)"
        )
        if left:
            applied += "; left out: " + "; ".join(
                f"{steps[0].describe(unit, dims)} (model {', '.join(str(i + 1) for i in who)} of "
                f"{n} only{_sizes_apart(steps)})"
                for steps, who in left.values()
            )
        return applied

    def describe(self) -> str:
        """Two lines: the members averaged, then the first member's compute path."""
        return (
            f"ensemble of {len(self.members)} models, their probabilities averaged: "
            f"{', '.join(self.names)}\n{self.members[0].describe()}"
        )

    def resampling(self, spacing: Optional[Sequence[float]] = None) -> Optional[tuple]:
        """The first member's resampling of an image of voxel size ``spacing`` that resamples
        it (:meth:`Predictor.resampling`; each member resamples for itself), else ``None``."""
        factors = (m.resampling(spacing) for m in self.members)
        return next((f for f in factors if f is not None), None)

    # -- whole images --------------------------------------------------------------------------
    def predict_proba(
        self,
        image: np.ndarray,
        progress: Optional[Callable[[int, int], None]] = None,
        spacing: Optional[Sequence[float]] = None,
    ) -> np.ndarray:
        """``(C, *spatial)`` image → ``(K', *spatial)`` float32: the mean of the members'
        :meth:`Predictor.predict_proba`. ``progress(done, total)`` counts the tiles of every
        member (:meth:`Predictor.predict_logits`); ``spacing``: the image's voxel size, for
        members trained at a target spacing."""
        total: Optional[np.ndarray] = None
        m = len(self.members)
        for i, member in enumerate(self.members):
            report = None
            if progress is not None:

                def report(done: int, tiles: int, i: int = i) -> None:
                    progress(i * tiles + done, m * tiles)

            probs = member.predict_proba(image, progress=report, spacing=spacing)
            if total is None:
                total = np.array(probs, dtype=np.float32)
            else:
                total += probs
        total /= len(self.members)
        return total

    def predict(self, image: np.ndarray, spacing: Optional[Sequence[float]] = None) -> np.ndarray:
        """Class indices ``(*spatial)`` int64: the argmax of :meth:`predict_proba`."""
        return self.predict_proba(image, spacing=spacing).argmax(axis=0)

    # -- band by band (what predict_large asks of a predictor) ---------------------------------
    def plan(self, spatial_shape: Sequence[int]) -> TilePlan:
        """The members' common tile plan for ``spatial_shape``.

        Raises:
            ConfigError: the members normalise differently or tile this shape differently (band
                by band they share one tile loop), naming the member.
        """
        first = self.members[0].plan(spatial_shape)
        for member, name in zip(self.members[1:], self.names[1:]):
            what = None
            if _norm_state(member) != _norm_state(self.members[0]):
                what = "normalisation"
            elif member.plan(spatial_shape) != first:
                what = "tiling"
            if what:
                raise ConfigError(
                    f"{name}: its {what} differs from {self.names[0]}'s; an ensemble predicts a "
                    "large image band by band only with models that normalise and tile alike "
                    "(the folds of one run): predict it with each model alone"
                )
        return first

    def prepare_fast_path(self, channels: int, tile: Sequence[int], n_tiles: int) -> None:
        for member in self.members:
            member.prepare_fast_path(channels, tile, n_tiles)

    def tile_function(self, square: bool = True) -> Callable[[torch.Tensor], torch.Tensor]:
        """Batch ``(B, C, *tile)`` → the members' log-probabilities stacked on the class axis,
        ``(B, M·K', *out_tile)``; :meth:`probabilities` undoes the stacking."""
        functions = [m.tile_function(square) for m in self.members]

        def run(batch: torch.Tensor) -> torch.Tensor:
            return torch.cat([log_probabilities(f(batch)) for f in functions], dim=1)

        return run

    def probabilities(self, stacked: torch.Tensor) -> torch.Tensor:
        """Stitched ``(M·K', …)`` stack of :meth:`tile_function` → ``(K', …)`` the members' mean
        probabilities."""
        m = len(self.members)
        per_member = stacked.reshape(m, stacked.shape[0] // m, *stacked.shape[1:])
        return torch.softmax(per_member, dim=1).mean(dim=0)


def _norm_state(p: Predictor) -> Optional[dict]:
    return p.normalizer.to_dict() if p.normalizer is not None else None


__all__ = ["EnsemblePredictor", "log_probabilities"]
