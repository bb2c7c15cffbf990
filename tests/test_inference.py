import numpy as np
import pytest
import torch

from asrforge_runtime.audio import SAMPLE_RATE, write_audio

from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.data.manifest import load_utterance, read_manifest, write_manifest
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.inference import Word, load_model
from asrforge.inference.evaluate import RECORDING_S
from asrforge.inference.transcriber import Transcriber, long_form_spans, speech_pieces
from asrforge.text import CharTokenizer, Normalizer


def test_out_of_vocabulary_transcript_becomes_a_named_bad_item(corpus):
    utts, _ = read_manifest(corpus / "train.jsonl")
    u = utts[0].__class__(utts[0].audio_filepath, utts[0].duration, "zero ünïcode", 0.0, None, "oov")
    tok = CharTokenizer.build(["zero one"])
    ds = SpeechDataset([u], FeatureExtractor(FeatureConfig()), tok, Normalizer())
    item = ds[(0, 0)]
    assert isinstance(item, BadItem) and item.id == "oov" and "not in the model's vocabulary" in item.reason


def test_word_times_follow_the_best_path(trained):
    tr = Transcriber.from_checkpoint(trained)
    tok = tr.tokenizer
    step = tr.frame_seconds
    assert step == pytest.approx(0.04)          # 10 ms hop x 4
    # best path: _ o o _ n ' ' _ n n o _ _  ->  "on" over frames 1-4, "no" over frames 7-9
    a, b = tok.encode("o")[0], tok.encode("n")[0]
    space, blank = tok.encode(" ")[0], tok.blank_id
    path = [blank, a, a, blank, b, space, blank, b, b, a, blank, blank]
    lp = torch.full((len(path), tok.vocab_size), -20.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    words = tr.word_times(lp, len(path))
    assert [w.word for w in words] == ["on", "no"]
    assert (words[0].start, words[0].end) == pytest.approx((1 * step, 5 * step))
    assert (words[1].start, words[1].end) == pytest.approx((7 * step, 10 * step))


def test_evaluation_skips_and_reports_missing_audio(trained, corpus, tmp_path):
    utts, _ = read_manifest(corpus / "test.jsonl")
    broken = utts[0].__class__(str(tmp_path / "gone.wav"), 1.0, "one", 0.0, None, "gone")
    write_manifest(tmp_path / "m.jsonl", utts + [broken])
    with open(tmp_path / "m.jsonl", "a") as f:
        f.write("not json\n")
    ev = Transcriber.from_checkpoint(trained).evaluate(tmp_path / "m.jsonl", beam_size=1, progress=False)
    assert ev.summary()["utts"] == len(utts)
    reasons = {b.id: b.reason for b in ev.bad}
    assert "gone" in reasons and "does not exist" in reasons["gone"]
    assert any("not valid JSON" in r for r in reasons.values()) and len(ev.bad) == 2


def test_transcribe_accepts_arrays_and_beam(trained, corpus):
    from asrforge_runtime.audio import load_audio
    tr = Transcriber.from_checkpoint(trained)
    path = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    by_path = tr.transcribe(path, beam_size=1)
    by_array = tr.transcribe(load_audio(path), beam_size=1)
    assert by_path.text == by_array.text and by_path.duration == pytest.approx(by_array.duration)
    assert isinstance(tr.transcribe(path, beam_size=4).text, str)
    assert by_path.source == path and by_array.source is None


def test_long_input_is_decoded_as_its_stretches_of_speech(trained, corpus):
    """Past max_segment_s, voice activity cuts the input at its pauses; each stretch is decoded as an utterance
    (the same text as that slice alone), with segment and word times counted from the start of the input."""
    tr = Transcriber.from_checkpoint(trained)
    tr.tokenizer.decode = lambda tokens: f"{len(tokens)} tokens"     # the tiny model's hypotheses may be empty
    tr.word_times = lambda log_probs, length, tokens=None: [Word("w", 0.1, 0.25)]   # times within each piece
    rng = np.random.default_rng(0)
    parts, placed, position = [], [], 0
    for u in read_manifest(corpus / "test.jsonl")[0][:3]:
        pause = np.zeros(int(1.5 * SAMPLE_RATE), np.float32)
        wave = load_utterance(u)
        parts += [pause, wave]
        placed.append(((position + pause.size) / SAMPLE_RATE, (position + pause.size + wave.size) / SAMPLE_RATE))
        position += pause.size + wave.size
    long = np.concatenate(parts + [np.zeros(SAMPLE_RATE, np.float32)])
    long += 0.001 * rng.standard_normal(long.size).astype(np.float32)
    result = tr.transcribe(long, beam_size=1, max_segment_s=8.0)
    spans = [(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3)) for a, b in long_form_spans(long, 8.0)]
    assert len(spans) == 3
    for (start, end), (speech_start, speech_end) in zip(spans, placed):      # each stretch is one utterance
        covered = min(end, speech_end) - max(start, speech_start)
        assert covered >= 0.8 * (speech_end - speech_start) and end - start < speech_end - speech_start + 1.0
    assert [(s.start, s.end) for s in result.segments] == spans
    for s in result.segments:
        alone = tr.transcribe(long[round(s.start * SAMPLE_RATE):round(s.end * SAMPLE_RATE)], beam_size=1)
        assert s.text == alone.text
        assert s.words == [Word("w", round(s.start + 0.1, 3), round(s.start + 0.25, 3))]   # counted from the file's start
    assert result.text == " ".join(s.text for s in result.segments)
    model = load_model(trained)
    model.tokenizer.decode, model.word_times = tr.tokenizer.decode, tr.word_times
    layout = model.transcribe(long, beam_size=1, max_segment_s=8.0).to_dict()   # what `asrforge transcribe` writes
    assert [(s["id"], s["start"], s["end"], s["text"], [w["start"] for w in s["words"]]) for s in layout["segments"]] == \
        [(i, s.start, s.end, s.text, [w.start for w in s.words]) for i, s in enumerate(result.segments)]
    short = tr.transcribe(long[:2 * SAMPLE_RATE], beam_size=1, max_segment_s=8.0)   # short: one piece, as it is
    assert len(short.segments) <= 1 and all((s.start, s.end) == (0.0, 2.0) for s in short.segments)


