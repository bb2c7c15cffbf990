"""Manifest + feature extractor + tokenizer -> training items, and the batch collator.

An item that cannot be used (unreadable audio, empty or out-of-vocabulary transcript) becomes a
:class:`BadItem` instead of an exception, so one broken file never stops an epoch: the collator
drops it and the trainer counts it and names it in its summary.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from asrforge.audio.augment import WaveAugment
from asrforge.audio.io import load_audio
from asrforge.data.manifest import Utterance
from asrforge.errors import AsrforgeError
from asrforge.features import FeatureExtractor, SpecAugment
from asrforge.text import Normalizer, Tokenizer


@dataclass
class Item:
    id: str
    feats: torch.Tensor      # (T, D)
    tokens: torch.Tensor     # (L,) int64
    text: str                # normalized reference


@dataclass
class BadItem:
    id: str
    reason: str


@dataclass
class Batch:
    ids: list[str]
    feats: torch.Tensor        # (B, T, D), zero beyond each length
    feat_lens: torch.Tensor    # (B,)
    tokens: torch.Tensor       # (B, L), padded with 0
    token_lens: torch.Tensor   # (B,)
    texts: list[str]
    bad: list[BadItem]

    def __len__(self) -> int:
        return len(self.ids)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A stable per-(seed, epoch, item) seed, independent of worker count and resume point."""
    return zlib.crc32(f"{seed}/{epoch}/{index}".encode())


class SpeechDataset(Dataset):
    """Index with ``(index, epoch)`` pairs (what :class:`DurationBatchSampler` yields)."""

    def __init__(self, utts: list[Utterance], features: FeatureExtractor, tokenizer: Tokenizer | None,
                 normalizer: Normalizer, specaugment: SpecAugment | None = None, seed: int = 0,
                 cache_features: bool = False, wave_augment: WaveAugment | None = None):
        self.utts = utts
        self.features = features
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.specaugment = specaugment
        self.seed = seed
        self.wave_augment = wave_augment
        # With waveform augmentation the features differ every epoch, so the cache keeps waveforms instead.
        self.cache: dict[int, torch.Tensor | np.ndarray] | None = {} if cache_features else None
        self.texts = [normalizer(u.text) for u in utts]

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def durations(self) -> list[float]:
        return [u.duration for u in self.utts]

    def _wave(self, index: int) -> np.ndarray:
        u = self.utts[index]
        return load_audio(u.audio_filepath, offset=u.offset, duration=u.duration if u.offset else None)

    def features_of(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Features ``(T, D)`` of utterance ``index``, waveform-augmented with ``generator`` if augmentation is on.

        The cache holds features, or waveforms when augmentation is on (features then differ every epoch).
        """
        cache = self.cache if self.cache is not None else {}
        if self.wave_augment is None:
            if index not in cache:
                cache[index] = self.features(self._wave(index))
            return cache[index]
        if index not in cache:
            cache[index] = self._wave(index)
        wave = cache[index] if generator is None else self.wave_augment(cache[index], generator)
        return self.features(wave)

    def __getitem__(self, key: tuple[int, int] | int) -> Item | BadItem:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        u = self.utts[index]
        text = self.texts[index]
        try:
            if not text:
                raise AsrforgeError("transcript is empty after normalization; fix the text or drop the line")
            tokens = torch.tensor(self.tokenizer.encode(text), dtype=torch.long) if self.tokenizer else torch.zeros(0, dtype=torch.long)
            gen = torch.Generator().manual_seed(item_seed(self.seed, epoch, index))
            feats = self.features_of(index, gen)
        except AsrforgeError as e:
            return BadItem(u.id or u.audio_filepath, str(e))
        if self.specaugment is not None:
            feats = self.specaugment(feats, gen)
        return Item(u.id or str(index), feats, tokens, text)


def collate(items: list[Item | BadItem]) -> Batch:
    good = [it for it in items if isinstance(it, Item)]
    bad = [it for it in items if isinstance(it, BadItem)]
    B = len(good)
    T = max((it.feats.shape[0] for it in good), default=0)
    L = max((it.tokens.shape[0] for it in good), default=0)
    D = good[0].feats.shape[1] if good else 0
    feats = torch.zeros(B, T, D)
    tokens = torch.zeros(B, L, dtype=torch.long)
    for i, it in enumerate(good):
        feats[i, : it.feats.shape[0]] = it.feats
        tokens[i, : it.tokens.shape[0]] = it.tokens
    return Batch(
        ids=[it.id for it in good], feats=feats,
        feat_lens=torch.tensor([it.feats.shape[0] for it in good], dtype=torch.long),
        tokens=tokens, token_lens=torch.tensor([it.tokens.shape[0] for it in good], dtype=torch.long),
        texts=[it.text for it in good], bad=bad,
    )
