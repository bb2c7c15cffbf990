import random

import pytest
import torch

from asrforge.errors import TextError
from asrforge.inference.transcriber import Transcriber
from asrforge.recipe import load_recipe
from asrforge.text import tokenizer_from_state
from asrforge.text.sentencepiece import SentencePieceTokenizer
from asrforge.checkpoint import load_checkpoint
from asrforge.train.trainer import Trainer
from conftest import REPO, tiny_overrides

WORDS = "set a timer for five minutes call mom at seven thirty turn on the kitchen lights".split()


def texts(n=400, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) for _ in range(n)]


@pytest.mark.parametrize("model_type,pieces", [("bpe", 48), ("unigram", 30)])
def test_train_roundtrip_and_state(model_type, pieces):
    tok = SentencePieceTokenizer.train(texts(), pieces, model_type)
    assert tok.vocab_size == pieces + 1 and tok.blank_id == 0
    ids = tok.encode("call mom at seven thirty")
    assert 0 not in ids and tok.decode(ids) == "call mom at seven thirty"
    assert "".join(tok.piece(i) for i in ids).strip() == "call mom at seven thirty"
    again = tokenizer_from_state(tok.state_dict())
    assert again.encode("turn on the lights") == tok.encode("turn on the lights")


def test_unseen_characters_are_an_error():
    tok = SentencePieceTokenizer.train(texts(), 40)
    with pytest.raises(TextError, match="never seen"):
        tok.encode("set a timer for zürich")


def test_training_with_bpe_stores_it_in_the_checkpoint(corpus, tmp_path):
    recipe = load_recipe(REPO / "configs" / "demo_ctc.yaml",
                         tiny_overrides(corpus, **{"text.tokenizer": "sentencepiece", "text.vocab_size": 24, "train.epochs": 1}))
    Trainer(recipe, tmp_path, progress=False).fit()
    state = load_checkpoint(tmp_path / "best.pt")["tokenizer"]
    assert state["kind"] == "sentencepiece" and isinstance(state["model"], bytes)
    tr = Transcriber.from_checkpoint(tmp_path)
    assert tr.tokenizer.vocab_size == 25
    assert tr.model.head.out_features == 25
    # word times come from the pieces: a word-initial piece starts a word (a bare boundary piece carries no text)
    path = [0] + tr.tokenizer.encode("one") + [0, 0] + tr.tokenizer.encode("two") + [0]
    lp = torch.full((len(path), 25), -20.0)
    lp[torch.arange(len(path)), torch.tensor(path)] = 0.0
    words = tr.word_times(lp, len(path))
    first = next(t for t, tok in enumerate(path) if tok and tr.tokenizer.piece(tok).strip())
    assert [w.word for w in words] == ["one", "two"]
    assert words[0].start == pytest.approx(first * tr.frame_seconds)


def test_tokenizer_cli(corpus, tmp_path, capsys):
    from asrforge.cli import main
    out = tmp_path / "tokenizers" / "t.model"      # its folder is made
    assert main(["tokenizer", "train", "--manifest", str(corpus / "train.jsonl"), "--vocab", "20", "--type", "unigram",
                 "--out", str(out)]) == 0
    tok = SentencePieceTokenizer.from_file(out)
    assert tok.decode(tok.encode("one two three")) == "one two three"
    # a path it cannot write: the path and the fix, not an internal error
    (tmp_path / "taken").write_text("a file, not a folder")
    capsys.readouterr()
    assert main(["tokenizer", "train", "--manifest", str(corpus / "train.jsonl"), "--vocab", "20",
                 "--out", str(tmp_path / "taken" / "t.model")]) == 2
    err = capsys.readouterr().err
    assert f"asrforge: error: {tmp_path / 'taken'}: a file of that name is where a folder is needed" in err
    assert "internal error" not in err
