"""A folder ``asrforge export --format onnx`` wrote, as a :class:`~asrforge.inference.recognizer.Recognizer`.

Transcription is the torch-free runtime's own (:class:`asrforge_runtime.recognizer.OnnxRecognizer`: its numpy
front end, onnxruntime, the shared searches); this adds what the protocol asks beyond it: scoring a manifest with
the training recipe's text normalization, and progress bars.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from asrforge.data.dataset import BadItem
from asrforge.data.manifest import load_utterance
from asrforge.errors import AsrforgeError
from asrforge.inference.evaluate import RECORDING_S, Evaluation, read_scored_manifest, scoring_for
from asrforge.metrics import ErrorReport
from asrforge.progress import progress_bar
from asrforge.text import Normalizer, TextConfig
from asrforge_runtime.audio import SAMPLE_RATE
from asrforge_runtime.pieces import BATCH_SECONDS
from asrforge_runtime.recognizer import OnnxRecognizer
from asrforge_runtime.result import Result


class ExportedModel(OnnxRecognizer):
    """An exported CTC or transducer model: transcribe, transcribe_batch, evaluate, check_options."""

    def check_options(self, **options) -> None:
        options.pop("progress", None)
        super().check_options(**options)

    def transcribe_batch(self, audio: list, **options) -> list[Result]:
        """As :meth:`OnnxRecognizer.transcribe_batch`; ``progress=True`` shows a bar of decoded pieces."""
        progress = bool(options.pop("progress", False))
        with progress_bar(desc="decoding", unit="segment", disable=not progress, leave=False) as bar:
            return super().transcribe_batch(audio, on_batch=bar.update, **options)

    def evaluate(self, manifest: str | Path, progress: bool = True, **options) -> Evaluation:
        """WER/CER on a manifest, references normalized as the training recipe's ``text`` section says. Entries up
        to ``RECORDING_S`` are decoded whole, longer ones cut as ``transcribe`` cuts them; unreadable ones are
        skipped and reported."""
        normalizer, scoring = scoring_for(options.pop("normalizer", None))
        config, _, max_segment_s = self._options(options)
        utts, bad = read_scored_manifest(manifest)
        normalize = scoring or Normalizer(TextConfig(**self.info.get("text", {})))
        hypothesis = scoring or (lambda text: text)        # the model writes its recipe's normalized text
        report, audio_seconds, long_form = ErrorReport(), 0.0, 0
        bar = progress_bar(total=len(utts), desc="decoding", unit="utt", disable=not progress, leave=False)
        start = time.perf_counter()
        pending: list[tuple] = []       # (utterance, wave) up to BATCH_SECONDS of audio

        def flush() -> None:
            nonlocal audio_seconds
            if not pending:
                return
            results = self.transcribe_waves([w for _, w in pending], config, RECORDING_S, word_timestamps=False)
            for (u, wave), result in zip(pending, results):
                report.add(u.id, normalize(u.text), hypothesis(result.text), u.speaker, (u.text, result.text))
                audio_seconds += wave.size / SAMPLE_RATE
            bar.update(len(pending))
            pending.clear()

        for u in utts:
            try:
                wave = load_utterance(u)
            except AsrforgeError as e:
                bad.append(BadItem(u.id or u.audio_filepath, str(e)))
                bar.update(1)
                continue
            if wave.size > RECORDING_S * SAMPLE_RATE:
                long_form += 1
                text = self.transcribe_waves([wave], config, max_segment_s, word_timestamps=False)[0].text
                report.add(u.id, normalize(u.text), hypothesis(text), u.speaker, (u.text, text))
                audio_seconds += wave.size / SAMPLE_RATE
                bar.update(1)
                continue
            pending.append((u, np.asarray(wave, dtype=np.float32)))
            if sum(w.size for _, w in pending) > BATCH_SECONDS * SAMPLE_RATE:
                flush()
        flush()
        bar.close()
        ev = Evaluation(report, audio_seconds, time.perf_counter() - start, bad, long_form=long_form,
                        normalizer=normalizer)
        ev.describe_search(self.search_description(config), config, self.lm is not None)
        return ev
