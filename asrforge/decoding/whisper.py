"""Decoding one 30-second window with a Whisper model: language detection, greedy/sampling/beam search,
the logit rules the reference applies (blank and non-speech suppression, timestamp pairing), and ranking.

Shaped as small parts a task composes: logit filters edit ``(N, V)`` logits in place; a token
decoder (greedy or beam) picks the next tokens; a ranker picks one sequence per audio.
Every search is bounded by ``sample_len`` tokens, so none can loop forever.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from asrforge.features.whisper import TIME_PRECISION
from asrforge.models.whisper.model import DecoderCache, Whisper
from asrforge.preempt import yield_point
from asrforge.text.whisper import WhisperTokenizer


@dataclass(frozen=True)
class WhisperDecodeOptions:
    task: str = "transcribe"                 # or "translate" (into English)
    language: str | None = None              # None: detect per window (multilingual models)
    temperature: float = 0.0                 # 0: greedy or beam search; above: sampling
    sample_len: int | None = None            # most tokens to sample; default half the text context
    best_of: int | None = None               # samples drawn at temperature > 0, the likeliest kept
    beam_size: int | None = None             # beam search at temperature 0
    patience: float | None = None            # finished candidates to collect = beam_size * patience
    length_penalty: float | None = None      # None: rank by mean log-prob; else GNMT penalty alpha
    prompt: tuple[int, ...] | None = None    # previous text's tokens (conditioning)
    prefix: tuple[int, ...] | None = None    # tokens forced at the start of this window's text
    suppress_tokens: tuple[int, ...] | str = "-1"   # "-1": the non-speech symbol set
    suppress_blank: bool = True
    without_timestamps: bool = False
    max_initial_timestamp: float | None = 1.0
    seed: int | None = None                  # sampling: draws from a generator seeded so (None: torch's global one)

    def check(self) -> None:
        if self.task not in ("transcribe", "translate"):
            raise ValueError(f"task {self.task!r}: use transcribe or translate")
        if self.beam_size is not None and self.best_of is not None:
            raise ValueError("best_of is for sampling and beam_size for beam search; give one")
        if self.temperature == 0 and self.best_of is not None:
            raise ValueError("best_of needs a temperature above 0")
        if self.patience is not None and self.beam_size is None:
            raise ValueError("patience needs beam_size")


@dataclass
class DecodeResult:
    tokens: list[int]
    text: str
    language: str | None
    language_probs: dict[str, float] | None
    avg_logprob: float
    sum_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float


def compression_ratio(text: str) -> float:
    """Bytes over zlib-compressed bytes: a window stuck repeating itself compresses far better than speech."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


# ------------------------------------------------------------------ language

@torch.inference_mode()
def detect_language(model: Whisper, tokenizer: WhisperTokenizer, audio_features: torch.Tensor
                    ) -> tuple[list[str], list[dict[str, float]]]:
    """``(B, T, D)`` encoder output -> the likeliest language code and all language probabilities, per audio."""
    if not tokenizer.language_tokens:
        return ["en"] * len(audio_features), [{"en": 1.0}] * len(audio_features)
    sot = torch.full((audio_features.shape[0], 1), tokenizer.sot, dtype=torch.long, device=audio_features.device)
    logits = model.decoder(sot, audio_features)[0][:, 0]
    lang_ids = torch.tensor(tokenizer.language_tokens, device=logits.device)
    probs = logits[:, lang_ids].softmax(-1).cpu()
    codes = tokenizer.language_codes
    return ([codes[i] for i in probs.argmax(-1).tolist()],
            [dict(zip(codes, row.tolist())) for row in probs])


# ------------------------------------------------------------------ logit filters

class SuppressTokens:
    def __init__(self, ids: list[int]):
        self.ids = sorted(set(ids))

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        logits[:, self.ids] = -math.inf


class SuppressBlank:
    """No window starts with a bare space or ends before saying anything."""

    def __init__(self, tokenizer: WhisperTokenizer, sample_begin: int):
        self.ids = tokenizer.blank_tokens
        self.sample_begin = sample_begin

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        if tokens.shape[1] == self.sample_begin:
            logits[:, self.ids] = -math.inf


