import hashlib
import json
import random

from asrforge.data.manifest import read_manifest
from asrforge.data.synth import SynthConfig, synthesize_corpus
from asrforge.data.synth.corpus import split_voices
from asrforge.data.synth.grammar import DOMAINS, number_words


def _digest(folder):
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.wav"))}


def test_corpus_is_deterministic_and_test_voices_are_held_out(tmp_path, corpus):
    train, _ = read_manifest(corpus / "train.jsonl")
    dev, _ = read_manifest(corpus / "dev.jsonl")
    test, _ = read_manifest(corpus / "test.jsonl")
    assert len(train) > 10 and len(dev) >= 8 and len(test) >= 8
    train_voices = {u.speaker for u in train}
    assert not ({u.speaker for u in test} & (train_voices | {u.speaker for u in dev}))
    # same seed, other worker count -> identical audio
    again = tmp_path / "again"
    synthesize_corpus(again, SynthConfig(hours=0.02, seed=3, min_eval_utts=8), workers=2, progress=False)
    assert _digest(again) == _digest(corpus)
    assert (again / "train.jsonl").read_text() == (corpus / "train.jsonl").read_text().replace(str(corpus), str(again))


def test_other_seed_other_corpus(tmp_path):
    a = split_voices(0, 0.2)
    b = split_voices(1, 0.2)
    assert a != b and set(a["test"]).isdisjoint(a["train"]) and set(a["dev"]).isdisjoint(a["train"])


def test_rerun_is_idempotent(tmp_path):
    cfg = SynthConfig(hours=0.005, seed=1, min_eval_utts=3)
    synthesize_corpus(tmp_path, cfg, workers=1, progress=False)
    stamp = (tmp_path / "synth.json").stat().st_mtime_ns
    synthesize_corpus(tmp_path, cfg, workers=1, progress=False)
    assert (tmp_path / "synth.json").stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / "synth.json").read_text())["config"]["seed"] == 1


def test_grammars():
    rng = random.Random(0)
    digits = [DOMAINS["digits"](rng) for _ in range(50)]
    assert all(1 <= len(s.split()) <= 7 for s in digits)
    commands = [DOMAINS["commands"](rng) for _ in range(200)]
    assert any(s.startswith("set a timer for") for s in commands) and any(s.startswith("call ") for s in commands)
    assert all(s == s.lower() and s.strip() == s for s in commands)
    assert number_words(312) == "three hundred and twelve" and number_words(40) == "forty"


def test_every_listed_voice_exists_in_the_bundled_espeak():
    from asrforge.data.synth.corpus import ACCENTS, VARIANTS
    from asrforge.data.synth.espeak import EspeakEngine
    engine = EspeakEngine.get()
    missing = [f"{a}+{v}" for a in ACCENTS for v in VARIANTS if not engine.has_voice(f"{a}+{v}")]
    assert not missing
    assert not engine.has_voice("en-us+no-such-variant")
