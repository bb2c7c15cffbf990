"""Streaming recognition with asrforge's own streaming models (``model.streaming: true``): truly incremental.

The same shape as :class:`~asrforge.inference.streaming.StreamingRecognizer`, sherpa-onnx's::

    engine = NativeStreamingRecognizer(load_model("exp/rnnt_streaming"))     # or its export: load_model("exp/rnnt-onnx")
    stream = engine.create_stream()
    stream.accept_waveform(samples, sample_rate)
    engine.decode_streams([s1, s2, ...])        # every stream with a chunk due, in one encoder call
    for event in stream.pop_events(): ...

How: features are computed as the audio arrives (the recognizer's ``online_features()``). Every ``chunk_ms`` of
features, each stream's chunk goes through the encoder (its ``stream_encoder``), which carries its state (the front
end's pending frames, the LSTM's state, the attention caches), and the search goes on from where it stopped (CTC
greedy or prefix beam search, transducer greedy or modified beam search: :mod:`asrforge_runtime.search.incremental`,
over its ``search_network``). Chunks of every stream due are encoded together, and transducer searches share one
joint-network call per frame. The result over an utterance is exactly the offline result of the same model on that
audio, whatever the chunk size. The recognizer is an exported one (:class:`~asrforge_runtime.recognizer.OnnxRecognizer`: its
step graph, numpy front end) or, in asrforge, a PyTorch model (``asrforge.inference.transcriber.Transcriber``); both
give the same events.

Endpoints follow sherpa-onnx's rules on what was decoded (no VAD): the trailing silence is the time since the last
frame on which the best hypothesis emitted a token (a CTC model: whose best symbol was not blank). At an endpoint
the utterance's best hypothesis becomes a ``final`` with word times, and a new utterance starts from the next
frame, with a new search and a new encoder state; an utterance that decoded to nothing is dropped after ``silence_without_text_s``. ``partial`` events carry
the best hypothesis whenever its text changes. A stream holds one utterance's log-probabilities at most
(``max_utterance_s``) and a chunk of features: its memory is bounded however long it runs. So each final is the
offline result of the audio from its utterance's first frame.
"""

from __future__ import annotations

import numpy as np

from asrforge_runtime.errors import ConfigError
from asrforge_runtime.result import Word
from asrforge_runtime.search.config import DECODE_KEYS
from asrforge_runtime.search.incremental import advance, start_search
from asrforge_runtime.stream_events import AudioStream, EndpointRules, StreamEvent

CHUNK_MS = 320                  # features per encoder call (sherpa-onnx's streaming transducers: 320 ms)
# the models decode their own silence, so an endpoint can come sooner than with a VAD's probabilities
NATIVE_RULES = EndpointRules(silence_after_text_s=0.6, silence_without_text_s=2.4, max_utterance_s=20.0)


class NativeStream(AudioStream):
    """One audio source's state in a :class:`NativeStreamingRecognizer`."""

    def __init__(self, options: dict, features, config, search, dim: int):
        super().__init__(options)
        self.config = config                    # the DecodeConfig this stream decodes with
        self.features = features                # frames as audio arrives: accept(samples), finish()
        self.dim = dim
        self.pending: list[np.ndarray] = []     # feature frames not yet encoded
        self.pending_frames = 0
        self.encoder = None                     # the current utterance's encoder state (made with its first frames)
        self.search = search                    # the current utterance's search
        self.encoded = 0                        # feature frames given to the encoder so far
        self.utterance_start = 0.0              # seconds: where the current utterance's first feature frame lies
        self.partial_text = ""

    def _append(self, samples: np.ndarray) -> None:
        self._queue(self.features.accept(samples))

    def _queue(self, frames: np.ndarray) -> None:
        if frames.shape[0]:
            self.pending.append(frames)
            self.pending_frames += frames.shape[0]

    def _take(self, n: int) -> np.ndarray:
        frames = np.concatenate(self.pending) if self.pending else np.zeros((0, self.dim), np.float32)
        chunk, rest = frames[:n], frames[n:]
        self.pending, self.pending_frames = ([rest] if rest.shape[0] else []), rest.shape[0]
        return chunk


