"""Word n-gram LMs: Kneser-Ney training, ARPA files, and shallow fusion into every family's beam search."""

from __future__ import annotations

import gzip
import json
import math

import numpy as np

import pytest
import torch

from asrforge_runtime.search.ctc import CTCBeamOptions, ctc_prefix_beam_search
from asrforge.decoding.kneser_ney import train_kneser_ney, write_lm
from asrforge_runtime.search.ngram import BOS, EOS, LMError, NGramLM
from asrforge_runtime.search.word_lm import WordLMScorer
from asrforge.text.tokenizer import CharTokenizer
from conftest import REPO, tiny_overrides

CORPUS = ["one two three", "one two", "two three one", "three", "one one two three", "two two"]


def test_kneser_ney_values_match_a_hand_computation():
    # sentences "a b" and "a": discounts 0.5 (unigram continuation counts 1, 1, 2) and 0.6 (bigram counts 2, 1, 1, 1)
    lm = train_kneser_ney([["a", "b"], ["a"]], order=2)
    p = lambda h, w: 10 ** lm.log10_prob(h, w)  # noqa: E731
    assert p((), "a") == pytest.approx(0.21875)
    assert p((), EOS) == pytest.approx(0.46875)
    assert p((), "zebra") == pytest.approx(0.09375)          # unknown words score as <unk>
    assert p((BOS,), "a") == pytest.approx(0.765625)
    assert p(("a",), "b") == pytest.approx(0.33125)
    assert p(("a",), "a") == pytest.approx(0.6 * 0.21875)    # unseen bigram: backoff weight x unigram


@pytest.mark.parametrize("order", [1, 2, 3])
def test_kneser_ney_distributions_sum_to_one(order):
    lm = train_kneser_ney([s.split() for s in CORPUS], order)
    words = sorted(lm.vocab) + [EOS, "<unk>"]
    for history in [(BOS,), ("one",), ("one", "two"), ("three", "three"), (BOS, "two"), ("never", "seen")]:
        total = sum(10 ** lm.log10_prob(history, w) for w in words)
        assert total == pytest.approx(1.0, abs=1e-5), history


def test_arpa_round_trip_plain_and_gzip(tmp_path):
    lm = train_kneser_ney([s.split() for s in CORPUS], 3)
    for name in ("lm.arpa", "lm.arpa.gz"):
        lm.save(tmp_path / name)
        back = NGramLM.load(tmp_path / name)
        assert back.order == 3 and back.vocab == lm.vocab
        for s in CORPUS + ["three one one", "four"]:
            assert back.sentence_log10(s.split()) == pytest.approx(lm.sentence_log10(s.split()), abs=1e-5)
    with gzip.open(tmp_path / "lm.arpa.gz", "rt") as f:
        assert f.readline() == "\n" and f.readline().strip() == "\\data\\"


def test_arpa_errors_name_the_file_and_the_problem(tmp_path):
    good = train_kneser_ney([s.split() for s in CORPUS], 2).to_arpa()
    bad_number = tmp_path / "bad_number.arpa"
    bad_number.write_text(good.replace("\\1-grams:\n", "\\1-grams:\nx.y\tone\n"))
    with pytest.raises(LMError, match=r"bad_number.arpa, line \d+: not a number"):
        NGramLM.load(bad_number)
    truncated = tmp_path / "truncated.arpa"
    cut = good.index("\n", good.index("\\2-grams:") + 40)          # a download that stopped after a few lines
    truncated.write_text(good[:cut + 1])
    with pytest.raises(LMError, match="truncated.arpa: the header declares"):
        NGramLM.load(truncated)
    not_arpa = tmp_path / "words.txt"
    not_arpa.write_text("one two three\n")
    with pytest.raises(LMError, match="not an ARPA language model"):
        NGramLM.load(not_arpa)
    with pytest.raises(LMError, match="not found"):
        NGramLM.load(tmp_path / "missing.arpa")


