"""Manifest + feature extractor + tokenizer -> training items, and the batch collator.

An item that cannot be used (unreadable audio, empty or out-of-vocabulary transcript) becomes a
:class:`BadItem` instead of an exception, so one broken file never stops an epoch: the collator
drops it and the trainer counts it and names it in its summary.
"""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from asrforge.data.augment import SpecAugment, WaveAugment
from asrforge.data.manifest import Utterance, load_utterance
from asrforge.data.packed import PackedList
from asrforge.errors import AsrforgeError
from asrforge.features import FeatureExtractor
from asrforge.features.cmvn import CMVNAccumulator, CMVNStats
from asrforge.progress import progress_bar
from asrforge.text import Normalizer, Tokenizer


@dataclass
class Item:
    id: str
    feats: torch.Tensor      # (T, D)
    tokens: torch.Tensor     # (L,) int64
    text: str                # normalized reference
    speaker: str | None = None
    language: str | None = None   # the manifest's `lang`


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
    speakers: list[str | None] = field(default_factory=list)   # per utterance, None where the manifest has none
    languages: list[str | None] = field(default_factory=list)  # per utterance, the manifest's `lang` or None

    def __len__(self) -> int:
        return len(self.ids)


def item_seed(seed: int, epoch: int, index: int | str) -> int:
    """A stable per-(seed, epoch, item) seed, independent of worker count and resume point."""
    return zlib.crc32(f"{seed}/{epoch}/{index}".encode())


class ItemMaker:
    """Utterance (waveform or cached features, transcript) -> training :class:`Item`: augmentation, features,
    tokens, SpecAugment. Shared by manifest datasets and shard streams."""

    def __init__(self, features: FeatureExtractor, tokenizer: Tokenizer | None, normalizer: Normalizer,
                 specaugment: SpecAugment | None = None, wave_augment: WaveAugment | None = None, seed: int = 0):
        self.features = features
        self.tokenizer = tokenizer
        self.normalizer = normalizer
        self.specaugment = specaugment
        self.wave_augment = wave_augment
        self.seed = seed

    def generator(self, epoch: int, key: int | str) -> torch.Generator:
        return torch.Generator().manual_seed(item_seed(self.seed, epoch, key))

    def tokens(self, text: str, language: str | None = None, audio: Callable[[], np.ndarray] | None = None,
               gen: torch.Generator | None = None) -> torch.Tensor:
        """Normalized text -> ids; raises AsrforgeError for empty or out-of-vocabulary text.

        A tokenizer with ``encode_utterance(text, language, audio, gen)`` makes targets from more than the text
        (Whisper's: the language token, and timestamps where the speech ends in ``audio()``, the waveform as the
        model hears it, augmentation included); ``gen`` is the item's own generator, so its draws repeat on resume.
        """
        if not text:
            raise AsrforgeError("transcript is empty after normalization; fix the text or drop the line")
        if self.tokenizer is None:
            return torch.zeros(0, dtype=torch.long)
        encode_utterance = getattr(self.tokenizer, "encode_utterance", None)
        ids = (encode_utterance(text, language, audio, gen) if encode_utterance is not None
               else self.tokenizer.encode(text))
        return torch.tensor(ids, dtype=torch.long)

    def heard(self, wave: np.ndarray, gen: torch.Generator | None) -> tuple[np.ndarray, float]:
        """The waveform as training hears it (augmented when augmentation is on and ``gen`` given) and the
        VTLP warp factor drawn for it."""
        if self.wave_augment is None or gen is None:
            return wave, 1.0
        wave = self.wave_augment(wave, gen)
        return wave, self.wave_augment.warp_factor(gen)

    def wave_features(self, wave: np.ndarray, gen: torch.Generator | None,
                      speaker_stats: CMVNStats | None = None) -> torch.Tensor:
        heard, warp = self.heard(wave, gen)
        return self.featurize(heard, speaker_stats, warp)

    def featurize(self, wave: np.ndarray, speaker_stats: CMVNStats | None = None, warp: float = 1.0) -> torch.Tensor:
        # only FeatureExtractor takes statistics and warps; other front ends (Whisper's log-mel) take the wave alone
        if speaker_stats is None and warp == 1.0:
            return self.features(wave)
        return self.features(wave, speaker_stats, warp)

    def finish(self, uid: str, feats: torch.Tensor, tokens: torch.Tensor, text: str, gen: torch.Generator,
               speaker: str | None = None, language: str | None = None) -> Item:
        if self.specaugment is not None:
            feats = self.specaugment(feats, gen)
        return Item(uid, feats, tokens, text, speaker, language)

    def __call__(self, uid: str, wave: np.ndarray, raw_text: str, epoch: int, speaker: str | None = None,
                 speaker_stats: CMVNStats | None = None, language: str | None = None) -> Item | BadItem:
        """The whole path for one streamed utterance."""
        text = self.normalizer(raw_text)
        gen = self.generator(epoch, uid)
        try:
            heard, warp = self.heard(wave, gen)
            feats = self.featurize(heard, speaker_stats, warp)
            tokens = self.tokens(text, language, lambda: heard, gen)
        except AsrforgeError as e:
            return BadItem(uid, str(e))
        return self.finish(uid, feats, tokens, text, gen, speaker, language)


