"""A network's size rule as one value: which spatial sizes it accepts and what it returns.

Every consumer of model geometry — tile planning, overlap-tile borders, shift alignment, export
metadata, checkpoints, foreign backends (ONNX, TorchScript, bioimage.io) — reads a
:class:`SizeRule` instead of probing the model. A unetkit model computes its rule from its own size
arithmetic (:meth:`~unetkit.models.base.SegmentationModel.size_rule`); an exported graph carries it
in its metadata (:meth:`SizeRule.from_dict`).

Per spatial axis, a rule says:

* ``min`` and ``step``: the accepted sizes are ``min + k·step`` (k ≥ 0); ``step == 0`` means only
  ``min`` (a graph traced for one size). Valid-padding U-Nets: ``step = 2**depth``; same-padding
  models accept every size from ``min`` on (``step = 1``); their exports accept multiples of
  ``2**depth``.
* ``shrink``: input − output (0 for same padding; 184 for the paper's U-Net: 572 → 388). The lost
  border is split ``shrink // 2`` before, the rest after, as the U-Net's centre crops.
* ``period``: the pooling period ``2**depth``: a network with ×2 down-samplings is equivariant to
  shifts by multiples of it, so tiles placed on that grid see the whole image's pooling grid. An
  anisotropic net (per-axis strides) has one period per axis, the product of that axis's strides,
  and ``min``/``step`` follow it per axis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

from ..errors import ConfigError
from ..utils import per_axis

Size = Union[int, "tuple[int, ...]", "list[int]"]
PADDINGS = ("same", "valid")


@dataclass(frozen=True)
class SizeRule:
    """Accepted input sizes ``min + k·step`` per axis, output ``input − shrink``, shift ``period``.

    Example:
        >>> rule = create_model("unet-original").size_rule()
        >>> rule.min, rule.step, rule.shrink, rule.period
        ((188, 188), (16, 16), (184, 184), (16, 16))
        >>> rule.output_size(572)
        (388, 388)
    """

    padding: str
    min: tuple[int, ...]
    step: tuple[int, ...]
    shrink: tuple[int, ...]
    period: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.padding not in PADDINGS:
            raise ConfigError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        n = len(self.min)
        for name in ("step", "shrink", "period"):
            if len(getattr(self, name)) != n:
                raise ConfigError(
                    f"size rule: {name} has {len(getattr(self, name))} values, min has {n}"
                )
        if (
            n < 1
            or min(self.min) < 1
            or min(self.step) < 0
            or min(self.shrink) < 0
            or min(self.period) < 1
        ):
            raise ConfigError(
                f"size rule needs min ≥ 1, step ≥ 0, shrink ≥ 0, period ≥ 1 per axis, got {self}"
            )

    # -- construction ------------------------------------------------------------------------------
    @classmethod
    def uniform(
        cls, dims: int, padding: str, min: int, step: int, shrink: int = 0, period: int = 1
    ) -> SizeRule:
        """The same rule on every one of ``dims`` axes."""
        return cls(padding, (min,) * dims, (step,) * dims, (shrink,) * dims, (period,) * dims)

    @classmethod
    def any_size(cls, dims: int) -> SizeRule:
        """Every size ≥ 1, output = input, no pooling grid: a plain translation-equivariant function."""
        return cls.uniform(dims, "same", 1, 1)

    @classmethod
    def from_axis_function(
        cls,
        axis_output_size: Callable[[int, int], Optional[int]],
        dims: int,
        padding: str,
        period: Union[int, tuple[int, ...]],
        search: int = 4096,
        what: str = "model",
    ) -> SizeRule:
        """Summarise a per-axis size function (``(size, axis) → output size``, ``None`` = not
        accepted); ``period`` is one int or one per axis (an anisotropic net pools its axes apart).

        On each axis the function is probed from 1 up to the smallest accepted size and then over
        four periods, which must follow ``min + k·step`` with a constant shrink (``step = period``
        for valid padding, 1 for same padding).

        Raises:
            ConfigError: no accepted size below ``search``, or the accepted sizes or outputs do not
                follow one arithmetic rule.
        """
        periods = per_axis(period, dims, "period", minimum=1)
        mins, steps, shrinks = [], [], []
        for axis, per in enumerate(periods):
            lo = next(
                (s for s in range(1, search + 1) if axis_output_size(s, axis) is not None), None
            )
            if lo is None:
                raise ConfigError(
                    f"this {what} accepts no input size up to {search} on spatial axis {axis}"
                )
            step = per if padding == "valid" else 1
            shrink = lo - int(axis_output_size(lo, axis))
            for s in range(lo, lo + 4 * per + 1):
                out = axis_output_size(s, axis)
                expected = (s - lo) % step == 0
                if (out is not None) != expected or (out is not None and s - out != shrink):
                    raise ConfigError(
                        f"the valid input sizes of this {what} on spatial axis {axis} are not of "
                        f"the form {lo} + k·{step} with output = input − {shrink} "
                        f"(size {s} gives {out})"
                    )
            mins.append(lo)
            steps.append(step)
            shrinks.append(shrink)
        return cls(padding, tuple(mins), tuple(steps), tuple(shrinks), tuple(periods))

    @classmethod
    def from_dict(cls, data: dict, dims: Optional[int] = None) -> SizeRule:
        """Read the dict :meth:`to_dict` writes (also the ``valid_input_size`` metadata of exports).

        Older exports carry no ``period``: the graph's ``step`` is then the period (``step`` is
        ``2**depth`` for both paddings of an exported graph; 1 for a fixed-size graph).
        """
        try:
            mins = tuple(int(v) for v in data["min"])
            dims = len(mins) if dims is None else dims
            steps = tuple(int(v) for v in data["step"])
            if not data.get("dynamic_spatial", True):
                steps = (0,) * len(mins)
            shrink = tuple(int(v) for v in data.get("shrink", (0,) * len(mins)))
            period = data.get("period") or [max(1, int(s)) for s in data["step"]]
            rule = cls(
                str(data.get("padding", "same")),
                mins,
                steps,
                shrink,
                tuple(int(v) for v in period),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"not a size rule ({type(exc).__name__}: {exc}): {data!r}") from None
        if rule.spatial_dims != dims:
            raise ConfigError(f"size rule has {rule.spatial_dims} axes, expected {dims}: {data!r}")
        return rule

    def to_dict(self) -> dict:
        """``{"padding", "min", "step", "shrink", "period"}`` with per-axis lists (JSON-ready)."""
        return {
            "padding": self.padding,
            "min": list(self.min),
            "step": list(self.step),
            "shrink": list(self.shrink),
            "period": list(self.period),
        }

    def for_export(self) -> SizeRule:
        """The sizes a traced graph of this model can take: same-padding graphs need multiples of
        the period (no decoder padding is traced); valid-padding rules are already of that form."""
        if self.padding == "valid":
            return self
        mins = tuple(-(-lo // p) * p for lo, p in zip(self.min, self.period))
        return SizeRule(self.padding, mins, self.period, self.shrink, self.period)

    def fixed(self, size: Size) -> SizeRule:
        """This rule restricted to exactly ``size`` (a graph traced without dynamic spatial axes)."""
        sizes = self.sizes(size)
        self.check(sizes)
        return SizeRule(self.padding, sizes, (0,) * self.spatial_dims, self.shrink, self.period)

    # -- questions ---------------------------------------------------------------------------------
    @property
    def spatial_dims(self) -> int:
        return len(self.min)

    @property
    def is_valid_padding(self) -> bool:
        """Whether outputs are smaller than inputs (overlap-tile prediction)."""
        return self.padding == "valid"

    @property
    def border(self) -> tuple[tuple[int, int], ...]:
        """``(before, after)`` context lost per axis: ``shrink // 2`` before, the rest after."""
        return tuple((k // 2, k - k // 2) for k in self.shrink)

    def sizes(self, size: Any, name: str = "size") -> tuple[int, ...]:
        """``size`` as one int per axis (an int applies to every axis)."""
        return per_axis(size, self.spatial_dims, name, minimum=1)

    def axis_accepts(self, axis: int, s: int) -> bool:
        lo, step = self.min[axis], self.step[axis]
        return s == lo if step == 0 else (s >= lo and (s - lo) % step == 0)

    def accepts(self, size: Any) -> bool:
        """Whether every axis of ``size`` is accepted."""
        try:
            sizes = self.sizes(size)
        except ConfigError:
            return False
        return all(self.axis_accepts(a, s) for a, s in enumerate(sizes))

    def nearest(self, axis: int, s: int) -> tuple[Optional[int], Optional[int]]:
        """The largest accepted size ≤ ``s`` and the smallest ≥ ``s`` on ``axis`` (``None``: none)."""
        lo, step = self.min[axis], self.step[axis]
        if s <= lo:
            return (lo if s == lo else None), lo
        if step == 0:
            return lo, None
        below = lo + (s - lo) // step * step
        return below, (below if below == s else below + step)

    def at_least(self, size: Any) -> tuple[int, ...]:
        """The smallest accepted size ≥ ``size`` per axis.

        Raises:
            ConfigError: a fixed-size rule cannot reach ``size`` on some axis.
        """
        out = []
        for a, s in enumerate(self.sizes(size)):
            above = self.nearest(a, s)[1]
            if above is None:
                raise ConfigError(
                    f"only size {self.min[a]} is accepted on spatial axis {a} (asked for ≥ {s})"
                )
            out.append(above)
        return tuple(out)

    def at_most(self, size: Any) -> tuple[int, ...]:
        """The largest accepted size ≤ ``size`` per axis, or the smallest one where none is below."""
        out = []
        for a, s in enumerate(self.sizes(size)):
            below, above = self.nearest(a, s)
            out.append(below if below is not None else above)
        return tuple(out)

    def output_size(self, size: Any) -> tuple[int, ...]:
        """Output size per axis for an input ``size``; raises (naming the nearest sizes) when not accepted."""
        sizes = self.sizes(size)
        self.check(sizes)
        return tuple(s - k for s, k in zip(sizes, self.shrink))

    def input_for_output(self, size: Any) -> tuple[int, ...]:
        """The smallest accepted input whose output is at least ``size`` per axis (572 for 388)."""
        return self.at_least(tuple(s + k for s, k in zip(self.sizes(size), self.shrink)))

    def check(self, size: Any, what: str = "this model", prefix: str = "") -> None:
        """Raise a :class:`ConfigError` naming the axis, the rule and the nearest accepted sizes."""
        for a, s in enumerate(self.sizes(size)):
            if not self.axis_accepts(a, s):
                options = " or ".join(str(v) for v in dict.fromkeys(self.nearest(a, s)) if v)
                raise ConfigError(
                    f"{prefix}input size {s} on spatial axis {a} is not accepted by {what} "
                    f"(valid: {self.describe()}); use {options}"
                )

    def describe(self) -> str:
        """``"188 + 16·k (k ≥ 0) on every axis"``, ``"multiples of 16 …"``, ``"exactly 64×64"``."""
        if not any(self.step):
            return "exactly " + "×".join(str(s) for s in self.min)

        def one(lo: int, st: int) -> str:
            if st == 0:
                return f"exactly {lo}"
            if st == 1:
                return f"any size ≥ {lo}"
            return f"multiples of {st}" if lo == st else f"{lo} + {st}·k (k ≥ 0)"

        parts = set(zip(self.min, self.step))
        if len(parts) == 1:
            return one(*parts.pop()) + " on every axis"
        return "; ".join(
            f"axis {i}: {one(lo, st)}" for i, (lo, st) in enumerate(zip(self.min, self.step))
        )


def size_rule_of(model: Any, spatial_dims: Optional[int] = None) -> SizeRule:
    """The :class:`SizeRule` of ``model``: a rule itself, anything with ``size_rule()`` (unetkit
    models, export runners), or — for a plain function or module without one — every size
    (:meth:`SizeRule.any_size`, which needs ``spatial_dims`` or ``model.spatial_dims``)."""
    if isinstance(model, SizeRule):
        return model
    method = getattr(model, "size_rule", None)
    if callable(method):
        return method()
    if hasattr(model, "is_valid_input_size") or hasattr(model, "valid_input_size"):
        raise ConfigError(
            f"{type(model).__name__} restricts its input sizes but has no size_rule(); "
            f"give it one returning a SizeRule"
        )
    dims = spatial_dims if spatial_dims is not None else getattr(model, "spatial_dims", None)
    if dims is None:
        raise ConfigError(
            f"{type(model).__name__} has no size rule; pass a SizeRule or give spatial_dims"
        )
    return SizeRule.any_size(int(dims))


__all__ = ["PADDINGS", "SizeRule", "size_rule_of"]
