"""Whisper's batched mode: Silero VAD spans, chunking at pauses, batched decoding, the result layout."""

from __future__ import annotations

import numpy as np
import pytest
import soxr
import torch
from whisper_fixtures import tiny_whisper

from asrforge.decoding.whisper import DecodeResult
from asrforge.inference import whisper_batched
from asrforge.inference.vad import merge_spans, speech_spans
from asrforge.inference.whisper import WhisperTranscriber

SR = 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    model, tok = tiny_whisper(folder)
    return model, tok


def test_spans_merge_into_chunks_of_at_most_the_limit():
    spans = [(0, 5), (7, 12), (20, 24), (25, 60), (61, 62)]
    assert merge_spans(spans, 15) == [(0, 12), (20, 24), (25, 40), (40, 55), (55, 62)]
    assert merge_spans([], 10) == []
    chunks = merge_spans([(i * 100, i * 100 + 50) for i in range(20)], 480)
    assert chunks == [(0, 450), (500, 950), (1000, 1450), (1500, 1950)]   # five spans per chunk


def spoken(text: str) -> np.ndarray:
    from asrforge.data.synth.espeak import EspeakEngine

    engine = EspeakEngine.get()
    engine.seed(0)
    wave = engine.synthesize(text, "en-us").astype(np.float32) / 32768
    return soxr.resample(wave, engine.sample_rate, SR).astype(np.float32)


def test_silero_finds_speech_and_not_silence():
    phrase = spoken("the quick brown fox jumps over the lazy dog")
    gap = np.zeros(3 * SR, dtype=np.float32)
    wave = np.concatenate([gap, phrase, gap, phrase, gap])
    threads = torch.get_num_threads()
    spans = speech_spans(wave)
    assert torch.get_num_threads() == threads       # silero's import-time set_num_threads(1) is undone
    first, second = 3 * SR, 6 * SR + len(phrase)
    assert len(spans) >= 2
    assert spans[0][0] >= first - 0.5 * SR and spans[-1][1] <= second + len(phrase) + 0.5 * SR
    speech = np.zeros(len(wave), dtype=bool)
    for s, e in spans:
        speech[s:e] = True
    assert not speech[: 2 * SR].any() and not speech[first + len(phrase) + SR: second - SR].any()
    assert speech[first + SR // 2] and speech[second + SR // 2]
    assert speech_spans(np.zeros(10 * SR, dtype=np.float32)) == []


def fake_result(tokens, temperature=0.0, avg_logprob=-0.2, no_speech=0.1) -> DecodeResult:
    return DecodeResult(tokens=tokens, text="", language="en", language_probs=None, avg_logprob=avg_logprob,
                        sum_logprob=avg_logprob * len(tokens), no_speech_prob=no_speech, temperature=temperature,
                        compression_ratio=1.0)


def test_chunks_are_decoded_in_batches_and_placed_at_their_offsets(tiny, monkeypatch):
    model, tok = tiny
    fox, dog = tok.encode(" fox"), tok.encode(" dog")
    spans = [(1 * SR, 4 * SR), (40 * SR, 45 * SR), (80 * SR, 82 * SR)]
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: spans)
    batches = []

    def fake_decode(model_, tok_, features, options, languages=None):
        batches.append(features.shape[0])
        assert not options.without_timestamps   # timestamps tell where the model stopped
        # one segment running to the window's end: each chunk is transcribed whole
        return [fake_result([tok.timestamp_begin, *fox, *dog, tok.timestamp_begin + 1500]) for _ in range(features.shape[0])]

    monkeypatch.setattr(whisper_batched, "decode", fake_decode)
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(90 * SR, dtype=np.float32), language="en", batch_size=2).to_dict()
    assert batches == [2, 1]
    got = [(s["start"], s["end"], s["text"]) for s in result["segments"]]
    assert got == [(1.0, 4.0, " fox dog"), (40.0, 45.0, " fox dog"), (80.0, 82.0, " fox dog")]
    assert [s["id"] for s in result["segments"]] == list(range(3))
    assert result["text"] == " fox dog fox dog fox dog"