class SpeechDataset(Dataset):
    """Index with ``(index, epoch)`` pairs (what :class:`DurationBatchSampler` yields).

    With ``features.cmvn == "speaker"`` the constructor makes one pass over the audio to pool each
    speaker's statistics (un-augmented audio; utterances without a speaker are normalized on their own).
    """

    def __init__(self, utts: list[Utterance], features: FeatureExtractor, tokenizer: Tokenizer | None,
                 normalizer: Normalizer, specaugment: SpecAugment | None = None, seed: int = 0,
                 cache_features: bool = False, wave_augment: WaveAugment | None = None, progress: bool = False,
                 texts: list[str] | None = None):
        if texts is not None and len(texts) != len(utts):
            raise ValueError(f"{len(texts)} normalized texts for {len(utts)} utterances")
        self.utts = PackedList(utts)       # shared by forked loader workers, not copied into each
        self._durations = np.array([u.duration for u in utts], dtype=np.float64)
        self.maker = ItemMaker(features, tokenizer, normalizer, specaugment, wave_augment, seed)
        # With waveform augmentation the features differ every epoch, so the cache keeps waveforms instead.
        self.cache: dict[int, torch.Tensor | np.ndarray] | None = {} if cache_features else None
        # ``texts``: the transcripts already normalized by the caller (the trainer does it once for the tokenizer too)
        self.texts = PackedList(texts if texts is not None else (normalizer(u.text) for u in utts))
        self.speaker_stats: dict[str, CMVNStats] = (self._pool_speaker_stats(progress)
                                                    if isinstance(features, FeatureExtractor)
                                                    and features.config.cmvn == "speaker" else {})

    def _pool_speaker_stats(self, progress: bool) -> dict[str, CMVNStats]:
        """speaker -> statistics over all of that speaker's readable audio."""
        acc: dict[str, CMVNAccumulator] = {}
        keep_waves = self.cache is not None and self.maker.wave_augment is not None and not self._cuts_pauses
        for index, u in enumerate(progress_bar(self.utts, desc="speaker CMVN statistics", unit="utt",
                                               disable=not progress, leave=False)):
            if u.speaker is None:
                continue
            try:
                wave = self.wave(index)
            except AsrforgeError:
                continue   # reported as a bad item when the utterance is used
            if keep_waves:
                self.cache[index] = wave
            acc.setdefault(u.speaker, CMVNAccumulator()).add(self.maker.features.statistics_frames(wave))
        return {speaker: a.stats() for speaker, a in acc.items()}

    def with_tokenizer(self, tokenizer: Tokenizer | None) -> "SpeechDataset":
        """The same utterances, features and cache (shared, not copied), yielding ``tokenizer``'s ids."""
        view = copy.copy(self)
        m = self.maker
        view.maker = ItemMaker(m.features, tokenizer, m.normalizer, m.specaugment, m.wave_augment, m.seed)
        return view

    def __len__(self) -> int:
        return len(self.utts)

    def written_texts(self) -> dict[str, str]:
        """Each item's id -> its transcript as the manifest writes it (before any normalization)."""
        return {u.id or str(index): u.text for index, u in enumerate(self.utts)}

    @property
    def durations(self) -> list[float]:
        return self._durations.tolist()

    def wave(self, index: int) -> np.ndarray:
        """The utterance's audio, un-augmented: ``(N,)`` float32 at 16 kHz."""
        u = self.utts[index]
        return load_utterance(u)

    def features_of(self, index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Features ``(T, D)`` of utterance ``index``, waveform-augmented with ``generator`` if augmentation is on.

        The cache holds features, or waveforms when augmentation is on (features then differ every epoch).
        """
        return self._features_and_audio(index, generator)[0]

    def _features_and_audio(self, index: int, generator: torch.Generator | None
                            ) -> tuple[torch.Tensor, Callable[[], np.ndarray] | None]:
        """:meth:`features_of`, and what gives the waveform those features were computed from (read again
        only if asked: most targets need the text alone); None where pauses are cut from cached features."""
        cache = self.cache if self.cache is not None else {}
        stats = self.speaker_stats.get(self.utts[index].speaker)
        if self._cuts_pauses:
            if index not in cache:
                cache[index] = self._with_longest_pauses(index)
            return self._cut_pauses(*cache[index], generator, stats), None
        if self.maker.wave_augment is None:
            if index not in cache:
                cache[index] = self.maker.featurize(self.wave(index), stats)
            return cache[index], lambda: self.wave(index)
        if index not in cache:
            cache[index] = self.wave(index)
        heard, warp = self.maker.heard(cache[index], generator)
        return self.maker.featurize(heard, stats, warp), lambda: heard

    @property
    def _cuts_pauses(self) -> bool:
        """Cached features and pauses as the only augmentation: each utterance's un-normalized features are
        computed once with the longest pauses, and each epoch cuts them to the pauses it draws (recomputing
        features every epoch took half the demo's training time)."""
        augment, features = self.maker.wave_augment, self.maker.features
        return (self.cache is not None and augment is not None and augment.config.pauses_only
                and isinstance(features, FeatureExtractor) and features.config.trim_db is None)

    def _with_longest_pauses(self, index: int) -> tuple[torch.Tensor, int, int]:
        """-> un-normalized features ``(T, D)`` of the utterance with the longest pauses, the frame its speech
        starts on, and how many frames the speech alone has."""
        wave = self.wave(index)
        # one room tone per utterance, drawn from its own seed (not an epoch's)
        tone = torch.Generator().manual_seed(item_seed(self.maker.seed, -1, index))
        feats = self.maker.features.unnormalized(self.maker.wave_augment.with_longest_pauses(wave, tone))
        config = self.maker.features.config
        lead = round(self.maker.wave_augment.config.pad_s[1] * 1000 / config.hop_ms)
        return feats, lead, config.num_frames(len(wave))

    def _cut_pauses(self, feats: torch.Tensor, lead: int, speech: int, generator: torch.Generator | None,
                    stats: CMVNStats | None) -> torch.Tensor:
        before, after = self.maker.wave_augment.pauses(generator) if generator is not None else (0.0, 0.0)
        hop_ms = self.maker.features.config.hop_ms
        start = lead - round(before * 1000 / hop_ms)
        stop = min(feats.shape[0], lead + speech + round(after * 1000 / hop_ms))
        return self.maker.features.normalized(feats[start:stop], stats)

    def __getitem__(self, key: tuple[int, int] | int) -> Item | BadItem:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        u, text = self.utts[index], self.texts[index]
        uid = u.id or str(index)
        gen = self.maker.generator(epoch, index)
        try:
            feats, audio = self._features_and_audio(index, gen)
            tokens = self.maker.tokens(text, u.language, audio, gen)
        except AsrforgeError as e:
            return BadItem(uid, str(e))
        return self.maker.finish(uid, feats, tokens, text, gen, u.speaker, u.language)


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
        texts=[it.text for it in good], bad=bad, speakers=[it.speaker for it in good],
        languages=[it.language for it in good],
    )