class NativeStreamingRecognizer:
    """Streams over a recognizer whose model was trained to stream (see the module docstring)."""

    def __init__(self, recognizer, rules: EndpointRules = NATIVE_RULES, chunk_ms: float = CHUNK_MS, **options):
        if not getattr(recognizer, "streaming", False):
            raise ConfigError(f"{recognizer.source}: this model was not trained to stream (model.streaming); "
                              "train a streaming recipe (demo_rnnt_streaming, demo_ctc_streaming)")
        rules.check()
        hop = recognizer.features.config.hop_ms
        if not chunk_ms >= hop:
            raise ConfigError(f"chunk must be at least one feature frame ({hop} ms); got {chunk_ms} ms")
        self.recognizer = recognizer
        self.hop_s = hop / 1000
        self.rules = rules
        self.chunk = int(round(chunk_ms / hop))         # feature frames per encoder call
        self.options = dict(options)
        self._config(self.options)

    def _config(self, options: dict):
        self.recognizer.check_options(**options)
        return self.recognizer.decode_config(options.get("beam_size"),
                                             **{k: v for k, v in options.items() if k in DECODE_KEYS - {"beam_size"}})

    def create_stream(self, **options) -> NativeStream:
        """A new stream; ``options`` (``beam_size``, decode knobs) add to the engine's for this stream."""
        merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        config = self._config(merged)
        return NativeStream(merged, self.recognizer.online_features(), config, self._search(config),
                            self.recognizer.features.config.dim)

    def _search(self, config):
        r = self.recognizer
        return start_search(r.objective, config, r.lm, r.search_network)

    def decode_streams(self, streams: list[NativeStream]) -> None:
        """Every stream through each chunk of features it has (all of it once it is finished), the chunks of all
        streams due encoded in one call; events go to each stream's ``pop_events``."""
        for s in streams:
            if s.finished and not s.flushed and not s.features.finished:
                s._queue(s.features.finish())
        while True:
            due = [s for s in streams if s.pending_frames >= self.chunk or (s.finished and not s.flushed)]
            if not due:
                return
            chunks, finals = [], []
            encoder = self.recognizer.stream_encoder
            for s in due:
                last = s.finished and s.pending_frames <= self.chunk
                chunks.append(s._take(self.chunk))
                s.encoded += chunks[-1].shape[0]
                finals.append(last)
                if s.encoder is None:
                    s.encoder = encoder.initial_stream(chunks[-1])
            outputs = encoder.forward_chunks(chunks, [s.encoder for s in due], finals)
            advance(self.recognizer.objective, self.recognizer.search_network, [s.search for s in due], outputs)
            for s, last in zip(due, finals):
                self._after_chunk(s, last)

    # ---- one stream ---------------------------------------------------------------------------------------------
    def _after_chunk(self, s: NativeStream, last: bool) -> None:
        step = self.recognizer.frame_seconds
        search = s.search
        best = search.best()
        silence = (search.frames - (search.last_emission or 0)) * step
        utterance = search.frames * step
        if best.tokens:
            ending = last or silence >= self.rules.silence_after_text_s or utterance >= self.rules.max_utterance_s
        else:
            ending = last or silence >= self.rules.silence_without_text_s
        if ending:
            s.flushed = last
            self._end_utterance(s)
            return
        text = self.recognizer.text(best.tokens)
        if text != s.partial_text:
            s.partial_text = text
            edge = s.utterance_start + (search.last_emission or 0) * step
            first = best.frames[0] if best.frames else 0
            s._emit(StreamEvent("partial", text, round(s.utterance_start + first * step, 3), round(edge, 3)))

    def _end_utterance(self, s: NativeStream) -> None:
        """The utterance's best hypothesis as a final (when it has text), then a new utterance from the next
        feature frame: a new search and a new encoder state, as each utterance was decoded alone in training (an
        encoder carrying the last utterance's state into the next began it with a spurious word: 32 % WER against
        5.5 % on the demo's held-out voices). The few frames the front end still held are silence by then."""
        search = s.search
        hyp = search.result()
        r = self.recognizer
        text = r.text(hyp.tokens)
        if text:
            offset = s.utterance_start
            if hasattr(search, "log_probs"):
                found = r.word_times(search.log_probs, search.frames, list(hyp.tokens))
            else:
                found = r.words_from_frames(hyp.tokens, hyp.frames or [])
            end = s.seconds
            words = [Word(w.word, round(min(w.start + offset, end), 3), round(min(w.end + offset, end), 3))
                     for w in found]
            start = words[0].start if words else round(offset, 3)
            stop = words[-1].end if words else round(min(offset + search.frames * r.frame_seconds, end), 3)
            s._emit(StreamEvent("final", text, start, stop, words, s.segments))
            s.segments += 1
        s.utterance_start = s.encoded * self.hop_s
        s.encoder = None
        s.search = self._search(s.config)
        s.partial_text = ""