def test_a_chunk_the_model_ends_early_gets_a_second_pass(tiny, monkeypatch):
    """Whisper may close a window after its first sentence though speech goes on; the rest is decoded again."""
    model, tok = tiny
    fox, dog = tok.encode(" fox"), tok.encode(" dog")
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: [(0, 8 * SR), (9 * SR, 20 * SR)])
    calls = []

    def fake_decode(model_, tok_, features, options, languages=None):
        calls.append(features.shape[0])
        if len(calls) == 1:     # stops after 5 s: "fox", then end of text
            return [fake_result([tok.timestamp_begin, *fox, tok.timestamp_begin + 250])]
        return [fake_result([tok.timestamp_begin, *dog, tok.timestamp_begin + 1500])]

    monkeypatch.setattr(whisper_batched, "decode", fake_decode)
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(25 * SR, dtype=np.float32), language="en", batch_size=4).to_dict()
    assert calls == [1, 1]
    assert [(s["start"], s["end"], s["text"]) for s in result["segments"]] == [(0.0, 5.0, " fox"), (5.0, 20.0, " dog")]


def test_what_counts_as_untranscribed_speech():
    spans = [(0, 8 * SR), (9 * SR, 20 * SR)]
    seg = lambda end: [{"start": 0.0, "end": end}]  # noqa: E731
    whole, first = whisper_batched.Chunk(((0, 20 * SR),)), whisper_batched.Chunk(((0, 9 * SR),))
    assert whisper_batched._untranscribed_speech(seg(5.0), whole, spans).pieces == ((5 * SR, 20 * SR),)
    assert whisper_batched._untranscribed_speech(seg(19.8), whole, spans) is None     # within the margin
    assert whisper_batched._untranscribed_speech(seg(8.7), first, spans[:1]) is None  # only silence after
    assert whisper_batched._untranscribed_speech([], whole, spans) is None            # no progress to resume
    # in a packed window, speech in a later piece counts even when the cut piece has none left
    packed = whisper_batched.Chunk(((0, 9 * SR), (30 * SR, 34 * SR)))
    rest = whisper_batched._untranscribed_speech(seg(8.7), packed, [*spans[:1], (30 * SR, 34 * SR)])
    assert rest.pieces == ((int(8.7 * SR), 9 * SR), (30 * SR, 34 * SR))


def test_silent_audio_gives_nothing_and_vad_speech_is_kept(tiny, monkeypatch):
    model, tok = tiny
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: [])
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(20 * SR, dtype=np.float32), language="en", batch_size=4).to_dict()
    assert result["text"] == "" and result["segments"] == []
    # VAD found speech, so a high no-speech probability does not drop the chunk (short words would be lost)
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: [(0, 2 * SR)])
    monkeypatch.setattr(whisper_batched, "decode", lambda *a, **k: [
        fake_result([tok.timestamp_begin, *tok.encode(" two"), tok.timestamp_begin + 100], avg_logprob=-1.5, no_speech=0.9)])
    segments = WhisperTranscriber(model, tok).transcribe(np.zeros(20 * SR, dtype=np.float32), batch_size=4).to_dict()["segments"]
    assert [(s["start"], s["end"], s["text"]) for s in segments] == [(0.0, 2.0, " two")]


def test_batched_mode_runs_end_to_end_on_speech(tiny):
    model, tok = tiny
    phrase = spoken("ask not what your country can do for you")
    wave = np.concatenate([np.zeros(SR, dtype=np.float32), phrase, np.zeros(2 * SR, dtype=np.float32), phrase])
    result = WhisperTranscriber(model, tok).transcribe(wave, language="en", batch_size=2, word_timestamps=True).to_dict()
    assert set(result) >= {"text", "segments", "language"}
    for s in result["segments"]:
        assert 0.0 <= s["start"] < s["end"] <= len(wave) / SR + 0.01
        assert "words" in s


