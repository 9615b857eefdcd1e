"""Names at the boundary: a name → builder registry for models (and, later, losses).

``create_model("unet3plus", num_classes=1)`` builds a preset; an unknown name lists the valid ones
and the closest match. ``None`` keyword values are dropped, so unset CLI flags keep the defaults.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

from .errors import ConfigError


@dataclass(frozen=True)
class Entry:
    """One registered name: the builder, preset keyword arguments and a one-line description."""

    builder: Callable[..., Any]
    defaults: dict = field(default_factory=dict)
    description: str = ""


class Registry:
    """A named collection of builders with presets."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(
        self, name: str, builder: Callable[..., Any], description: str = "", **defaults: Any
    ) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._entries[name] = Entry(builder, dict(defaults), description)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def builders(self) -> list[Callable[..., Any]]:
        """The distinct builders, in registration order (several presets may share one)."""
        return list(dict.fromkeys(e.builder for e in self._entries.values()))

    def get(self, name: str) -> Entry:
        key = name.lower().replace("_", "-")
        if key not in self._entries:
            close = difflib.get_close_matches(key, self._entries, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown {self.kind} {name!r}.{hint} Valid names: {', '.join(self.names())}"
            )
        return self._entries[key]

    def options(self, name: str) -> dict[str, inspect.Parameter]:
        """The keyword arguments the builder of ``name`` accepts."""
        sig = inspect.signature(self.get(name).builder)
        return {
            k: p
            for k, p in sig.parameters.items()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        }

    def create(self, name: str, **kwargs: Any) -> Any:
        entry = self.get(name)
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        valid = self.options(name)
        unknown = sorted(set(kwargs) - set(valid))
        if unknown:
            raise ConfigError(
                f"{self.kind} {name!r} has no option(s) {', '.join(unknown)}; "
                f"valid options: {', '.join(valid)}"
            )
        obj = entry.builder(**{**entry.defaults, **kwargs})
        if hasattr(obj, "preset"):
            obj.preset = name
        return obj