def test_a_model_that_trims_silence_reads_a_padded_recording_as_the_tight_one_with_word_times_in_the_file(
        trained, corpus):
    """features.trim_db: the silence around the speech is cut before the model hears it, so the same words
    come out with or without it, and word times still count from the start of the file, not of the kept frames."""
    tr = Transcriber.from_checkpoint(trained)
    tr.recipe.features.trim_db = 30.0           # the transcriber's feature extractor holds this same config
    tr.tokenizer.decode = lambda tokens: f"{len(tokens)} tokens"     # the tiny model's hypotheses may be empty
    tr.word_times = lambda log_probs, length, tokens=None: [Word("w", 0.1, 0.25)]   # times within the input
    speech = load_utterance(read_manifest(corpus / "test.jsonl")[0][0])
    rng = np.random.default_rng(0)
    hiss = lambda seconds: 1e-4 * rng.standard_normal(int(seconds * SAMPLE_RATE)).astype(np.float32)
    tight, padded = speech + hiss(speech.size / SAMPLE_RATE), np.concatenate([hiss(1.5), speech, hiss(1.0)])
    first, margin_s = tr.features.kept_frames(padded).start * 0.01, tr.recipe.features.trim_margin_ms / 1000
    assert 1.5 - margin_s - 0.01 <= first <= 1.5 + speech.size / SAMPLE_RATE / 2      # the trim starts near the speech
    heard, decode = [], tr.decode
    tr.decode = lambda feats, lens, config=None: heard.extend(lens.tolist()) or decode(feats, lens, config)
    a, b = tr.transcribe_batch([tight, padded], beam_size=1)
    margin = round(tr.recipe.features.trim_margin_ms / tr.recipe.features.hop_ms)
    assert a.text == b.text and abs(heard[1] - heard[0]) <= 2 * margin + 2      # at most the margins more
    assert b.words == [Word("w", round(first + 0.1, 3), round(first + 0.25, 3))]
    assert (b.segments[0].start, b.segments[0].end) == (0.0, round(padded.size / SAMPLE_RATE, 3))


def test_evaluation_decodes_a_long_utterance_as_transcribe_does(trained, corpus, tmp_path):
    """A recording of minutes with its whole transcript is scored on what `transcribe` would give: its
    stretches of speech decoded apart, the texts joined; utterances are batched and decoded whole as before."""
    utts = read_manifest(corpus / "test.jsonl")[0][:4]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    long = np.concatenate([x for u in utts[:3] for x in (pause, load_utterance(u))] + [pause])
    long = np.tile(long, 7)                                             # past RECORDING_S
    long += 0.001 * np.random.default_rng(0).standard_normal(long.size).astype(np.float32)
    write_audio(tmp_path / "long.wav", long, SAMPLE_RATE)
    mid = long[: int(40 * SAMPLE_RATE)]                                  # longer than any piece, but an utterance
    write_audio(tmp_path / "mid.wav", mid, SAMPLE_RATE)
    text = " ".join([u.text for u in utts[:3]] * 7)
    rows = [utts[3], utts[3].__class__(str(tmp_path / "long.wav"), long.size / SAMPLE_RATE, text, id="long"),
            utts[3].__class__(str(tmp_path / "mid.wav"), 40.0, text, id="mid")]
    assert long.size > RECORDING_S * SAMPLE_RATE
    write_manifest(tmp_path / "m.jsonl", rows)
    tr = Transcriber.from_checkpoint(trained)
    tr.tokenizer.decode = lambda tokens: f"{len(tokens)} tokens"     # the tiny model's hypotheses may be empty
    ev = tr.evaluate(tmp_path / "m.jsonl", beam_size=1, progress=False)
    hyps = {u.id: u.hyp for u in ev.report.utts}
    assert ev.long_form == 1 and set(hyps) == {utts[3].id, "long", "mid"}
    assert hyps["mid"].count("tokens") == 1                             # decoded whole, as corpora's own are
    assert hyps["long"] == tr.transcribe(long, beam_size=1).text and hyps["long"].count("tokens") == 21   # its 21 utterances
    assert hyps[utts[3].id] == tr.transcribe(utts[3].audio_filepath, beam_size=1).text


