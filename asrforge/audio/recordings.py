"""Recordings that augmentation draws from (noise, room impulse responses), listed by a manifest.

Collections are large (RIRS_NOISES has 60,000 simulated impulse responses: gigabytes as float32), so a pool
checks every file's header once, up front, and reads samples only when one is drawn, keeping the most recently
used in a small per-process cache. A file that still fails to decode is reported once and the next readable
one is used in its place, so a run neither stops nor changes its random choices elsewhere.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from asrforge.audio.io import audio_info
from asrforge.data.manifest import Utterance, load_utterance, read_manifest
from asrforge.errors import AudioError, ConfigError


class RecordingPool:
    """``pool[i] -> (N,)`` float32 at 16 kHz, for ``i < len(pool)``."""

    def __init__(self, manifest: str, key: str, what: str, channel: int | None = None, cache_size: int = 256):
        """``key`` names the recipe option (``augment.<key>``) and ``what`` the recordings, for messages;
        ``channel``: keep that channel of multichannel files instead of averaging them."""
        utts, bad_lines = read_manifest(manifest)
        self.key, self.cache_size = key, cache_size
        self.items: list[Utterance] = []
        bad = [f"{s.item}: {s.reason}" for s in bad_lines]
        for u in utts:
            try:
                audio_info(u.audio_filepath)
            except AudioError as e:
                bad.append(str(e))
                continue
            # a channel the manifest names wins over the pool's default
            self.items.append(u if u.channel is not None or channel is None else replace(u, channel=channel))
        if not self.items:
            first = f"; the first problem: {bad[0]}" if bad else ""
            raise ConfigError(f"augment.{key} {manifest} lists no readable {what} file{first}")
        if bad:
            print(f"asrforge: augment.{key}: skipped {len(bad)} of the {len(utts) + len(bad_lines)} items of {manifest}, "
                  f"using the other {len(self.items)}; the first: {bad[0]}", file=sys.stderr)
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._undecodable: set[int] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> np.ndarray:
        for step in range(len(self.items)):
            i = (index + step) % len(self.items)
            if i in self._undecodable:
                continue
            wave = self._cache.get(i)
            if wave is None:
                try:
                    wave = load_utterance(self.items[i])
                except AudioError as e:
                    self._undecodable.add(i)
                    print(f"asrforge: augment.{self.key}: {e}; drawing the next recording instead", file=sys.stderr)
                    continue
                self._cache[i] = wave
                if len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(i)
            return wave
        raise AudioError(f"augment.{self.key}: none of its {len(self.items)} recordings decodes any more")

    def __getstate__(self) -> dict:
        # DataLoader workers started by "spawn" receive a copy: send the list, not the cached samples
        return {**self.__dict__, "_cache": OrderedDict()}