def _char_log_probs(tok: CharTokenizer, frames: list[dict[str, float]]) -> torch.Tensor:
    """(T, V) log-probs: each frame gives the listed symbols ("" = blank) their probabilities, the rest share 1%."""
    lp = torch.full((len(frames), tok.vocab_size), 0.0)
    for t, probs in enumerate(frames):
        rest = 0.01 / (tok.vocab_size - len(probs))
        lp[t] = rest
        for sym, p in probs.items():
            lp[t, tok.blank_id if sym == "" else tok.index[sym]] = p
    return (lp / lp.sum(-1, keepdim=True)).log()


def test_lm_fusion_turns_a_misspelling_into_a_word():
    tok = CharTokenizer.build(["one two", "m"])
    # the audio says "one", but the middle frame slightly prefers "m" (not a letter of any word the LM knows)
    frames = [{"o": 0.9}, {"": 0.9}, {"m": 0.5, "n": 0.45}, {"": 0.9}, {"e": 0.9}, {"": 0.9}]
    lp = _char_log_probs(tok, frames)
    plain = ctc_prefix_beam_search(lp, len(frames), CTCBeamOptions(beam_size=8))
    assert tok.decode(plain[0].tokens) == "ome"
    lm = train_kneser_ney([["one"], ["two"], ["one", "two"]], 2)
    pieces = ["" if i == tok.blank_id else tok.piece(i) for i in range(tok.vocab_size)]
    fused = ctc_prefix_beam_search(lp, len(frames), CTCBeamOptions(beam_size=8), lm=WordLMScorer(lm, pieces, 1.0, 0.0))
    assert tok.decode(fused[0].tokens) == "one"
    # weight 0 and bonus 0: the fused search is the plain one, scores included
    zero = ctc_prefix_beam_search(lp, len(frames), CTCBeamOptions(beam_size=8, nbest=3), lm=WordLMScorer(lm, pieces, 0.0, 0.0))
    exact = ctc_prefix_beam_search(lp, len(frames), CTCBeamOptions(beam_size=8, nbest=3))
    assert [(h.tokens, round(h.score, 6)) for h in zero] == [(h.tokens, round(h.score, 6)) for h in exact]


def test_closed_vocabulary_outputs_only_lm_words():
    tok = CharTokenizer.build(["one two", "m"])
    # the middle frame clearly says "m": an open vocabulary keeps "ome" at a small LM weight, a closed one cannot
    frames = [{"o": 0.9}, {"": 0.9}, {"m": 0.9, "n": 0.05}, {"": 0.9}, {"e": 0.9}, {"": 0.9}]
    lp = _char_log_probs(tok, frames)
    lm = train_kneser_ney([["one"], ["two"], ["one", "two"]], 2)
    pieces = ["" if i == tok.blank_id else tok.piece(i) for i in range(tok.vocab_size)]
    options = CTCBeamOptions(beam_size=8)
    open_lm = ctc_prefix_beam_search(lp, len(frames), options, lm=WordLMScorer(lm, pieces, 0.2, 0.0))
    closed = WordLMScorer(lm, pieces, 0.2, 0.0, closed_vocabulary=True)
    assert tok.decode(open_lm[0].tokens) == "ome"
    assert tok.decode(ctc_prefix_beam_search(lp, len(frames), options, lm=closed)[0].tokens) == "one"
    # a word cut short ("tw") is not a word either, and audio that spells no LM word gives nothing
    state = closed.initial()
    for ch in "tw":
        state = closed.extend(state, tok.index[ch])
    assert state.score == 0.0 and closed.finish(state) == float("-inf")
    only_m = _char_log_probs(tok, [{"m": 0.95}, {"": 0.9}])
    assert tok.decode(ctc_prefix_beam_search(only_m, 2, options, lm=closed)[0].tokens).strip() == ""


class ScriptedAttention:
    """An attention network whose decoder gives, at output position i, row i of its memory ``(N, T, V)`` as
    log-probabilities (the last row from then on), whatever the tokens before: a search's choices are then fixed by
    the script."""

    def select_memory(self, memory, rows):
        return memory[rows]

    def initial_state(self, memory):
        return None

    def step(self, memory, state, history):
        return memory[:, min(history.shape[1] - 1, memory.shape[1] - 1)], state

    def select_state(self, state, rows):
        return state

    def sequence_log_probs(self, memory, sequences):
        from asrforge_runtime.search.attention import stepwise_sequence_log_probs
        return stepwise_sequence_log_probs(self, memory, sequences)