@pytest.mark.parametrize("compression,avg_logprob,fallback", [(3.0, -0.2, True), (1.0, -1.5, False), (1.0, -0.2, False)])
def test_only_a_looping_chunk_is_decoded_again(tiny, monkeypatch, compression, avg_logprob, fallback):
    model, tok = tiny
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: [(0, 2 * SR)])
    result = fake_result([tok.timestamp_begin, *tok.encode(" two"), tok.timestamp_begin + 100], avg_logprob=avg_logprob)
    result.compression_ratio = compression
    monkeypatch.setattr(whisper_batched, "decode", lambda *a, **k: [result])
    pipe = WhisperTranscriber(model, tok)
    again = []
    monkeypatch.setattr(pipe, "decode_with_fallback", lambda *a, **k: again.append(1) or result)
    segments = pipe.transcribe(np.zeros(5 * SR, dtype=np.float32), language="en", batch_size=2).to_dict()["segments"]
    assert bool(again) == fallback and [s["text"] for s in segments] == [" two"]


def test_a_chunk_of_several_pieces_maps_window_times_back_to_the_recording():
    gap = whisper_batched.GAP
    chunk = whisper_batched.Chunk(((10 * SR, 12 * SR), (50 * SR, 53 * SR)))
    assert chunk.samples == 5 * SR + gap
    wave = np.arange(60 * SR, dtype=np.float32)
    audio = chunk.audio(wave)
    assert audio[0] == 10 * SR and audio[2 * SR - 1] == 12 * SR - 1 and not audio[2 * SR: 2 * SR + gap].any()
    assert audio[2 * SR + gap] == 50 * SR and len(audio) == chunk.samples
    second = (2 * SR + gap) / SR             # where the second piece starts in the window
    assert chunk.piece_of(0.0, 2.0) == 0
    assert chunk.piece_of(2.0, second + 2.0) == 1    # a coarse start a little early still belongs to piece 1
    assert chunk.recording_time(1.5, 0) == 11.5
    assert chunk.recording_time(second + 1.0, 1) == 51.0
    assert chunk.recording_time(2.0, 1) == 50.0      # kept inside its piece
    assert chunk.after(1.0).pieces == ((11 * SR, 12 * SR), (50 * SR, 53 * SR))
    assert chunk.after(second + 2.0).pieces == ((52 * SR, 53 * SR),)
    assert chunk.after(second + 3.0).pieces == ()


def test_rests_are_packed_in_time_order_up_to_the_window():
    C = whisper_batched.Chunk
    rests = [C(((50 * SR, 54 * SR),)), C(((10 * SR, 14 * SR),)), C(((90 * SR, 115 * SR),))]
    packed = whisper_batched.pack(rests, 30 * SR)
    assert [c.pieces for c in packed] == [((10 * SR, 14 * SR), (50 * SR, 54 * SR)), ((90 * SR, 115 * SR),)]
    assert all(c.samples <= 30 * SR for c in packed)


def test_rests_of_early_ended_chunks_share_one_window_and_keep_their_times(tiny, monkeypatch):
    model, tok = tiny
    tb = tok.timestamp_begin
    fox, dog = tok.encode(" fox"), tok.encode(" dog")
    # two chunks of 20 s, 40 s apart; each is ended by the model after 10 s
    monkeypatch.setattr(whisper_batched, "speech_spans", lambda wave, vad: [(0, 20 * SR), (60 * SR, 80 * SR)])
    calls = []

    def fake_decode(model_, tok_, features, options, languages=None):
        calls.append(features.shape[0])
        if len(calls) == 1:
            return [fake_result([tb, *fox, tb + 500]) for _ in range(features.shape[0])]
        # the packed window: 10 s of the first rest, a quarter second of silence, 10 s of the second
        second = round((10 * SR + whisper_batched.GAP) / SR / 0.02)
        return [fake_result([tb, *dog, tb + 500, tb + second - 10, *dog, tb + second + 501])]

    monkeypatch.setattr(whisper_batched, "decode", fake_decode)
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(90 * SR, dtype=np.float32), language="en", batch_size=4).to_dict()
    assert calls == [2, 1]
    got = [(s["start"], s["end"], s["text"]) for s in result["segments"]]
    assert got == [(0.0, 10.0, " fox"), (10.0, 20.0, " dog"), (60.0, 70.0, " fox"), (70.0, 80.0, " dog")]
