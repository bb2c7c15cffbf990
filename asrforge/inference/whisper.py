"""Long-form transcription with a Whisper checkpoint, the way the reference does it.

The audio is cut into 30-second windows that *seek by the predicted timestamps*: a window ends where
the last complete segment ended, so no word is cut in half. Each window is decoded at temperature 0
and re-decoded at higher temperatures when the result looks wrong (it compresses too well, meaning a
loop, or its mean log-prob is too low), unless the window is judged silent. Text of earlier windows
conditions the next one unless a fallback fired. The result has OpenAI's layout:
``{"text", "segments": [{"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob",
"compression_ratio", "no_speech_prob"}], "language"}``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from asrforge.audio.io import load_audio
from asrforge.decoding.whisper import DecodeResult, WhisperDecodeOptions, decode, detect_language
from asrforge.errors import ConfigError
from asrforge.features.whisper import (FRAME_SECONDS, INPUT_STRIDE, N_FRAMES, N_SAMPLES, SAMPLE_RATE, TIME_PRECISION,
                                      log_mel_spectrogram, pad_or_trim)
from asrforge.inference.whisper_timing import APPEND_PUNCTUATIONS, PREPEND_PUNCTUATIONS, add_word_timestamps
from asrforge.devices import resolve_device
from asrforge.models.whisper import Whisper, load_whisper_checkpoint
from asrforge.nn.linear import as_plain_linears
from asrforge.progress import progress_bar
from asrforge.text.whisper import WhisperTokenizer


# options of asrforge's own models, named when given to a Whisper checkpoint
ASRFORGE_ONLY = {"max_segment_s": " (Whisper reads long audio in 30-second windows of its own)",
                 "speaker_stats": " trained with speaker CMVN"}


@dataclass(frozen=True)
class WhisperTranscribeOptions:
    task: str = "transcribe"
    language: str | None = None                # None or "auto": detect from the first window
    temperature: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    beam_size: int | None = None
    best_of: int | None = None
    patience: float | None = None
    length_penalty: float | None = None
    compression_ratio_threshold: float | None = 2.4
    logprob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    initial_prompt: str | None = None
    suppress_tokens: str = "-1"
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    word_timestamps: bool = False
    batch_size: int | None = None                # VAD-batched mode: decode this many 30-s chunks at once
    prepend_punctuations: str = PREPEND_PUNCTUATIONS   # with word timestamps: marks joined to the next word
    append_punctuations: str = APPEND_PUNCTUATIONS     # ... and to the previous word

    @classmethod
    def from_kwargs(cls, **kwargs) -> "WhisperTranscribeOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            hint = "".join(f"; {name} is for asrforge models{why}" for name, why in ASRFORGE_ONLY.items() if name in unknown)
            raise ConfigError(f"unknown Whisper option(s) {unknown}{hint}; known: {sorted(known)}")
        if isinstance(kwargs.get("temperature"), (int, float)):
            kwargs["temperature"] = (float(kwargs["temperature"]),)
        if kwargs.get("language") in ("auto", ""):
            kwargs["language"] = None
        return cls(**{k: v for k, v in kwargs.items() if v is not None or k == "language"})


class WhisperPipeline:
    """A loaded Whisper checkpoint with its tokenizer: ``transcribe(audio, **options)``."""

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, device: str | torch.device = "cpu",
                 source: str = ""):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.source = source

    @classmethod
    def load(cls, path: str | Path, device: str = "cpu", dtype: str = "float32",
             tokenizer_folder: str | Path | None = None) -> "WhisperPipeline":
        """``dtype``: float32, float16/bfloat16 (GPU), or int8 (dynamic quantization of linear layers, CPU)."""
        resolve_device(device)           # a device this PyTorch cannot use fails before the weights are read
        loaded = load_whisper_checkpoint(path)
        model = loaded.build()
        tokenizer = WhisperTokenizer.from_folder(tokenizer_folder or loaded.folder, model.is_multilingual, model.dims.n_vocab)
        if dtype == "int8":
            if torch.device(device).type != "cpu":
                raise ConfigError("dtype int8 is for the CPU; on a GPU use float16 or bfloat16")
            model = quantize_int8(model)
        elif dtype in ("float16", "bfloat16"):
            model = model.to(getattr(torch, dtype))
        elif dtype != "float32":
            raise ConfigError(f"dtype {dtype!r}: use float32, float16, bfloat16 or int8")
        return cls(model, tokenizer, device, str(path))

    @property
    def dtype(self) -> torch.dtype:
        return self.model.encoder.conv1.weight.dtype

    def mel(self, audio: np.ndarray) -> torch.Tensor:
        """Whole-file log-mel ``(n_mels, frames)``; 30 s of silence are appended as the reference does."""
        return log_mel_spectrogram(audio, self.model.dims.n_mels, padding=N_SAMPLES, device=self.device)

    @torch.inference_mode()
    def encode(self, mel_windows: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, 3000)`` -> encoder output ``(B, 1500, D)``."""
        return self.model.embed_audio(mel_windows.to(self.device, self.dtype))

    def detect_language(self, audio: np.ndarray | str | Path) -> tuple[str, dict[str, float]]:
        wave = _as_wave(audio)
        mel = pad_or_trim(self.mel(wave)[:, :-N_FRAMES])
        codes, probs = detect_language(self.model, self.tokenizer, self.encode(mel[None]))
        return codes[0], probs[0]

    def decode_with_fallback(self, features: torch.Tensor, opts: WhisperTranscribeOptions, language: str | None,
                             prompt: list[int]) -> DecodeResult:
        """Decode one window, retrying at each higher temperature while the result looks like a failure.

        If every temperature fails, keep the likeliest attempt among those that did not loop (as
        faster-whisper does) rather than the last, hottest sample (as the reference does)."""
        attempts = []
        for t in opts.temperature:
            beam = dict(beam_size=opts.beam_size, patience=opts.patience) if t == 0 else dict(best_of=opts.best_of)
            options = WhisperDecodeOptions(
                task=opts.task, language=language, temperature=t, length_penalty=opts.length_penalty,
                prompt=tuple(prompt) or None, suppress_tokens=opts.suppress_tokens, suppress_blank=opts.suppress_blank,
                without_timestamps=opts.without_timestamps, max_initial_timestamp=opts.max_initial_timestamp, **beam)
            result = decode(self.model, self.tokenizer, features, options)[0]
            too_repetitive = (opts.compression_ratio_threshold is not None
                              and result.compression_ratio > opts.compression_ratio_threshold)
            too_unlikely = opts.logprob_threshold is not None and result.avg_logprob < opts.logprob_threshold
            silent = opts.no_speech_threshold is not None and result.no_speech_prob > opts.no_speech_threshold
            if silent or not (too_repetitive or too_unlikely):
                return result
            attempts.append((not too_repetitive, result.avg_logprob, result))
        return max(attempts, key=lambda a: a[:2])[2]

    def check_options(self, options: dict) -> WhisperTranscribeOptions:
        """Refuse unknown options and ones this checkpoint cannot honour, before any audio is read."""
        opts = WhisperTranscribeOptions.from_kwargs(**options)
        if opts.task == "translate" and not self.tokenizer.multilingual:
            raise ConfigError("this is an English-only model (.en); it cannot translate: use a multilingual checkpoint")
        if opts.batch_size is not None and opts.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {opts.batch_size}")
        if opts.language is not None:
            self.tokenizer.language_code(opts.language)     # an unknown code names the known ones
        return opts

    def transcribe(self, audio: np.ndarray | str | Path, progress: bool = False, **options) -> dict:
        """One file or 16 kHz float array -> OpenAI-layout result dict (see the module docstring)."""
        opts = self.check_options(options)
        wave = _as_wave(audio)
        if opts.batch_size:
            from asrforge.inference.whisper_batched import transcribe_batched

            return transcribe_batched(self, wave, opts, opts.batch_size, progress)
        mel = self.mel(wave)
        content_frames = mel.shape[-1] - N_FRAMES
        language = None if opts.language is None else self.tokenizer.language_code(opts.language) \
            if self.tokenizer.multilingual else "en"
        language_probs = None
        first_window = None   # the first window's encoder output, reused after language detection
        if language is None:
            if self.tokenizer.multilingual and content_frames > 0:
                first_window = self.encode(pad_or_trim(mel[:, :min(N_FRAMES, content_frames)])[None])
                codes, probs = detect_language(self.model, self.tokenizer, first_window)
                language, language_probs = codes[0], probs[0]
            else:
                language = "en"

        all_tokens: list[int] = []
        if opts.initial_prompt:
            all_tokens = self.tokenizer.encode(" " + opts.initial_prompt.strip())
        prompt_reset_since = 0
        segments: list[dict] = []
        seek = 0
        last_speech_end = 0.0
        bar = progress_bar(total=content_frames, unit="frames", disable=not progress, desc="transcribing")
        while seek < content_frames:
            time_offset = seek * FRAME_SECONDS
            segment_size = min(N_FRAMES, content_frames - seek)
            window = pad_or_trim(mel[:, seek: seek + segment_size])
            features = first_window if seek == 0 and first_window is not None else self.encode(window[None])
            result = self.decode_with_fallback(features, opts, language, all_tokens[prompt_reset_since:])
            previous_seek = seek

            silent = opts.no_speech_threshold is not None and result.no_speech_prob > opts.no_speech_threshold
            if silent and opts.logprob_threshold is not None and result.avg_logprob > opts.logprob_threshold:
                silent = False   # confident text despite a high no-speech probability
            if silent:
                seek += segment_size
                bar.update(seek - previous_seek)
                continue

            new, seek = self._segments(result, seek, segment_size, time_offset)
            new = [s for s in new if s["end"] > s["start"] and s["text"].strip()]   # drop empty/instantaneous ones
            if opts.word_timestamps and new:
                last_speech_end = add_word_timestamps(
                    new, self.model, self.tokenizer, self.tokenizer.sot_sequence(language, opts.task), features,
                    segment_size, time_offset, language, last_speech_end, opts.prepend_punctuations,
                    opts.append_punctuations)
                words_end = max((w["end"] for s in new for w in s["words"]), default=0.0)
                if seek < previous_seek + segment_size and words_end > time_offset:
                    seek = round(words_end / FRAME_SECONDS)   # the words say more precisely where speech stopped
            for s in new:
                s.update(id=len(segments), seek=previous_seek, temperature=result.temperature,
                         avg_logprob=result.avg_logprob, compression_ratio=result.compression_ratio,
                         no_speech_prob=result.no_speech_prob)
                segments.append(s)
                all_tokens.extend(s["tokens"])
            if not opts.condition_on_previous_text or result.temperature > 0.5:
                prompt_reset_since = len(all_tokens)   # a shaky window must not steer the next one
            bar.update(min(content_frames, seek) - previous_seek)
        bar.close()
        text = self.tokenizer.decode([t for s in segments for t in s["tokens"]])
        return {"text": text, "segments": [_order(s) for s in segments], "language": language,
                "language_probs": language_probs, "duration": round(len(wave) / SAMPLE_RATE, 3)}

    def _segments(self, result: DecodeResult, seek: int, segment_size: int, time_offset: float) -> tuple[list[dict], int]:
        """Cut a window's tokens at consecutive timestamp pairs into segments; returns them and the next seek."""
        tb = self.tokenizer.timestamp_begin
        tokens = result.tokens
        is_ts = [t >= tb for t in tokens]
        single_ending = is_ts[-2:] == [False, True]
        pairs = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
        out = []
        if pairs:
            slices = pairs + ([len(tokens)] if single_ending else [])
            last = 0
            for cut in slices:
                part = tokens[last:cut]
                out.append(self._segment(part, time_offset + (part[0] - tb) * TIME_PRECISION,
                                         time_offset + (part[-1] - tb) * TIME_PRECISION))
                last = cut
            if single_ending:
                seek += segment_size        # nothing was left unfinished: take the whole window
            else:
                seek += (tokens[last - 1] - tb) * INPUT_STRIDE   # resume where the last full segment ended
        else:
            duration = segment_size * FRAME_SECONDS
            stamps = [t for t in tokens if t >= tb]
            if stamps and stamps[-1] != tb:
                duration = (stamps[-1] - tb) * TIME_PRECISION
            out.append(self._segment(tokens, time_offset, time_offset + duration))
            seek += segment_size
        return out, seek

    def _segment(self, tokens: list[int], start: float, end: float) -> dict:
        text_tokens = [t for t in tokens if t < self.tokenizer.eot]
        return {"start": round(start, 3), "end": round(end, 3), "text": self.tokenizer.decode(text_tokens),
                "tokens": tokens}


def _order(segment: dict) -> dict:
    keys = ("id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio", "no_speech_prob")
    return {k: segment[k] for k in keys if k in segment} | {k: v for k, v in segment.items() if k not in keys}


def _as_wave(audio: np.ndarray | str | Path) -> np.ndarray:
    if isinstance(audio, (str, Path)):
        return load_audio(audio)
    return np.asarray(audio, dtype=np.float32)


def quantize_int8(model: Whisper) -> Whisper:
    """Dynamic int8 quantization of every linear layer (weights int8, activations quantized per batch), the
    vocabulary projection included (as CTranslate2's int8 does; 10x faster per decoding step than float): CPU only."""
    import warnings

    with warnings.catch_warnings():   # torch marks eager quantization deprecated in favour of torchao (not installed)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor", category=UserWarning)
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

        embedding = model.decoder.token_embedding.weight
        projection = torch.nn.Linear(embedding.shape[1], embedding.shape[0], bias=False)
        projection.weight = embedding            # shared: the embedding lookup itself stays float
        model.decoder.output_projection = projection
        # one scale per output row (as CTranslate2 does): rows of the embedding differ widely in norm
        return quantize_dynamic(as_plain_linears(model), {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)