class ScriptedTransducer:
    """A transducer network whose joint network returns the encoder frame itself: frame t's log-probabilities,
    whatever was emitted before (its tables are row counts)."""

    def start(self):
        return 1

    def joint(self, enc, owners, t, table, rows):
        return np.stack([enc[b, t] for b in owners])

    def step(self, table, rows, tokens):
        return len(rows)

    def select(self, table, rows):
        return len(rows)

    def concat(self, tables):
        return sum(tables)


def _scripted_searches(lp: torch.Tensor, lm: WordLMScorer | None, beam: int = 4) -> dict[str, list[int]]:
    """The best tokens of each family's beam search over the script ``lp (T, V)`` (token 0: <eos> / blank)."""
    from asrforge_runtime.search.attention import AttentionBeamOptions, attention_beam_search
    from asrforge_runtime.search.transducer import TransducerOptions, transducer_beam_search

    lens = [lp.shape[0]]
    return {"attention": attention_beam_search(ScriptedAttention(), lp[None].numpy(), lens, AttentionBeamOptions(beam),
                                               lm=lm)[0][0].tokens,
            "transducer": transducer_beam_search(ScriptedTransducer(), lp[None].numpy(), [lp.shape[0]],
                                                 TransducerOptions(beam), lm)[0][0].tokens}


def test_attention_and_transducer_searches_fuse_the_lm():
    tok = CharTokenizer.build(["one two", "m"])
    lm = train_kneser_ney([["one"], ["two"], ["one", "two"]], 2)
    pieces = ["" if i == tok.blank_id else tok.piece(i) for i in range(tok.vocab_size)]
    # one token per position / frame, then <eos> / blank; the second slightly prefers "m" over "n"
    unsure = _char_log_probs(tok, [{"o": 0.9}, {"m": 0.5, "n": 0.45}, {"e": 0.9}, {"": 0.9}])
    assert {k: tok.decode(v) for k, v in _scripted_searches(unsure, None).items()} == {"attention": "ome", "transducer": "ome"}
    fused = _scripted_searches(unsure, WordLMScorer(lm, pieces, 1.0, 0.0))
    assert {k: tok.decode(v) for k, v in fused.items()} == {"attention": "one", "transducer": "one"}
    # "m" clearly heard: a light open-vocabulary LM keeps "ome", a closed vocabulary cannot
    sure = _char_log_probs(tok, [{"o": 0.9}, {"m": 0.9, "n": 0.05}, {"e": 0.9}, {"": 0.9}])
    light = _scripted_searches(sure, WordLMScorer(lm, pieces, 0.2, 0.0))
    closed = _scripted_searches(sure, WordLMScorer(lm, pieces, 0.2, 0.0, closed_vocabulary=True))
    assert {k: tok.decode(v) for k, v in light.items()} == {"attention": "ome", "transducer": "ome"}
    assert {k: tok.decode(v) for k, v in closed.items()} == {"attention": "one", "transducer": "one"}


# An ARPA LM whose <s> backoff weight exceeds 1 (log10 1.0): an unknown first word, spelt at the <unk> cost,
# gains 2.3 when it completes, so the attention search's fused scores can rise as tokens are added.
RISING_ARPA = """\\data\\
ngram 1=4
ngram 2=2

\\1-grams:
-1.5\t</s>
-99\t<s>\t1.0
-2.5\t<unk>
-0.3\ta\t0.8

\\2-grams:
-0.2\t<s> a
-0.1\ta </s>

\\end\\
"""