def test_speech_pieces_cut_only_long_recordings_into_slices_of_their_file(corpus, tmp_path):
    utts = read_manifest(corpus / "test.jsonl")[0][:3]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    long = np.tile(np.concatenate([x for u in utts for x in (pause, load_utterance(u))]), 3)
    long += 0.001 * np.random.default_rng(0).standard_normal(long.size).astype(np.float32)
    write_audio(tmp_path / "long.wav", long, SAMPLE_RATE)
    recording = utts[0].__class__(str(tmp_path / "long.wav"), long.size / SAMPLE_RATE, "", speaker="new", id="rec")
    gone = utts[0].__class__(str(tmp_path / "gone.wav"), 60.0, "", id="gone")
    pieces, skipped = speech_pieces([utts[0], recording, gone])
    spans = long_form_spans(long)
    assert pieces[0] is utts[0] and len(pieces) == 1 + len(spans) and len(spans) == 9
    assert [s.item for s in skipped] == ["gone"] and "gone.wav" in skipped[0].reason
    for k, (piece, (start, end)) in enumerate(zip(pieces[1:], spans), 1):
        assert (piece.id, piece.speaker, piece.text) == (f"rec-{k:04d}", "new", "")
        assert np.allclose(load_utterance(piece), long[start:end], atol=1e-4)


def test_word_times_belong_to_the_words_the_search_chose(trained):
    """Beam search with an LM may output tokens the best path does not spell; their times come from aligning
    those tokens, so each word's time is where it is spoken, not where the best path's other word was."""
    tr = Transcriber.from_checkpoint(trained)
    tok, step = tr.tokenizer, tr.frame_seconds
    o, n, space, blank = tok.encode("o")[0], tok.encode("n")[0], tok.encode(" ")[0], tok.blank_id
    # frames: blank, o, o, blank, n, space, n, n(weak o), blank
    path = [blank, o, o, blank, n, space, n, n, blank]
    lp = torch.full((len(path), tok.vocab_size), -20.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    lp[7, o] = -1.0                                      # "no" is the runner-up reading of frames 6-7
    assert [w.word for w in tr.word_times(lp, len(path))] == ["on", "n"]                  # the best path
    chosen = tr.word_times(lp, len(path), [o, n, space, n, o])                             # what an LM preferred
    assert [w.word for w in chosen] == ["on", "no"]
    assert (chosen[1].start, chosen[1].end) == pytest.approx((6 * step, 8 * step))
    assert (chosen[0].start, chosen[0].end) == pytest.approx((1 * step, 5 * step))
    too_long = [o, n] * 5                                # cannot fit 9 frames: the best path's times instead
    assert [w.word for w in tr.word_times(lp, len(path), too_long)] == ["on", "n"]


@pytest.mark.parametrize("tokens,frames", [([3, 3], 3), ([3, 4, 5], 3), ([2], 1), ([3, 3, 3], 5), ([3, 4, 3], 6),
                                            ([5, 5], 2)])
def test_ctc_alignment_is_the_most_probable_path_through_the_topology(tokens, frames):
    """Checked against every path through blank, token 1, blank, ..., blank (equal neighbours need a blank
    between them): the alignment found scores as the best of them, or there is none when frames are too few."""
    import itertools

    from asrforge_runtime.search.ctc_align import ctc_align

    lp = torch.log_softmax(torch.randn(frames, 6, generator=torch.Generator().manual_seed(frames)), -1)
    states = [0] + [x for t in tokens for x in (t, 0)]
    best = None
    for path in itertools.product(range(len(states)), repeat=frames):
        steps_ok = path[0] <= 1 and path[-1] >= len(states) - 2 and all(
            b - a in (0, 1) or (b - a == 2 and states[b] != 0 and states[b] != states[a])
            for a, b in zip(path, path[1:]))
        if steps_ok:
            score = sum(float(lp[t, states[s]]) for t, s in enumerate(path))
            best = score if best is None else max(best, score)
    spans = ctc_align(lp, tokens, blank=0)
    if best is None:
        assert spans is None
        return
    labels = [0] * frames
    for tok, (first, last) in zip(tokens, spans):
        labels[first:last + 1] = [tok] * (last - first + 1)
    assert all(a <= b for a, b in spans) and all(p[1] < c[0] for p, c in zip(spans, spans[1:]))
    assert sum(float(lp[t, x]) for t, x in enumerate(labels)) == pytest.approx(best, abs=1e-5)
