"""Name -> (class, config dataclass) tables, so recipes pick components by name.

Imports nothing of ours: components register themselves with the decorator where
they are defined, and the registry only looks them up. Each registry has one contract for what its
entries' ``cls`` is called with; it is written beside the registry below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Entry:
    cls: Callable
    config: type


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def register(self, name: str, config: type) -> Callable[[Callable], Callable]:
        def wrap(cls: Callable) -> Callable:
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

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)


MODELS = Registry("model family")                 # cls(config, input_dim, vocab_size): a model trained from scratch
PRETRAINED_MODELS = Registry("pretrained model family")   # cls(config): the checkpoint ``config.init`` names, loaded
ENCODERS = Registry("encoder")                    # cls(config, input_dim)
DECODERS = Registry("attention decoder")          # cls(config, memory_dim, vocab_size)
SPEAKER_EMBEDDERS = Registry("speaker embedding model")   # cls(path or None, device): .embed(windows) -> (B, D)
