"""Name -> (class, config dataclass) tables, so recipes pick components by name.

Imports nothing of ours: components register themselves with the decorator where
they are defined, and the registry only looks them up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Entry:
    cls: type
    config: type


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type) -> Callable[[type], type]:
        def wrap(cls: type) -> type:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = Entry(cls, config)
            return cls

        return wrap

    def get(self, name: str) -> Entry:
        from asrforge.errors import ConfigError

        if name not in self._entries:
            allowed = ", ".join(self.names()) or "(none registered)"
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of: {allowed}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

MODELS = Registry("model family")
ENCODERS = Registry("encoder")
DECODERS = Registry("attention decoder")
