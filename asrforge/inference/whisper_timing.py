"""Word-level timestamps for Whisper: align tokens to audio frames through cross-attention.

A few decoder heads ("alignment heads", listed in the checkpoint or, failing that, every head of the
upper half of the decoder) attend to the audio frames a token is spoken in. Their attention over
the window, normalized per frame across tokens and median-filtered along time, is a token x frame
similarity; the cheapest monotonic path through it (dynamic time warping) gives each token a frame,
and each word starts where its first token's path does. Punctuation is then attached to its word.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from asrforge.features.whisper import INPUT_STRIDE, TIME_PRECISION
from asrforge.models.whisper import Whisper
from asrforge.text.whisper import WhisperTokenizer

PREPEND_PUNCTUATIONS = "\"'“¿([{-"
APPEND_PUNCTUATIONS = "\"'.。,，!！?？:：”)]}、"
SENTENCE_END_MARKS = ".。!！?？"
MEDIAN_FILTER_WIDTH = 7


@dataclass
class WordTiming:
    word: str
    tokens: list[int]
    start: float          # seconds from the start of the window
    end: float
    probability: float


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cheapest monotonic path through ``cost (N, M)`` from (0, 0) to (N-1, M-1).

    Steps are diagonal, down (next row, same column) or right (same row, next column). Cells on one
    anti-diagonal depend only on the two before it, so each anti-diagonal is one vectorized step.
    Ties prefer the diagonal, then down, then right. Returns ``(row_indices, column_indices)``.
    """
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)      # 0 diagonal, 1 down, 2 right
    for d in range(2, n + m + 1):
        i = np.arange(max(1, d - m), min(n, d - 1) + 1)
        j = d - i
        diag, up, left = total[i - 1, j - 1], total[i - 1, j], total[i, j - 1]
        step = np.where((diag < up) & (diag < left), 0, np.where((up < diag) & (up < left), 1, 2))
        best = np.choose(step, [diag, up, left])
        total[i, j] = cost[i - 1, j - 1] + best
        trace[i, j] = step
    trace[0, :] = 2
    trace[:, 0] = 1
    rows, cols = [], []
    i, j = n, m
    while i > 0 or j > 0:
        rows.append(i - 1)
        cols.append(j - 1)
        step = trace[i, j]
        if step == 0:
            i, j = i - 1, j - 1
        elif step == 1:
            i -= 1
        else:
            j -= 1
    return np.array(rows[::-1]), np.array(cols[::-1])


def median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of odd ``width`` along the last axis, reflecting at the edges."""
    pad = width // 2
    if x.shape[-1] <= pad:
        return x      # too short to reflect; nothing meaningful to smooth
    flat = x.reshape(1, -1, x.shape[-1])    # "reflect" pads the last axis of a 3-D tensor
    padded = torch.nn.functional.pad(flat, (pad, pad), mode="reflect")
    return padded.unfold(-1, width, 1).median(-1).values.reshape(x.shape)


def alignment_attention(model: Whisper, tokenizer: WhisperTokenizer, sot_sequence: list[int], text_tokens: list[int],
                        audio_features: torch.Tensor, num_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The decoder teacher-forced on ``sot_sequence <|notimestamps|> text_tokens <|endoftext|>`` over the window
    whose encoder output is ``audio_features (1, T, D)`` (``num_frames`` mel frames of it hold audio) -> its logits
    ``(S, n_vocab)`` and the alignment heads' attention over the frames holding audio ``(heads, S, positions)``
    (softmax over those frames alone), for the ``S`` positions of that sequence."""
    tokens = torch.tensor([*sot_sequence, tokenizer.no_timestamps, *text_tokens, tokenizer.eot],
                          device=audio_features.device)
    with torch.inference_mode():
        logits, scores = model.decoder(tokens[None], audio_features, need_cross_weights=True)
    positions = max(1, num_frames // INPUT_STRIDE)
    weights = torch.stack([scores[layer][0, head, :, :positions] for layer, head in model.alignment_heads]).float()
    return logits[0], weights.softmax(-1)


def find_alignment(model: Whisper, tokenizer: WhisperTokenizer, sot_sequence: list[int], text_tokens: list[int],
                   audio_features: torch.Tensor, num_frames: int, language: str | None) -> list[WordTiming]:
    """Words of ``text_tokens`` with start/end seconds within the window whose encoder output is
    ``audio_features (1, T, D)``; ``num_frames`` mel frames of it hold audio (the rest is padding)."""
    eot = tokenizer.eot
    logits, weights = alignment_attention(model, tokenizer, sot_sequence, text_tokens, audio_features, num_frames)
    first = len(sot_sequence)
    probs = logits[first: first + len(text_tokens), :eot].float().softmax(-1)
    token_probs = probs[torch.arange(len(text_tokens)), torch.tensor(text_tokens)].cpu().numpy()

    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)   # per frame, across tokens
    weights = median_filter((weights - mean) / (std + 1e-10), MEDIAN_FILTER_WIDTH)
    # row k is the query that predicts (text_tokens + [eot])[k]
    matrix = weights.mean(0)[first:-1].cpu().double().numpy()
    rows, cols = dtw(-matrix)

    words, word_tokens = tokenizer.split_to_words(text_tokens + [eot], language)
    if len(word_tokens) <= 1:
        return []
    boundaries = np.concatenate([[0], np.cumsum([len(t) for t in word_tokens[:-1]])])
    jumps = np.concatenate([[True], np.diff(rows).astype(bool)])     # first column reached by each row
    jump_times = cols[jumps] * TIME_PRECISION
    return [WordTiming(word, tokens_, float(jump_times[a]), float(jump_times[b]),
                       float(token_probs[a:b].mean()) if b > a else 0.0)
            for word, tokens_, a, b in zip(words[:-1], word_tokens[:-1], boundaries[:-1], boundaries[1:])]


