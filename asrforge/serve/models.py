"""The served models: named checkpoints, loaded at start or on first use, unloaded after a while idle.

A model is loaded once and shared by every request; ``in_use`` counts the requests holding it, so an idle
timeout (``--model-ttl``) never unloads a model under a running request. Loading is serialized per model, so
two first requests load it once.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from asrforge.inference.recognizer import Recognizer
from asrforge.serve.errors import ApiError

log = logging.getLogger("asrforge")


def parse_model_specs(specs: list[str]) -> dict[str, str]:
    """``["NAME=PATH", "PATH", ...]`` -> ``{name: path}``; a bare path is named after its folder or file stem."""
    models: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            path = spec
            name = Path(spec.rstrip("/")).stem if Path(spec).suffix else Path(spec.rstrip("/")).name
        name, path = name.strip(), path.strip()
        if not name or not path:
            raise ValueError(f"--model {spec!r}: give NAME=PATH or a path")
        if name in models:
            raise ValueError(f"--model: the name {name!r} is given twice; name one of them NAME=PATH")
        models[name] = path
    return models


@dataclass
class ServedModel:
    name: str
    path: str
    recognizer: Recognizer | None = None
    last_used: float = field(default_factory=time.monotonic)
    in_use: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)    # held while loading


class ModelPool:
    """``{name: path}`` served by :meth:`acquire`/:meth:`release`; ``loader(path)`` builds a recognizer."""

    def __init__(self, models: dict[str, str], loader: Callable[[str], Recognizer], ttl: float | None = None):
        self.models = {name: ServedModel(name, path) for name, path in models.items()}
        self.loader = loader
        self.ttl = ttl
        self._guard = threading.Lock()

    def names(self) -> list[str]:
        return list(self.models)

    def served(self, name: str) -> ServedModel:
        if name not in self.models:
            raise ApiError(404, f"the model {name!r} is not served here; this server has {', '.join(self.models)} "
                                f"(GET /v1/models lists them)", "model", "model_not_found")
        return self.models[name]

    def load(self, name: str) -> Recognizer:
        """Load ``name`` if it is not loaded (blocking: call it off the event loop)."""
        served = self.served(name)
        with served.lock:
            if served.recognizer is None:
                start = time.monotonic()
                served.recognizer = self.loader(served.path)
                log.info("loaded model %s from %s in %.1f s", name, served.path, time.monotonic() - start)
            return served.recognizer

    def load_all(self) -> None:
        for name in self.models:
            self.load(name)

    def acquire(self, name: str) -> Recognizer:
        """The loaded recognizer, held until :meth:`release` (so it is not unloaded meanwhile)."""
        served = self.served(name)
        with self._guard:
            served.in_use += 1
        try:
            recognizer = self.load(name)
        except BaseException:
            self.release(name)
            raise
        return recognizer

    def acquire_loaded(self, name: str) -> Recognizer | None:
        """As :meth:`acquire` when ``name`` is in memory (no PyTorch call: safe on the event loop); else None."""
        served = self.served(name)
        with self._guard:
            if served.recognizer is None:
                return None
            served.in_use += 1
            return served.recognizer

    def release(self, name: str) -> None:
        served = self.models[name]
        with self._guard:
            served.in_use -= 1
            served.last_used = time.monotonic()

    def loaded(self) -> list[str]:
        return [m.name for m in self.models.values() if m.recognizer is not None]

    def unload_idle(self, now: float | None = None) -> list[str]:
        """Unload every model idle for longer than the ttl; returns their names."""
        if self.ttl is None:
            return []
        now = time.monotonic() if now is None else now
        gone = []
        for served in self.models.values():
            with self._guard:
                if served.recognizer is None or served.in_use or now - served.last_used < self.ttl:
                    continue
                with served.lock:
                    served.recognizer = None
            gone.append(served.name)
            log.info("unloaded model %s after %.0f s idle", served.name, now - served.last_used)
        return gone

    def describe(self, name: str, created: int) -> dict:
        """OpenAI's model object, plus what the model offers (when it is loaded; else ``loaded: false``)."""
        served = self.served(name)
        out = {"id": name, "object": "model", "created": created, "owned_by": "asrforge", "loaded": False}
        r = served.recognizer
        if r is not None:
            out.update(loaded=True, languages=list(r.languages), tasks=list(r.tasks), word_timestamps=r.word_timestamps)
        return out