def test_attention_search_does_not_stop_before_an_lm_that_can_raise_scores_has_had_its_say(tmp_path):
    """With a beam wide enough to keep every hypothesis, the search must find the best per-token score of all
    spellings. Its stopping rule assumed scores only fall; with this LM it ended one script in 300 too soon."""
    import itertools

    from asrforge_runtime.search.attention import AttentionBeamOptions, attention_beam_search

    (tmp_path / "rising.arpa").write_text(RISING_ARPA)
    tok = CharTokenizer.build(["ab ba"])
    pieces = ["" if i == tok.blank_id else tok.piece(i) for i in range(tok.vocab_size)]
    scorer = WordLMScorer(NGramLM.load(tmp_path / "rising.arpa"), pieces, 1.0, 0.0)
    assert scorer.max_gain > 2.3
    spoken = [tok.index[" "], tok.index["a"], tok.index["b"]]
    T, g = 4, torch.Generator().manual_seed(0)
    options = AttentionBeamOptions(beam_size=32, max_len_ratio=1.0, min_len=T)   # at most 3 tokens and <eos>
    for _ in range(300):
        script = torch.full((T, tok.vocab_size), -30.0)
        script[:, [0] + spoken] = (2 * torch.randn(T, 4, generator=g)).log_softmax(-1)    # token 0: <eos>
        found = attention_beam_search(ScriptedAttention(), script[None].numpy(), [T], options, lm=scorer)[0][0]
        best = -math.inf
        for n in range(T):
            for spelling in itertools.product(spoken, repeat=n):
                state, total = scorer.initial(), float(script[n, 0])
                for i, token in enumerate(spelling):
                    total += float(script[i, token])
                    state = scorer.extend(state, token)
                best = max(best, (total + scorer.finish(state)) / (n + 1))
        assert found.score == pytest.approx(best, abs=1e-4)


def _random_lm_states(scorer: WordLMScorer, n: int, vocab: int, g: torch.Generator) -> list:
    """``n`` LM states after random spellings of 0-5 tokens: words, parts of words and misspellings."""
    states = []
    for _ in range(n):
        state = scorer.initial()
        for t in torch.randint(1, vocab, (int(torch.randint(0, 6, (1,), generator=g)),), generator=g).tolist():
            state = scorer.extend(state, t)
        states.append(state)
    return states


def _pruned_and_exhaustive_scorers():
    """Scorers over several weights, bonuses and vocabularies, each with a copy that never stops scoring early."""
    tok = CharTokenizer.build(CORPUS + ["zap"])
    pieces = ["" if i == tok.blank_id else tok.piece(i) for i in range(tok.vocab_size)]
    lm = train_kneser_ney([s.split() for s in CORPUS], 3)
    for weight, bonus, closed in [(0.5, 0.0, False), (1.5, 0.0, True), (0.8, 1.0, False), (0.3, 3.0, True)]:
        scorer = WordLMScorer(lm, pieces, weight, bonus, closed)
        exhaustive = WordLMScorer(lm, pieces, weight, bonus, closed)
        exhaustive.__dict__["max_gain"] = math.inf                  # never stops early
        assert scorer.max_gain >= bonus
        yield tok.vocab_size, scorer, exhaustive


def test_attention_lm_pruning_keeps_the_beam_an_exhaustive_scoring_keeps():
    """The attention search scores LM candidates best first and stops once no other can enter the beam; over
    random hypotheses, its beam must equal the one from scoring every candidate."""
    from asrforge_runtime.search.attention import _fuse_word_lm

    g = torch.Generator().manual_seed(0)
    B, K, width = 3, 4, 6
    for V, scorer, exhaustive in _pruned_and_exhaustive_scorers():
        for _ in range(20):
            step = torch.randn(B * K, V, generator=g).log_softmax(-1)
            states = _random_lm_states(scorer, B * K, V, g)
            scores = torch.where(torch.tensor([st.score > -math.inf for st in states]),
                                 -5 * torch.rand(B * K, generator=g), -math.inf)
            beams = []
            for lm in (scorer, exhaustive):
                fused, _ = _fuse_word_lm(step.numpy(), scores.numpy(), lm, states, K, width)
                top = (scores[:, None] + torch.from_numpy(fused)).reshape(B, -1).topk(K, dim=-1)
                beams.append([[(i, round(v, 5)) for v, i in zip(vs, ix) if v > -math.inf]
                              for vs, ix in zip(top.values.tolist(), top.indices.tolist())])
            assert beams[0] == beams[1]


