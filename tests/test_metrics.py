import random

import jiwer
import pytest

from asrforge.metrics import ErrorReport, align, cer, wer


def _random_pairs(n, vocab, seed):
    rng = random.Random(seed)
    for _ in range(n):
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 12)))
        hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        yield ref, hyp


def test_wer_and_cer_agree_with_jiwer_on_random_strings():
    pairs = list(_random_pairs(400, ["a", "b", "c", "dd", "eee"], 0))
    refs, hyps = [p[0] for p in pairs], [p[1] if p[1] else "" for p in pairs]
    nonempty = [(r, h) for r, h in zip(refs, hyps) if h]
    r2, h2 = [p[0] for p in nonempty], [p[1] for p in nonempty]
    assert wer(r2, h2) == pytest.approx(jiwer.wer(r2, h2), abs=1e-12)
    assert cer(r2, h2) == pytest.approx(jiwer.cer(r2, h2), abs=1e-12)
    for ref, hyp in pairs:
        a = align(ref.split(), hyp.split())
        out = jiwer.process_words(ref, hyp)
        # minimal edit count is unique; its S/D/I split may differ on ties, but must be consistent
        assert a.sub + a.dels + a.ins == out.substitutions + out.deletions + out.insertions
        assert a.hits + a.sub + a.dels == len(ref.split())
        assert a.hits + a.sub + a.ins == len(hyp.split())


@pytest.mark.parametrize("ref,hyp,sdi", [
    ("one two three", "one two three", (0, 0, 0)),
    ("one two three", "one too three", (1, 0, 0)),
    ("one two three", "one three", (0, 1, 0)),
    ("one two three", "one two two three", (0, 0, 1)),
    ("one two", "", (0, 2, 0)),
    ("", "uh", (0, 0, 1)),
])
def test_hand_cases(ref, hyp, sdi):
    a = align(ref.split(), hyp.split())
    assert (a.sub, a.dels, a.ins) == sdi


def test_report_table_confusions_and_files(tmp_path):
    rep = ErrorReport()
    rep.add("u1", "one two three", "one too three", "s1")
    rep.add("u2", "four five", "four", "s2")
    rep.add("u3", "six", "six seven", "s2")
    s = rep.summary()
    assert (s["sub"], s["del"], s["ins"], s["words"], s["utts"]) == (1, 1, 1, 6, 3)
    assert s["wer"] == pytest.approx(0.5)
    table = rep.table()
    assert "Sum/Avg" in table and "s1" in table and "50.0" in table
    conf = rep.confusions()
    assert conf["substitutions"] == [("two -> too", 1)] and conf["deletions"] == [("five", 1)]
    assert conf["insertions"] == [("seven", 1)]
    rep.write_utterances(tmp_path / "u.txt")
    text = (tmp_path / "u.txt").read_text()
    assert "REF:  one TWO three" in text and "HYP:  one TOO three" in text and "HYP:  four ****" in text
    rep.write_jsonl(tmp_path / "u.jsonl")
    assert len((tmp_path / "u.jsonl").read_text().splitlines()) == 3