def merge_punctuations(words: list[WordTiming], prepended: str = PREPEND_PUNCTUATIONS,
                       appended: str = APPEND_PUNCTUATIONS) -> None:
    """Attach opening marks to the following word and closing marks to the preceding one, in place;
    a merged-away entry keeps an empty ``word`` and no tokens."""
    following = len(words) - 1
    for i in range(len(words) - 2, -1, -1):          # opening marks, right to left
        before, after = words[i], words[following]
        if before.word.startswith(" ") and before.word.strip() in prepended:
            after.word, after.tokens = before.word + after.word, before.tokens + after.tokens
            before.word, before.tokens = "", []
        else:
            following = i
    previous = 0
    for j in range(1, len(words)):                     # closing marks, left to right
        before, after = words[previous], words[j]
        if not before.word.endswith(" ") and after.word in appended:
            before.word, before.tokens = before.word + after.word, before.tokens + after.tokens
            after.word, after.tokens = "", []
        else:
            previous = j


def add_word_timestamps(segments: list[dict], model: Whisper, tokenizer: WhisperTokenizer, sot_sequence: list[int],
                        audio_features: torch.Tensor, num_frames: int, time_offset: float, language: str | None,
                        last_speech_end: float, prepended: str = PREPEND_PUNCTUATIONS,
                        appended: str = APPEND_PUNCTUATIONS) -> float:
    """Give each segment of one window a ``words`` list and tighten its start/end to them (in place).

    Returns the end of the last speech, which the next window uses to spot a long pause before its
    first word. Segments' ``tokens`` may include timestamp tokens; only text tokens are aligned.
    """
    per_segment = [[t for t in s["tokens"] if t < tokenizer.eot] for s in segments]
    text_tokens = [t for tokens in per_segment for t in tokens]
    if not text_tokens:
        for s in segments:
            s["words"] = []
        return last_speech_end
    alignment = find_alignment(model, tokenizer, sot_sequence, text_tokens, audio_features, num_frames, language)
    durations = np.array([w.end - w.start for w in alignment])
    durations = durations[durations.nonzero()]
    median = min(0.7, float(np.median(durations))) if len(durations) else 0.0
    longest = 2 * median
    # a word running over a sentence end has swallowed a pause: cut it to a plausible length
    if len(durations):
        for i in range(1, len(alignment)):
            w = alignment[i]
            if w.end - w.start > longest:
                if w.word in SENTENCE_END_MARKS:
                    w.end = w.start + longest
                elif alignment[i - 1].word in SENTENCE_END_MARKS:
                    w.start = w.end - longest
    merge_punctuations(alignment, prepended, appended)

    index = 0
    for segment, tokens in zip(segments, per_segment):
        taken, words = 0, []
        while index < len(alignment) and taken < len(tokens):
            w = alignment[index]
            if w.word:
                words.append({"word": w.word, "start": round(time_offset + w.start, 2),
                              "end": round(time_offset + w.end, 2), "probability": round(w.probability, 4)})
            taken += len(w.tokens)
            index += 1
        if words:
            _fit_segment_to_words(segment, words, median, longest, last_speech_end)
            last_speech_end = segment["end"]
        segment["words"] = words
    return last_speech_end


def _fit_segment_to_words(segment: dict, words: list[dict], median: float, longest: float,
                          last_speech_end: float) -> None:
    """Reconcile a segment's timestamp tokens with its words' alignment (in place)."""
    first = words[0]
    # after a long pause the first word tends to absorb the silence: shorten it from the left
    if first["end"] - last_speech_end > 4 * median and (
            first["end"] - first["start"] > longest or (len(words) > 1 and words[1]["end"] - first["start"] > 2 * longest)):
        if len(words) > 1 and words[1]["end"] - words[1]["start"] > longest:
            boundary = round(max(words[1]["end"] / 2, words[1]["end"] - longest), 2)
            first["end"] = words[1]["start"] = boundary
        first["start"] = round(max(0.0, first["end"] - longest), 2)
    # trust the segment's timestamp tokens when the words' edge is more than half a second off
    if segment["start"] < first["end"] and segment["start"] - 0.5 > first["start"]:
        first["start"] = round(max(0.0, min(first["end"] - median, segment["start"])), 2)
    else:
        segment["start"] = first["start"]
    last = words[-1]
    if segment["end"] > last["start"] and segment["end"] + 0.5 < last["end"]:
        last["end"] = round(max(last["start"] + median, segment["end"]), 2)
    else:
        segment["end"] = last["end"]