def test_transducer_lm_pruning_keeps_the_beam_an_exhaustive_scoring_keeps():
    """The same for the transducer search, whose fused scores include the word bonus and so can rise."""
    from asrforge_runtime.search.transducer import _fuse_word_lm, _Hyp

    g = torch.Generator().manual_seed(1)
    K, width = 4, 5
    pruned_somewhere = False
    for V, scorer, exhaustive in _pruned_and_exhaustive_scorers():
        for _ in range(30):
            H = int(torch.randint(1, K + 1, (1,), generator=g))
            hyps = [_Hyp((), -5 * float(torch.rand(1, generator=g)), (), i, state)
                    for i, state in enumerate(_random_lm_states(scorer, H, V, g)) if state.score > -math.inf]
            if not hyps:
                continue
            block = torch.randn(len(hyps), V, generator=g).log_softmax(-1) + torch.tensor([h.acoustic for h in hyps])[:, None]
            beams = []
            for lm in (scorer, exhaustive):
                fused, following = _fuse_word_lm(block.numpy(), hyps, lm, K, width)
                top = torch.from_numpy(fused).reshape(-1).topk(K)
                beams.append([(i, round(v, 5)) for v, i in zip(top.values.tolist(), top.indices.tolist()) if v > -math.inf])
                if lm is scorer:
                    pruned_somewhere |= len(following) < len(hyps) * width
            assert beams[0] == beams[1]
    assert pruned_somewhere            # the bound did stop early at least once


def test_a_zero_weight_lm_changes_no_search():
    """Weight 0, bonus 0: every family's fused search returns what its plain search does, scores included."""
    from asrforge_runtime.search.config import DecodeConfig
    from asrforge.decoding.searches import decode_batch
    from test_families import VOCAB, make_model, tiny_batch

    pieces = ["", " ", "o", "n", "e", "t", "w", "h"][:VOCAB]
    zero = WordLMScorer(train_kneser_ney([["one", "two"], ["two", "one", "one"]], 2), pieces, 0.0, 0.0)
    x, lens, _, _ = tiny_batch(seed=7)
    for name, search in [("las", {}), ("joint", {}), ("joint", {"joint_search": "rescore"}), ("rnnt", {})]:
        model = make_model(name, seed=7).eval()
        plain = decode_batch(model, x, lens, DecodeConfig(beam_size=3, **search)).hyps
        fused = decode_batch(model, x, lens, DecodeConfig(beam_size=3, **search), lm=zero).hyps
        assert [h.tokens for h in fused] == [h.tokens for h in plain], (name, search)
        assert [h.score for h in fused] == pytest.approx([h.score for h in plain], abs=1e-5), (name, search)


def test_scorer_with_word_pieces_scores_whole_words():
    lm = train_kneser_ney([s.split() for s in CORPUS], 3)
    pieces = ["", " on", "e", " two", " t", "hree"]          # SentencePiece-style: a leading space starts a word
    scorer = WordLMScorer(lm, pieces, weight=0.7, word_bonus=0.5)
    state = scorer.initial()
    for token in (1, 2, 3, 4):                                 # " on" "e" " two" " t"
        state = scorer.extend(state, token)
    assert state.history == ("one", "two") and state.partial == "t"
    ln = lambda h, w: lm.log10_prob(h, w) * math.log(10)  # noqa: E731
    expected = 0.7 * (ln((BOS,), "one") + ln((BOS, "one"), "two")) + 2 * 0.5
    assert state.completed == pytest.approx(expected) and state.score == pytest.approx(expected)   # "t" begins "three"
    state = scorer.extend(state, 5)                             # "hree"
    assert scorer.finish(state) == pytest.approx(expected + 0.7 * (ln(("one", "two"), "three") + ln(("two", "three"), EOS)) + 0.5)
    # a partial word no LM word begins with carries the <unk> score at once
    odd = scorer.extend(scorer.extend(scorer.initial(), 1), 1)   # " on" " on": "on" completed as an unknown word
    assert odd.completed == pytest.approx(0.7 * ln((BOS,), "<unk>") + 0.5) and odd.partial == "on"
    assert odd.score == odd.completed                            # "on" begins "one": no charge yet
    misspelt = scorer.extend(scorer.extend(scorer.initial(), 3), 2)   # " two" "e": no LM word begins "twoe"
    assert misspelt.completed == 0.0 and misspelt.score == pytest.approx(0.7 * lm.unk_log10 * math.log(10))


