import pytest

from asrforge.errors import TextError
from asrforge.text import CharTokenizer, Normalizer, TextConfig, tokenizer_from_state


@pytest.mark.parametrize("raw,expected", [
    ("Hello, World!", "hello world"),
    ("  It's   'quoted'  ", "it's quoted"),
    ("well-known\tfact", "well known fact"),
    ("ＦＵＬＬ ｗｉｄｔｈ ﬁ", "full width fi"),    # NFKC
    ("...", ""),
])
def test_normalizer(raw, expected):
    assert Normalizer()(raw) == expected


def test_normalizer_options():
    assert Normalizer(TextConfig(lowercase=False, remove_punctuation=False))("Hi,  There!") == "Hi, There!"


def test_char_tokenizer_layout_roundtrip_and_state():
    tok = CharTokenizer.build(["hello world", "it's"])
    assert tok.symbols[:4] == ["<blank>", " ", "'", "<unk>"] and tok.blank_id == 0
    ids = tok.encode("it's hello")
    assert 0 not in ids and tok.decode(ids) == "it's hello"
    again = tokenizer_from_state(tok.state_dict())
    assert again.symbols == tok.symbols and again.decode(ids) == "it's hello"


def test_out_of_vocabulary_characters_are_named():
    tok = CharTokenizer.build(["abc"])
    with pytest.raises(TextError, match="'xz'"):
        tok.encode("abxcz")