class TimestampRules:
    """The reference's timestamp grammar: timestamps come in (start, end) pairs except just before
    end-of-text, never decrease, a window starts with one (at most ``max_initial`` steps in), and a
    timestamp is forced when all timestamps together are likelier than any text token."""

    def __init__(self, tokenizer: WhisperTokenizer, sample_begin: int, max_initial_index: int | None):
        self.eot = tokenizer.eot
        self.no_timestamps = tokenizer.no_timestamps
        self.begin = tokenizer.timestamp_begin
        self.sample_begin = sample_begin
        self.max_initial_index = max_initial_index

    def apply(self, logits: torch.Tensor, tokens: torch.Tensor) -> None:
        tb = self.begin
        logits[:, self.no_timestamps] = -math.inf
        sampled_all = tokens[:, self.sample_begin:].tolist()
        for k, sampled in enumerate(sampled_all):
            last_ts = len(sampled) >= 1 and sampled[-1] >= tb
            penultimate_ts = len(sampled) < 2 or sampled[-2] >= tb
            if last_ts:
                if penultimate_ts:       # a pair just closed: text must follow
                    logits[k, tb:] = -math.inf
                else:                    # an opening timestamp: a closing one or end-of-text must follow
                    logits[k, : self.eot] = -math.inf
            stamps = [t for t in sampled if t >= tb]
            if stamps:
                # never go back in time; after a closed pair, move forward so no segment has zero length
                floor = stamps[-1] if (last_ts and not penultimate_ts) else stamps[-1] + 1
                logits[k, tb:floor] = -math.inf
        if tokens.shape[1] == self.sample_begin:
            logits[:, :tb] = -math.inf
            if self.max_initial_index is not None:
                logits[:, tb + self.max_initial_index + 1:] = -math.inf
        logprobs = F.log_softmax(logits.float(), dim=-1)
        stamp_mass = logprobs[:, tb:].logsumexp(-1)
        best_text = logprobs[:, :tb].max(-1).values
        logits[stamp_mass > best_text, :tb] = -math.inf


# ------------------------------------------------------------------ token decoders

class GreedyDecoder:
    """One row per sample (``n_group`` samples per audio); an audio is done when all its rows have ended."""

    def __init__(self, temperature: float, eot: int, n_group: int, seed: int | None = None):
        self.temperature, self.eot, self.n_group = temperature, eot, n_group
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def update(self, tokens: torch.Tensor, logits: torch.Tensor, sum_logprobs: torch.Tensor, cache: DecoderCache
               ) -> tuple[torch.Tensor, list[bool]]:
        """-> the rows with their next token, and per audio whether it is done."""
        if self.temperature == 0:
            nxt = logits.argmax(-1)
        elif self.generator is None:
            nxt = torch.distributions.Categorical(logits=logits / self.temperature).sample()
        else:
            probs = F.softmax(logits.float().cpu() / self.temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=self.generator).view(-1).to(logits.device)
        logprobs = F.log_softmax(logits.float(), dim=-1)
        current = logprobs[torch.arange(len(nxt)), nxt]
        # logits and sums are on the CPU (see decode), tokens where the model is
        ended = (tokens[:, -1] == self.eot).to(logits.device)
        sum_logprobs += current * ~ended
        nxt[ended] = self.eot
        tokens = torch.cat([tokens, nxt.to(tokens.device)[:, None]], dim=-1)
        return tokens, (tokens[:, -1] == self.eot).view(-1, self.n_group).all(-1).tolist()

    def candidates(self, group: int, rows: list[list[int]], sum_logprobs: list[float]) -> list[tuple[list[int], float]]:
        """Audio ``group``'s (sequence, sum_logprob) candidates from its rows."""
        return [([*row, self.eot], lp) for row, lp in zip(rows, sum_logprobs)]

    def keep(self, groups: list[int]) -> None:
        """Only these audios (positions in the current batch) go on; greedy search keeps no state of its own."""


