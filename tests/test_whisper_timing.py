"""Whisper word timestamps: DTW, the median filter, punctuation merging, attention -> word times, end to end."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from whisper_fixtures import tiny_whisper

from asrforge.cli import main
from asrforge.inference import whisper_timing
from asrforge.inference.whisper import WhisperTranscriber
from asrforge.inference.whisper_timing import WordTiming, dtw, find_alignment, median_filter, merge_punctuations
from asrforge.models.whisper import save_huggingface


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    model, tok = tiny_whisper(folder)
    return model, tok, folder


def cheapest_path_cost(cost: np.ndarray) -> float:
    """Brute force: every monotonic path of diagonal/down/right steps from corner to corner."""
    n, m = cost.shape
    best = np.inf
    for moves in itertools.product((0, 1, 2), repeat=n + m - 2):
        i = j = 0
        total = cost[0, 0]
        for move in moves:
            i, j = i + (move in (0, 1)), j + (move in (0, 2))
            if i >= n or j >= m:
                break
            total += cost[i, j]
            if (i, j) == (n - 1, m - 1):
                best = min(best, total)
                break
    return best


@pytest.mark.parametrize("shape,seed", [((3, 4), 0), ((4, 4), 1), ((2, 5), 2), ((4, 3), 3)])
def test_dtw_finds_the_cheapest_monotonic_path(shape, seed):
    cost = np.random.default_rng(seed).normal(size=shape)
    rows, cols = dtw(cost)
    assert (rows[0], cols[0]) == (0, 0) and (rows[-1], cols[-1]) == (shape[0] - 1, shape[1] - 1)
    steps = set(zip(np.diff(rows), np.diff(cols)))
    assert steps <= {(1, 1), (1, 0), (0, 1)}
    assert cost[rows, cols].sum() == pytest.approx(cheapest_path_cost(cost))


def test_dtw_follows_a_diagonal_band():
    cost = np.ones((5, 50))
    for k in range(5):
        cost[k, 10 * k: 10 * k + 10] = -1.0   # token k lives in frames 10k..10k+9
    rows, cols = dtw(cost)
    first_frame = [cols[rows == k].min() for k in range(5)]
    assert first_frame == [0, 10, 20, 30, 40]


def test_median_filter_reflects_at_the_edges():
    x = torch.tensor(np.random.default_rng(0).normal(size=(2, 3, 20)), dtype=torch.float32)
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3)), mode="reflect")
    expected = np.stack([np.median(padded[..., t: t + 7], axis=-1) for t in range(20)], axis=-1)
    assert np.allclose(median_filter(x, 7).numpy(), expected)
    short = torch.ones(1, 3)
    assert torch.equal(median_filter(short, 7), short)


def words(*texts: str) -> list[WordTiming]:
    return [WordTiming(t, [i], float(i), float(i + 1), 1.0) for i, t in enumerate(texts)]


def test_punctuation_joins_its_word():
    ws = words(" (", "Hello", ",", " world", ".", ")", " \"", "Yes", "!", "\"")
    merge_punctuations(ws)
    kept = [(w.word, w.tokens) for w in ws if w.word]
    assert kept == [(" (Hello,", [0, 1, 2]), (" world.)", [3, 4, 5]), (" \"Yes!\"", [6, 7, 8, 9])]
    assert all(w.tokens == [] for w in ws if not w.word)


def test_cross_attention_on_a_diagonal_gives_each_word_its_frames(tiny, monkeypatch):
    """Token k attends to encoder positions 25k..25k+24, i.e. 0.5 s each; a word starts at its first token."""
    model, tok, _ = tiny
    spoken = (" the", " fox", " you", " country")
    per_word = [tok.encode(w) for w in spoken]
    text = [t for ids in per_word for t in ids]
    first_token = np.cumsum([0] + [len(ids) for ids in per_word])
    sot = tok.sot_sequence("en", "transcribe")

    def fake_decoder(tokens, audio, need_cross_weights=False):
        length = tokens.shape[1]
        scores = torch.full((1, 2, length, 1500), -10.0)
        for row in range(len(sot), length - 1):          # the query predicting token k = row - len(sot)
            k = row - len(sot)
            scores[0, :, row, 25 * k: 25 * k + 25] = 10.0
        logits = torch.zeros(1, length, model.dims.n_vocab)
        return logits, [scores, scores]

    monkeypatch.setattr(model.decoder, "forward", fake_decoder)
    timings = find_alignment(model, tok, sot, text, torch.zeros(1, 1500, 32), num_frames=2 * 25 * (len(text) + 1),
                             language="en")
    assert [w.word for w in timings] == list(spoken)
    assert [w.start for w in timings] == pytest.approx([0.5 * k for k in first_token[:-1]], abs=0.1)
    assert timings[-1].end == pytest.approx(0.5 * first_token[-1], abs=0.1)
    assert all(a.end == pytest.approx(b.start) for a, b in zip(timings, timings[1:]))


def test_transcribe_with_word_timestamps_covers_every_segment(tiny):
    model, tok, _ = tiny
    audio = np.random.default_rng(0).normal(0, 0.05, 16000 * 4).astype(np.float32)
    result = WhisperTranscriber(model, tok).transcribe(audio, language="en", word_timestamps=True).to_dict()
    assert result["segments"], "the random model should say something"
    for s in result["segments"]:
        ws = s["words"]
        assert ws and "".join(w["word"] for w in ws) == s["text"]
        assert s["start"] == pytest.approx(ws[0]["start"]) or s["start"] > ws[0]["start"]
        for w in ws:
            assert 0.0 <= w["start"] <= w["end"] and 0.0 <= w["probability"] <= 1.0
        assert all(a["start"] <= b["start"] for a, b in zip(ws, ws[1:]))


def test_cli_word_timestamps_reach_the_json(tiny, tmp_path):
    model, _, folder = tiny
    save_huggingface(model, tmp_path / "hf", [folder / "tokenizer.json"])
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.random.default_rng(2).normal(0, 0.05, 16000 * 2).astype(np.float32), 16000)
    assert main(["transcribe", str(wav), "--model", str(tmp_path / "hf"), "--language", "en", "--word-timestamps",
                 "--output-format", "json", "--output-dir", str(tmp_path / "out")]) == 0
    data = json.loads((tmp_path / "out" / "talk.json").read_text())
    assert data["segments"] and all("words" in s for s in data["segments"])
    assert set(data["segments"][0]["words"][0]) == {"word", "start", "end", "probability"}


def test_segment_edges_follow_the_words():
    segment = {"start": 0.0, "end": 3.0}
    ws = [{"word": " a", "start": 0.4, "end": 0.8, "probability": 1.0},
          {"word": " b", "start": 0.8, "end": 1.2, "probability": 1.0}]
    whisper_timing._fit_segment_to_words(segment, ws, median=0.4, longest=0.8, last_speech_end=0.0)
    assert (segment["start"], segment["end"]) == (0.4, 1.2)
