"""Bootstrap intervals of WER, the paired bootstrap and sclite's matched-pairs test between two systems, and
``asrforge compare``'s refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asrforge.cli import main
from asrforge.metrics import ErrorReport
from asrforge.significance import _segment_errors, bootstrap_interval, mapsswe, paired_bootstrap


def test_the_bootstrap_interval_is_the_direct_computation():
    rng = np.random.default_rng(3)
    words = rng.integers(3, 12, 50)
    errors = np.minimum(rng.poisson(1.0, 50), words)
    low, high = bootstrap_interval(errors, words, resamples=500, seed=7)
    # directly: 500 resamples of 50 utterances with replacement, the rate of each, their 2.5th and 97.5th percentiles
    rows = np.random.default_rng(7).integers(0, 50, size=(500, 50))
    rates = [errors[r].sum() / words[r].sum() for r in rows]
    assert (low, high) == pytest.approx(tuple(np.percentile(rates, [2.5, 97.5])))
    assert low < errors.sum() / words.sum() < high
    same = bootstrap_interval([2] * 20, [10] * 20, resamples=200)        # every utterance at 20 %: no spread
    assert same == pytest.approx((0.2, 0.2))
    assert bootstrap_interval(errors, words, resamples=0) is None


def _system(rng, refs, error_rate):
    """Hypotheses with each reference word substituted with probability ``error_rate``."""
    return [" ".join(w if rng.random() > error_rate else "x" for w in r.split()) for r in refs]


def test_identical_systems_do_not_differ_and_a_clearly_better_one_does():
    rng = np.random.default_rng(0)
    refs = [" ".join(rng.choice(["one", "two", "three", "four", "five"], 8)) for _ in range(120)]
    worse, better = _system(rng, refs, 0.30), _system(rng, refs, 0.10)
    count = lambda hyps: [sum(a != b for a, b in zip(r.split(), h.split())) for r, h in zip(refs, hyps)]  # noqa: E731
    words = [8] * len(refs)
    same = paired_bootstrap(count(worse), count(worse), words)
    assert same.delta == 0.0 and same.p == pytest.approx(1.0) and mapsswe(refs, worse, worse) == (0.0, 1.0)
    diff = paired_bootstrap(count(worse), count(better), words)
    assert diff.delta < 0 and diff.interval[1] < 0 and diff.p < 0.05
    z, p = mapsswe(refs, worse, better)
    assert z > 0 and p < 0.05                   # the first system makes more errors per segment
    # a small random difference: neither test calls it
    slightly = _system(np.random.default_rng(9), refs, 0.29)
    assert paired_bootstrap(count(worse), count(slightly), words).p > 0.05 and mapsswe(refs, worse, slightly)[1] > 0.05


def test_mapsswe_cuts_an_utterance_where_both_systems_are_right_twice_in_a_row():
    ref = "a b c d e f g".split()
    a = "a X c d e f g".split()          # one error in the first stretch
    b = "a b c d e Y g".split()          # one in the second
    assert _segment_errors(ref, a, b) == [(1, 0), (0, 1)]
    # an insertion inside an otherwise clean run keeps the run from cutting
    assert _segment_errors("a b c".split(), "a b c".split(), "a Z b c".split()) == [(0, 1)]


def _evaluation(path, rows):
    report = ErrorReport()
    for i, (ref, hyp) in enumerate(rows):
        report.add(f"u{i}", ref, hyp)
    path.write_text(json.dumps({"wer": report.summary()["wer"], "utterances": report.utterance_rows()}))
    return path


def test_compare_refuses_what_it_cannot_compare_naming_the_file(tmp_path, capsys):
    a = _evaluation(tmp_path / "a.json", [("one two", "one two"), ("three", "tree")])
    fewer = _evaluation(tmp_path / "fewer.json", [("one two", "one two")])
    other = _evaluation(tmp_path / "other.json", [("one two", "one"), ("four", "four")])
    (tmp_path / "old.json").write_text(json.dumps({"wer": 0.1}))
    whisper = tmp_path / "whisper.json"
    whisper.write_text(json.dumps({**json.loads(a.read_text()), "normalizer": "whisper_english"}))
    (tmp_path / "broken.json").write_text("{not json")
    for b, message in ((fewer, "do not cover the same utterances"), (other, "has another reference"),
                       (tmp_path / "old.json", "holds no per-utterance results"),
                       (tmp_path / "broken.json", "is not an evaluation's JSON"),
                       (tmp_path / "missing.json", "does not exist"), (whisper, "with the same one")):
        assert main(["compare", str(a), str(b)]) == 2
        err = capsys.readouterr().err
        assert message in err and str(b) in err and "Traceback" not in err
    assert main(["compare", str(a), str(a), "--json", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["delta"] == 0.0 and same["p_bootstrap"] == pytest.approx(1.0) and same["p_mapsswe"] == 1.0
    assert "not shown to differ" in capsys.readouterr().out


def test_compare_normalizer_scores_both_again_from_the_texts_as_written(tmp_path, capsys):
    def evaluation(path, normalizer, rows):
        report = ErrorReport()
        for i, (written_ref, written_hyp, ref, hyp) in enumerate(rows):
            report.add(f"u{i}", ref, hyp, written=(written_ref, written_hyp))
        path.write_text(json.dumps({"normalizer": normalizer, "utterances": report.utterance_rows()}))
        return path

    # A scored as asrforge scores (5 is not five), B after Whisper's English normalizer
    a = evaluation(tmp_path / "a.json", "basic", [("Five apples.", "5 apples", "five apples", "5 apples"),
                                                   ("Colour me red", "color me bed", "colour me red", "color me bed")])
    b = evaluation(tmp_path / "b.json", "whisper_english", [("Five apples.", "five apples", "5 apples", "5 apples"),
                                                            ("Colour me red", "colour me red", "color me red", "color me red")])
    assert main(["compare", str(a), str(b)]) == 2 and "--normalizer" in capsys.readouterr().err
    assert main(["compare", str(a), str(b), "--normalizer", "whisper_english", "--json", str(tmp_path / "c.json")]) == 0
    figures = json.loads((tmp_path / "c.json").read_text())
    # after the one normalizer A's only error left is "bed"; B has none
    assert figures["normalizer"] == "whisper_english" and figures["words"] == 5
    assert figures["wer_a"] == pytest.approx(1 / 5) and figures["wer_b"] == 0.0
    assert "scored after the whisper_english normalizer" in capsys.readouterr().out
    # an evaluation that did not keep its texts as written is named
    old = _evaluation(tmp_path / "old.json", [("five apples", "5 apples"), ("colour me red", "color me bed")])
    assert main(["compare", str(a), str(old), "--normalizer", "basic"]) == 2
    err = capsys.readouterr().err
    assert str(old) in err and "no texts as written" in err
