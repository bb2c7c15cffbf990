"""Recordings that augmentation draws from (noise, room impulse responses), listed by a manifest.

Collections are large (RIRS_NOISES has 60,000 simulated impulse responses; MUSAN's music and noise are minutes
long per file), so a pool checks every file's header once, up front, and reads samples only when one is drawn.
Short recordings are kept in a per-process cache of bounded size (in bytes, not files: one four-minute song
weighs as much as a thousand impulse responses); from a long one only the stretch a draw needs is read. A file
that still fails to decode is reported once and the next readable one is used in its place, so a run neither
stops nor changes its random choices elsewhere.
"""

from __future__ import annotations

from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Callable

import numpy as np
import torch

from asrforge_runtime.audio import SAMPLE_RATE, audio_info, load_audio
from asrforge.data.manifest import Utterance, load_utterance, read_manifest
from asrforge.errors import AudioError, ConfigError
from asrforge.parallel import ordered_map
from asrforge.progress import log

CACHE_BYTES = 256 << 20       # per process (each DataLoader worker has its own)
LONG_S = 30.0                 # a recording longer than this is read a stretch at a time, never whole


class RecordingPool:
    """``pool[i] -> (N,)`` float32 at 16 kHz, for ``i < len(pool)``; ``pool.stretch(i, n, gen)`` -> ``(n,)``."""

    def __init__(self, manifest: str, key: str, what: str, channel: int | None = None, cache_bytes: int = CACHE_BYTES):
        """``key`` names the recipe option (``augment.<key>``) and ``what`` the recordings, for messages;
        ``channel``: keep that channel of multichannel files instead of averaging them."""
        utts, bad_lines = read_manifest(manifest)
        self.key, self.cache_bytes = key, cache_bytes
        self.items: list[Utterance] = []
        self.seconds: list[float] = []
        bad = [f"{s.item}: {s.reason}" for s in bad_lines]
        with ThreadPoolExecutor(8) as pool:      # header reads wait on the disk; threads overlap them
            for u, header in zip(utts, ordered_map(pool, _header, utts)):
                if isinstance(header, AudioError):
                    bad.append(str(header))
                    continue
                sr, frames = header
                # a channel the manifest names wins over the pool's default
                self.items.append(u if u.channel is not None or channel is None else replace(u, channel=channel))
                self.seconds.append(min(u.duration, frames / sr - u.offset))    # what load_utterance reads
        if not self.items:
            first = f"; the first problem: {bad[0]}" if bad else ""
            raise ConfigError(f"augment.{key} {manifest} lists no readable {what} file{first}")
        if bad:
            log.warning(f"augment.{key}: skipped {len(bad)} of the {len(utts) + len(bad_lines)} items of {manifest}, "
                        f"using the other {len(self.items)}; the first: {bad[0]}")
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._undecodable: set[int] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> np.ndarray:
        """The whole recording ``index`` (or the next readable one)."""
        return self._first_readable(index, self._whole)

    def stretch(self, index: int, samples: int, gen: torch.Generator) -> np.ndarray:
        """``samples`` samples from a random point of recording ``index`` (or the next readable one), the
        recording repeated if it is shorter."""
        return self._first_readable(index, lambda i: self._stretch_of(i, samples, gen))

    def _first_readable(self, index: int, read: Callable[[int], np.ndarray]) -> np.ndarray:
        for step in range(len(self.items)):
            i = (index + step) % len(self.items)
            if i in self._undecodable:
                continue
            try:
                return read(i)
            except AudioError as e:
                self._undecodable.add(i)
                self._forget(i)
                log.warning(f"augment.{self.key}: {e}; drawing the next recording instead")
        raise AudioError(f"augment.{self.key}: none of its {len(self.items)} recordings decodes any more")

    def _whole(self, i: int) -> np.ndarray:
        wave = self._cache.get(i)
        if wave is not None:
            self._cache.move_to_end(i)
            return wave
        wave = load_utterance(self.items[i])
        if wave.nbytes <= self.cache_bytes:
            self._cache[i] = wave
            self._cached_bytes += wave.nbytes
            while self._cached_bytes > self.cache_bytes:
                self._cached_bytes -= self._cache.popitem(last=False)[1].nbytes
        return wave

    def _forget(self, i: int) -> None:
        if i in self._cache:
            self._cached_bytes -= self._cache.pop(i).nbytes

    def _stretch_of(self, i: int, samples: int, gen: torch.Generator) -> np.ndarray:
        available = int(self.seconds[i] * SAMPLE_RATE)
        if self.seconds[i] <= LONG_S or available <= samples:
            wave = self._whole(i)
            if wave.size < samples:
                wave = np.tile(wave, -(-samples // wave.size))
            start = int(torch.randint(0, wave.size - samples + 1, (), generator=gen))
            return wave[start : start + samples]
        start = int(torch.randint(0, available - samples + 1, (), generator=gen))
        u = self.items[i]
        wave = load_audio(u.audio_filepath, offset=u.offset + start / SAMPLE_RATE, duration=samples / SAMPLE_RATE,
                          channel=u.channel)
        # the header's length and resampling may be a sample or two off
        return np.pad(wave, (0, max(0, samples - wave.size)))[:samples]

    def __getstate__(self) -> dict:
        # DataLoader workers started by "spawn" receive a copy: send the list, not the cached samples
        return {**self.__dict__, "_cache": OrderedDict(), "_cached_bytes": 0}


def _header(u: Utterance) -> tuple[int, int] | AudioError:
    try:
        return audio_info(u.audio_filepath)
    except AudioError as e:
        return e