class BeamSearchDecoder:
    """Beam search with patience (Kasai et al., 2022): stop once ``round(beam * patience)`` finished
    candidates per audio are collected; each step expands every beam by its ``beam + 1`` best tokens."""

    def __init__(self, beam_size: int, eot: int, patience: float | None):
        self.beam_size, self.eot = beam_size, eot
        self.max_candidates = max(1, round(beam_size * (patience or 1.0)))
        self.finished: list[dict[tuple, float]] | None = None

    def update(self, tokens: torch.Tensor, logits: torch.Tensor, sum_logprobs: torch.Tensor, cache: DecoderCache
               ) -> tuple[torch.Tensor, list[bool]]:
        """-> the surviving beams (the cache reordered to follow them), and per audio whether it is done."""
        n_audio = tokens.shape[0] // self.beam_size
        if self.finished is None:
            self.finished = [{} for _ in range(n_audio)]
        logprobs = F.log_softmax(logits.float(), dim=-1)
        top_lp, top_id = logprobs.topk(self.beam_size + 1, dim=-1)
        top_lp, top_id, prev_lp, rows = top_lp.tolist(), top_id.tolist(), sum_logprobs.tolist(), tokens.tolist()
        next_rows, sources, new_sums = [], [], []
        for i in range(n_audio):
            scores: dict[tuple, float] = {}
            origin: dict[tuple, int] = {}
            for j in range(self.beam_size):
                idx = i * self.beam_size + j
                for lp, tok in zip(top_lp[idx], top_id[idx]):
                    seq = (*rows[idx], tok)
                    if seq not in scores:          # identical beams at the first step collapse
                        scores[seq], origin[seq] = prev_lp[idx] + lp, idx
            kept, done = 0, self.finished[i]
            for seq in sorted(scores, key=scores.get, reverse=True):
                if seq[-1] == self.eot:
                    if len(done) < self.max_candidates:
                        done[seq] = scores[seq]
                else:
                    next_rows.append(seq)
                    sources.append(origin[seq])
                    new_sums.append(scores[seq])
                    kept += 1
                    if kept == self.beam_size:
                        break
        tokens = torch.tensor(next_rows, dtype=tokens.dtype, device=tokens.device)
        sum_logprobs.copy_(torch.tensor(new_sums, dtype=sum_logprobs.dtype))
        cache.reorder(torch.tensor(sources, device=tokens.device))
        return tokens, [len(d) >= self.max_candidates for d in self.finished]

    def candidates(self, group: int, rows: list[list[int]], sum_logprobs: list[float]) -> list[tuple[list[int], float]]:
        """Audio ``group``'s finished candidates; when it ran out of length with fewer than ``beam_size`` of
        them, its best unfinished beams (``rows``, ``sum_logprobs``) too."""
        candidates = dict(self.finished[group]) if self.finished else {}
        for j in sorted(range(len(rows)), key=lambda j: sum_logprobs[j], reverse=True):
            if len(candidates) >= self.beam_size:
                break
            candidates[(*rows[j], self.eot)] = sum_logprobs[j]
        return [(list(seq), lp) for seq, lp in candidates.items()]

    def keep(self, groups: list[int]) -> None:
        """Only these audios (positions in the current batch) go on."""
        if self.finished is not None:
            self.finished = [self.finished[g] for g in groups]


def rank(candidates: list[tuple[list[int], float]], sample_begin: int, eot: int, length_penalty: float | None
         ) -> tuple[list[int], float]:
    """Pick the candidate with the best length-normalized log-prob; returns (sampled tokens, sum_logprob)."""
    best, best_score = None, -math.inf
    for seq, lp in candidates:
        sampled = seq[sample_begin:]
        sampled = sampled[: sampled.index(eot)] if eot in sampled else sampled
        n = len(sampled)
        penalty = n if length_penalty is None else ((5 + n) / 6) ** length_penalty
        score = lp / max(penalty, 1e-9)
        if best is None or score > best_score:
            best, best_score = (sampled, lp), score
    return best


# ------------------------------------------------------------------ the task