def test_training_writes_the_lm_and_decoding_uses_it(corpus, tmp_path, capsys):
    from asrforge.cli import main
    from asrforge.errors import CheckpointError
    from asrforge.inference.transcriber import Transcriber
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    exp = tmp_path / "exp"
    recipe = load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus, **{"train.epochs": 1, "lm.order": 2}))
    Trainer(recipe, exp, progress=False).fit()
    lm = NGramLM.load(exp / "lm.arpa")
    train_words = {w for line in open(corpus / "train.jsonl") for w in json.loads(line)["text"].lower().split()}
    assert lm.order == 2 and lm.vocab == train_words
    assert Transcriber.from_checkpoint(exp).lm is not None
    assert Transcriber.from_checkpoint(exp, lm=False).lm is None

    test = str(corpus / "test.jsonl")
    assert main(["evaluate", "--model", str(exp), "--manifest", test, "--beam-size", "4", "--lm-weight", "0.8",
                 "--json", str(tmp_path / "with.json")]) == 0
    assert "2-gram LM weight 0.8 bonus 1" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(exp), "--manifest", test, "--beam-size", "4", "--no-lm"]) == 0
    assert "LM" not in capsys.readouterr().out
    assert main(["evaluate", "--model", str(exp), "--manifest", test, "--beam-size", "4", "--closed-vocabulary",
                 "--report-dir", str(tmp_path / "closed")]) == 0
    assert "closed vocabulary" in capsys.readouterr().out
    hyps = [json.loads(line)["hypothesis"] for line in open(tmp_path / "closed" / "utterances.jsonl")]
    assert all(w in lm.vocab for h in hyps for w in h.split())
    # without --beam-size, evaluate decodes as the recipe does (decode.beam_size=4 with its LM); 1 is greedy
    assert main(["evaluate", "--model", str(exp), "--manifest", test, "--json", str(tmp_path / "default.json")]) == 0
    assert "(beam 4, 2-gram LM" in capsys.readouterr().out
    assert json.loads((tmp_path / "default.json").read_text())["beam_size"] == 4
    assert main(["evaluate", "--model", str(exp), "--manifest", test, "--beam-size", "1"]) == 0
    out = capsys.readouterr()
    assert "(greedy)" in out.out and "greedy run ignores it" in out.err

    (exp / "lm.arpa").rename(tmp_path / "moved.arpa")
    with pytest.raises(CheckpointError, match="lm.arpa, which is missing"):
        Transcriber.from_checkpoint(exp)
    wav = sorted((corpus / "wavs" / "test").iterdir())[0]
    assert main(["transcribe", str(wav), "--model", str(exp), "--lm", str(tmp_path / "moved.arpa")]) == 0
    assert main(["evaluate", "--model", str(exp), "--manifest", test]) == 2
    assert "lm.arpa, which is missing" in capsys.readouterr().err


def test_lm_train_command(corpus, tmp_path, capsys):
    from asrforge.cli import main

    out = tmp_path / "lms" / "words.arpa.gz"      # its folder is made
    assert main(["lm", "train", "--manifest", str(corpus / "train.jsonl"), str(corpus / "dev.jsonl"), "--order", "3",
                 "--out", str(out)]) == 0
    assert "Kneser-Ney 3-gram" in capsys.readouterr().out
    assert NGramLM.load(out).order == 3


def test_write_lm_refuses_empty_text(tmp_path):
    with pytest.raises(LMError, match="no text"):
        write_lm(["", ""], 2, tmp_path / "lm.arpa")
    assert not (tmp_path / "lm.arpa").exists()


