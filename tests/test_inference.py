import pytest
import torch

from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.data.manifest import read_manifest, write_manifest
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.inference.commands import evaluate_manifest
from asrforge.inference.transcriber import Transcriber
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
    ev = evaluate_manifest(Transcriber.from_checkpoint(trained), tmp_path / "m.jsonl", beam_size=1, progress=False)
    assert ev.summary()["utts"] == len(utts)
    reasons = {b.id: b.reason for b in ev.bad}
    assert "gone" in reasons and "does not exist" in reasons["gone"]
    assert any("not valid JSON" in r for r in reasons.values()) and len(ev.bad) == 2


def test_transcribe_accepts_arrays_and_beam(trained, corpus):
    from asrforge.audio.io import load_audio
    tr = Transcriber.from_checkpoint(trained)
    path = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    by_path = tr.transcribe(path, beam_size=1)[0]
    by_array = tr.transcribe([load_audio(path)], beam_size=1)[0]
    assert by_path.text == by_array.text and by_path.duration == pytest.approx(by_array.duration)
    assert isinstance(tr.transcribe(path, beam_size=4)[0].text, str)
