"""Decode a dataset and score it: the one evaluation loop, used by ``Recognizer.evaluate`` and by validation."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from torch.utils.data import DataLoader

from asrforge_runtime.audio import SAMPLE_RATE
from asrforge.data.dataset import BadItem, SpeechDataset, collate
from asrforge.data.manifest import Utterance, read_manifest
from asrforge.data.sampler import DurationBatchSampler
from asrforge_runtime.search.config import DecodeConfig
from asrforge.errors import AsrforgeError
from asrforge.metrics import ErrorReport
from asrforge.progress import progress_bar

if TYPE_CHECKING:
    from asrforge.inference.transcriber import Transcriber


# Corpora's own utterances (LibriSpeech's and TED-LIUM's reach about 35 s) are decoded whole, as their evaluation
# protocols do; an entry longer than this is a recording, and is cut at its pauses as `transcribe` cuts it.
RECORDING_S = 60.0


@dataclass
class Evaluation:
    report: ErrorReport
    audio_seconds: float
    decode_seconds: float
    bad: list[BadItem] = field(default_factory=list)
    long_form: int = 0     # entries decoded as their stretches of speech (longer than RECORDING_S)
    search: str = ""       # how it was decoded, for people: "greedy", "beam 8, 2-gram LM weight 0.5 bonus 1", ...
    beam_size: int = 1
    notes: list[str] = field(default_factory=list)   # what a person should know about the run (an LM greedy ignores, ...)
    normalizer: str = "basic"   # what references and hypotheses were normalized with before scoring (asrforge.text.scoring)

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds spent per second of audio (features + network + search)."""
        return self.decode_seconds / max(self.audio_seconds, 1e-9)

    def summary(self) -> dict:
        return {**self.report.summary(), "rtf": self.rtf, "audio_hours": self.audio_seconds / 3600, "skipped": len(self.bad),
                "search": self.search, "beam_size": self.beam_size, "normalizer": self.normalizer}

    def describe_search(self, search: str, config: DecodeConfig, with_lm: bool) -> None:
        """Record how it was decoded (``search``: the recognizer's description of ``config``), and note an n-gram
        LM that a greedy run leaves unused."""
        self.search, self.beam_size = search, config.beam_size
        if with_lm and config.beam_size <= 1:
            self.notes.append("the n-gram LM is used by beam search only; this greedy run ignores it "
                              "(--beam-size 8 to use it, --no-lm to silence this)")

    def require_scored(self, source: str) -> None:
        """Raise unless at least one utterance was scored: a WER over nothing is not 0 %."""
        if self.report.summary()["utts"]:
            return
        first = f" The first: {self.bad[0].id}: {self.bad[0].reason}." if self.bad else ""
        raise AsrforgeError(f"none of the {len(self.bad)} items of {source} could be scored, so there is no WER to "
                            f"report.{first} Evaluation needs transcripts; `asrforge transcribe` reads audio without them")


def as_written(text: str) -> str:
    """A dataset's "normalizer" that keeps the manifest's text, for a scoring normalizer to read as written."""
    return text


def scoring_for(asked: str | None, default: str = "basic") -> tuple[str, Callable[[str], str] | None]:
    """The ``normalizer`` an evaluation was asked for (None: ``default``) -> its name and the scoring normalizer (None
    for ``basic``: the model's own normalization, the recipe's ``text`` section for an asrforge model)."""
    from asrforge.text.scoring import scoring_normalizer

    name = asked or default
    return name, (None if name == "basic" else scoring_normalizer(name))


def read_scored_manifest(manifest: str | Path) -> tuple[list[Utterance], list[BadItem]]:
    """A manifest's utterances and its unreadable lines (as bad items); a manifest with none readable is an error."""
    utts, bad_lines = read_manifest(manifest)
    if not utts:
        raise AsrforgeError(f"manifest {manifest} has no readable line ({len(bad_lines)} bad); check its format")
    return utts, [BadItem(s.item, s.reason) for s in bad_lines]


def evaluate_dataset(transcriber: "Transcriber", dataset: SpeechDataset, config: DecodeConfig,
                     max_batch_seconds: float = 200.0, num_workers: int = 0, progress: bool = True,
                     scoring: Callable[[str], str] | None = None) -> Evaluation:
    """Decode every utterance of ``dataset`` (no augmentation) as ``config`` says and compare with its
    normalized transcript (``scoring``: a scoring normalizer applied to the dataset's transcripts and the hypotheses
    alike; the dataset then holds the manifest's own text).

    An entry longer than ``RECORDING_S`` (a recording of minutes with its whole transcript) is decoded as
    `asrforge transcribe` decodes it: cut at its pauses, the pieces' texts joined."""
    durations = dataset.durations
    short = [i for i, d in enumerate(durations) if d <= RECORDING_S]
    long = [i for i, d in enumerate(durations) if d > RECORDING_S]
    sampler = DurationBatchSampler([durations[i] for i in short], max_batch_seconds, shuffle=False)
    batches = [[(short[i], epoch) for i, epoch in batch] for batch in sampler]     # indices into the dataset
    loader = DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=num_workers)
    report, bad = ErrorReport(), []
    score = (lambda ref, hyp: (ref, hyp)) if scoring is None else (lambda ref, hyp: (scoring(ref), scoring(hyp)))
    written = dataset.written_texts()
    audio_seconds = 0.0
    bar = progress_bar(total=len(dataset), desc="decoding", unit="utt", disable=not progress, leave=False)
    start = time.perf_counter()
    for batch in loader:
        bad.extend(batch.bad)
        if len(batch):
            hyps = transcriber.decode_text(batch.feats, batch.feat_lens, config)
            for uid, ref, hyp, speaker in zip(batch.ids, batch.texts, hyps, batch.speakers):
                report.add(uid, *score(ref, hyp), speaker, (written[uid], hyp))
            audio_seconds += float(batch.feat_lens.sum()) * transcriber.recipe.features.hop_ms / 1000
        bar.update(len(batch) + len(batch.bad))
    for i in long:
        u = dataset.utts[i]
        try:
            wave = dataset.wave(i)
        except AsrforgeError as e:
            bad.append(BadItem(u.id or str(i), str(e)))
        else:
            hyp = transcriber.transcribe_waves([wave], config, [dataset.speaker_stats.get(u.speaker)])[0].text
            report.add(u.id or str(i), *score(dataset.texts[i], hyp), u.speaker, (u.text, hyp))
            audio_seconds += wave.size / SAMPLE_RATE
        bar.update(1)
    decode_seconds = time.perf_counter() - start
    bar.close()
    return Evaluation(report, audio_seconds, decode_seconds, bad, long_form=len(long))