def test_arpa_backoff_follows_the_format(tmp_path):
    # values chosen by hand; expected scores follow the ARPA backoff rule, unknown words read as <unk>
    path = tmp_path / "hand.arpa"
    path.write_text("\\data\\\nngram 1=4\nngram 2=2\n\n\\1-grams:\n-1.0\t<unk>\n-99\t<s>\t-0.5\n-0.5\ta\t-0.3\n"
                    "-0.7\t</s>\n\n\\2-grams:\n-0.2\t<s> a\n-0.1\ta </s>\n\n\\end\\\n")
    lm = NGramLM.load(path)
    assert lm.log10_prob((BOS,), "a") == pytest.approx(-0.2)
    assert lm.log10_prob(("a",), "a") == pytest.approx(-0.3 - 0.5)
    assert lm.log10_prob(("a",), "zebra") == pytest.approx(-0.3 - 1.0)
    assert lm.log10_prob(("zebra",), "a") == pytest.approx(-0.5)
    assert lm.log10_prob((BOS,), EOS) == pytest.approx(-0.5 - 0.7)
    assert lm.sentence_log10(["a"]) == pytest.approx(-0.2 - 0.1)


def test_lm_tune_finds_and_saves_the_best_setting(corpus, tmp_path, capsys):
    from asrforge.cli import main
    from asrforge.inference.transcriber import Transcriber
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    exp = tmp_path / "exp"
    Trainer(load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus, **{"lm.order": 2})), exp,
            progress=False).fit()
    dev, report = str(corpus / "dev.jsonl"), tmp_path / "tune.json"
    assert main(["lm", "tune", "--model", str(exp), "--manifest", dev, "--beam-size", "2", "--weights", "0.1", "2",
                 "--bonuses", "0", "3", "--json", str(report), "--save"]) == 0
    out = capsys.readouterr().out
    result = json.loads(report.read_text())
    assert [(p["weight"], p["word_bonus"]) for p in result["grid"]] == [(0.1, 0.0), (0.1, 3.0), (2.0, 0.0), (2.0, 3.0)]
    best = min(result["grid"], key=lambda p: (p["wer"], p["cer"]))
    assert result["best"] == best and f"best: --lm-weight {best['weight']:g} --word-bonus {best['word_bonus']:g}" in out
    # each grid point is what `evaluate` reports for those flags; --save makes the best one the default
    for point in (result["grid"][3], best):
        assert main(["evaluate", "--model", str(exp), "--manifest", dev, "--beam-size", "2", "--lm-weight",
                     f"{point['weight']:g}", "--word-bonus", f"{point['word_bonus']:g}", "--json", str(tmp_path / "e.json")]) == 0
        assert json.loads((tmp_path / "e.json").read_text())["wer"] == pytest.approx(point["wer"])
    saved = Transcriber.from_checkpoint(exp)
    assert (saved.lm.weight, saved.lm.word_bonus, saved.recipe.decode.beam_size) == (best["weight"], best["word_bonus"], 2)
    assert main(["evaluate", "--model", str(exp), "--manifest", dev, "--beam-size", "2", "--no-lm", "--json",
                 str(tmp_path / "plain.json")]) == 0
    assert json.loads((tmp_path / "plain.json").read_text())["wer"] == pytest.approx(result["without_lm"]["wer"])

    # a checkpoint without an LM needs --lm; greedy decoding has nothing to tune
    bare = tmp_path / "bare"
    Trainer(load_recipe(REPO / "configs" / "demo_ctc.yaml", tiny_overrides(corpus, **{"train.epochs": 1, "lm.order": 0})), bare,
            progress=False).fit()
    capsys.readouterr()
    assert main(["lm", "tune", "--model", str(bare), "--manifest", dev]) == 2
    assert "trained without an n-gram LM: give one with --lm PATH" in capsys.readouterr().err
    assert main(["lm", "tune", "--model", str(bare), "--manifest", dev, "--lm", str(exp / "lm.arpa"), "--beam-size", "1"]) == 2
    assert "beam search only" in capsys.readouterr().err
    assert main(["lm", "tune", "--model", str(bare), "--manifest", dev, "--lm", str(exp / "lm.arpa"), "--beam-size", "2",
                 "--weights", "0.5", "--bonuses", "1", "--save"]) == 0
    assert Transcriber.from_checkpoint(bare).lm is not None      # lm.path now names the tuned ARPA file