@torch.inference_mode()
def decode(model: Whisper, tokenizer: WhisperTokenizer, audio_features: torch.Tensor, options: WhisperDecodeOptions,
           languages: list[str | None] | None = None) -> list[DecodeResult]:
    """Decode ``(B, T, D)`` encoder outputs (one per 30-s window) -> one :class:`DecodeResult` each."""
    options.check()
    n_audio = audio_features.shape[0]
    n_ctx = model.dims.n_text_ctx
    lang_probs: list[dict | None] = [None] * n_audio
    if languages is None:
        languages = [options.language] * n_audio
    if tokenizer.multilingual and any(lang is None for lang in languages):
        detected, probs = detect_language(model, tokenizer, audio_features)
        languages = [lang if lang is not None else d for lang, d in zip(languages, detected)]
        lang_probs = probs
    if not tokenizer.multilingual:
        languages = ["en"] * n_audio

    sot_seqs = [tokenizer.sot_sequence(lang, options.task) + ([tokenizer.no_timestamps] if options.without_timestamps else [])
                for lang in languages]
    head: list[int] = []
    if options.prompt:
        head = [tokenizer.sot_prev, *list(options.prompt)[-(n_ctx // 2 - 1):]]
    tail = list(options.prefix or ())[: n_ctx // 2 - 1]
    initial = [head + seq + tail for seq in sot_seqs]
    sample_begin = len(initial[0])                 # as the reference: a forced prefix is not part of the result
    sot_index = len(head)
    sample_len = options.sample_len or n_ctx // 2

    filters = []
    if options.suppress_blank:
        filters.append(SuppressBlank(tokenizer, sample_begin))
    suppress = _suppress_ids(tokenizer, options.suppress_tokens)
    if suppress:
        filters.append(SuppressTokens(suppress))
    if not options.without_timestamps:
        max_initial = None if options.max_initial_timestamp is None else round(options.max_initial_timestamp / TIME_PRECISION)
        filters.append(TimestampRules(tokenizer, sample_begin, max_initial))

    if options.beam_size is not None and options.temperature == 0:
        n_group, search = options.beam_size, BeamSearchDecoder(options.beam_size, tokenizer.eot, options.patience)
    else:
        n_group = options.best_of or 1
        search = GreedyDecoder(options.temperature, tokenizer.eot, n_group, options.seed)

    device = audio_features.device
    tokens = torch.tensor(initial, dtype=torch.long, device=device)
    cache = DecoderCache()
    cache.cross_kv = model.decoder.cross_kv(audio_features)
    # the prompt is the same for every beam (or sample) of an audio: it goes through the decoder once per audio,
    # and only two positions are projected onto the vocabulary: start-of-transcript (no-speech probability) and the last
    logits, _ = model.decoder(tokens, None, cache, logit_positions=[sot_index, tokens.shape[1] - 1])
    no_speech = logits[:, 0].softmax(-1)[:, tokenizer.no_speech].cpu()
    logits = logits[:, 1].repeat_interleave(n_group, 0)
    tokens = tokens.repeat_interleave(n_group, 0)
    if n_group > 1:
        cache.expand(n_group)
    sum_logprobs = torch.zeros(tokens.shape[0], device="cpu")
    active = list(range(n_audio))          # the audio each group of n_group rows belongs to
    final: list[list[tuple[list[int], float]]] = [[] for _ in range(n_audio)]
    for step in range(sample_len):
        yield_point()           # a more urgent decode may run here (asrforge.preempt), this one's state kept
        if step:
            if tokens.shape[1] >= n_ctx:
                break
            logits = model.decoder(tokens[:, -1:], None, cache)[0][:, -1]
        for f in filters:
            f.apply(logits, tokens)
        tokens, done = search.update(tokens, logits.cpu() if device.type != "cpu" else logits, sum_logprobs, cache)
        tokens = tokens.to(device)
        if any(done):
            # a finished audio leaves the batch, so the remaining steps cost only what is still being decoded
            _collect(search, tokens, sum_logprobs, n_group, active, final, [g for g, d in enumerate(done) if d])
            groups = [g for g, d in enumerate(done) if not d]
            active = [active[g] for g in groups]
            if not groups:
                break
            rows = torch.tensor([g * n_group + j for g in groups for j in range(n_group)])
            sum_logprobs = sum_logprobs[rows]          # kept on the CPU, beside the logits it sums
            rows = rows.to(device)
            tokens = tokens[rows]
            cache.keep(rows, torch.tensor(groups, device=device))
            search.keep(groups)
    # what is left ran out of length (sample_len or the text context)
    _collect(search, tokens, sum_logprobs, n_group, active, final, list(range(len(active))))

    results = []
    for i, candidates in enumerate(final):
        sampled, lp = rank(candidates, sample_begin, tokenizer.eot, options.length_penalty)
        text = tokenizer.decode(sampled).strip()
        results.append(DecodeResult(
            tokens=sampled, text=text, language=languages[i], language_probs=lang_probs[i],
            avg_logprob=lp / (len(sampled) + 1), sum_logprob=lp, no_speech_prob=float(no_speech[i]),
            temperature=options.temperature, compression_ratio=compression_ratio(text)))
    return results


def _collect(search, tokens: torch.Tensor, sum_logprobs: torch.Tensor, n_group: int, active: list[int],
             final: list, groups: list[int]) -> None:
    """Store the candidates of the audios at batch positions ``groups`` into ``final`` (indexed by audio)."""
    rows, lps = tokens.tolist(), sum_logprobs.tolist()
    for g in groups:
        span = slice(g * n_group, (g + 1) * n_group)
        final[active[g]] = search.candidates(g, rows[span], lps[span])


def _suppress_ids(tokenizer: WhisperTokenizer, spec: tuple[int, ...] | str) -> list[int]:
    """``"-1"`` or a tuple holding -1 means the non-speech set; the task and start tokens are always suppressed."""
    if isinstance(spec, str):
        spec = tuple(int(s) for s in spec.split(",") if s.strip())
    ids = [t for t in spec if t >= 0]
    if -1 in spec:
        ids += tokenizer.non_speech_tokens
    return sorted(set(ids) | set(tokenizer.control_tokens))


def with_options(options: WhisperDecodeOptions, **changes) -> WhisperDecodeOptions:
    return replace(options, **changes)
