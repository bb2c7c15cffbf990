"""Score a Whisper model on a manifest: `asrforge evaluate --model WHISPER`, and fine-tuning's dev WER.

Utterances (each at most 30 s) are decoded in batches, one window each, without timestamps, and
hypotheses and references are compared after the same text normalization asrforge uses everywhere.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import torch

from asrforge.data.dataset import BadItem, SpeechDataset, collate
from asrforge.data.manifest import Utterance
from asrforge.decoding.whisper import WhisperDecodeOptions, decode
from asrforge.features.whisper import WhisperFeatures, pad_to_window
from asrforge.inference.evaluate import Evaluation, as_written, read_scored_manifest
from asrforge.metrics import ErrorReport
from asrforge.models.whisper import Whisper
from asrforge.progress import progress_bar
from asrforge.text import Normalizer, TextConfig
from asrforge.text.whisper import WhisperTokenizer

MAX_SECONDS = 30.0


def whisper_dataset(utts: list[Utterance], model: Whisper, text: Normalizer | None = None,
                    cache_features: bool = False) -> SpeechDataset:
    """Utterances -> items holding Whisper log-mel of each clip (no tokens: for scoring)."""
    return SpeechDataset(utts, WhisperFeatures(model.dims.n_mels), None, text or Normalizer(TextConfig()),
                         cache_features=cache_features)


@torch.inference_mode()
def evaluate_whisper(model: Whisper, tokenizer: WhisperTokenizer, dataset: SpeechDataset, language: str | None,
                     task: str = "transcribe", beam_size: int = 1, batch_size: int = 16, progress: bool = True,
                     hypotheses: Path | None = None, desc: str = "decoding",
                     scoring: Callable[[str], str] | None = None) -> Evaluation:
    """Decode every utterance of ``dataset`` and score it in its manifest ``lang``, else ``language``
    (``None``: detected per utterance by multilingual models). Each utterance's id, reference and raw hypothesis go to ``hypotheses`` (JSONL)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    dtype = model.encoder.conv1.weight.dtype
    options = WhisperDecodeOptions(task=task, language=language, beam_size=beam_size if beam_size > 1 else None,
                                   without_timestamps=True)
    score = scoring or Normalizer(TextConfig())
    report, bad, lines, audio_seconds = ErrorReport(), [], [], 0.0
    written = dataset.written_texts()
    start = time.perf_counter()
    for first in progress_bar(range(0, len(dataset), batch_size), desc=desc, unit="batch", disable=not progress,
                              dynamic_ncols=True, leave=False):
        batch = collate([dataset[i] for i in range(first, min(first + batch_size, len(dataset)))])
        bad.extend(batch.bad)
        too_long = [i for i, n in enumerate(batch.feat_lens.tolist()) if n > 100 * MAX_SECONDS]
        if too_long:
            raise ValueError("evaluate_whisper takes utterances of at most 30 s; filter the dataset first")
        if not len(batch):
            continue
        features = model.encoder(pad_to_window(batch.feats, batch.feat_lens).to(device, dtype))
        # a manifest line's `lang` is that utterance's language; the others take ``language``
        results = decode(model, tokenizer, features, options,
                         languages=[lang if lang is not None else language for lang in batch.languages])
        for uid, ref, result, speaker in zip(batch.ids, batch.texts, results, batch.speakers):
            report.add(uid, score(ref), score(result.text), speaker, (written[uid], result.text))
            lines.append(json.dumps({"id": uid, "ref": ref, "hyp": result.text}, ensure_ascii=False))
        audio_seconds += float(batch.feat_lens.sum()) / 100
    if hypotheses is not None:
        hypotheses.write_text("\n".join(lines) + "\n")
    model.train(was_training)
    return Evaluation(report, audio_seconds, time.perf_counter() - start, bad)


def evaluate_whisper_manifest(transcriber, manifest: str | Path, beam_size: int = 1, language: str | None = None,
                              task: str = "transcribe", progress: bool = True,
                              scoring: Callable[[str], str] | None = None) -> Evaluation:
    """Score a :class:`~asrforge.inference.whisper.WhisperTranscriber` on a manifest: each utterance is one
    window, so longer ones are skipped and reported. ``scoring``: the normalizer references (as the manifest writes
    them) and hypotheses are scored after (None: asrforge's own)."""
    utts, bad = read_scored_manifest(manifest)
    long = [BadItem(u.id, f"longer than {MAX_SECONDS:.0f} s; Whisper is scored one window per utterance: cut it "
                          "into segments (offset/duration) or use `asrforge transcribe`") for u in utts if u.duration > MAX_SECONDS]
    utts = [u for u in utts if u.duration <= MAX_SECONDS]
    model = transcriber.model
    dataset = whisper_dataset(utts, model, None if scoring is None else as_written)
    ev = evaluate_whisper(model, transcriber.tokenizer, dataset, language, task, beam_size, progress=progress,
                          scoring=scoring)
    ev.bad = bad + long + ev.bad
    ev.search, ev.beam_size = ("greedy" if beam_size <= 1 else f"beam {beam_size}"), beam_size
    return ev
