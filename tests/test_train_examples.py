"""The dev examples TensorBoard shows each epoch: which utterances, what each family's network gives of them (CTC
posteriors, attention weights), that the weights are the ones the network computes with, and the pictures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from asrforge.data.dataset import SpeechDataset
from asrforge.data.manifest import read_manifest
from asrforge.features import FeatureExtractor
from asrforge.inference.transcriber import Transcriber
from asrforge.nn.attention import MultiHeadAttention
from asrforge.recipe import load_recipe
from asrforge.text import CharTokenizer, Normalizer
from asrforge.train.examples import EOS_LABEL, Example, example_indices
from asrforge.train.figures import ROW_PEAK, attention_image, posteriorgram_image, posteriorgram_rows
from asrforge.train.loggers import example_markdown
from asrforge.train.task import ScratchTask
from conftest import REPO, TINY_MODEL, TINY_RECIPE

pytest.importorskip("matplotlib")      # the tensorboard extra's


def test_the_examples_are_fixed_spread_over_the_dev_set_and_short_enough_to_picture():
    assert example_indices([2.0] * 10, 3) == [0, 4, 9]
    assert example_indices([2.0, 45.0, 2.0, 2.0], 2) == [0, 3]       # the 45-s recording is left out
    assert example_indices([2.0, 3.0], 5) == [0, 1] and example_indices([2.0] * 4, 0) == []
    assert example_indices([40.0], 3) == []


def test_the_attention_weights_are_those_the_block_computes_with():
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 4).eval()
    query, memory = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    mask = torch.tensor([[True] * 5, [True, True, True, False, False]])[:, None, :]
    weights = attention.weights(query, memory, mask)                         # (2, 4, 3, 5)
    assert torch.allclose(weights.sum(-1), torch.ones(2, 4, 3)) and weights[1, :, :, 3:].abs().max() == 0
    _, values = attention.project_kv(memory)                                 # (2, 4, 5, 4)
    mixed = (weights @ values).transpose(1, 2).reshape(2, 3, 16)
    assert torch.allclose(attention.out(mixed), attention(query, memory, mask), atol=1e-5)


FAMILIES = {   # recipe -> (has a CTC head, decoder panels: 0 without an attention decoder)
    "demo_ctc.yaml": (True, 0), "demo_transformer.yaml": (False, 1), "demo_las.yaml": (False, 1),
    "demo_joint.yaml": (True, 1), "demo_rnnt.yaml": (True, 0),
}


@pytest.mark.parametrize("recipe_name", FAMILIES)
def test_each_family_shows_its_ctc_posteriors_and_attention(corpus, tmp_path, recipe_name):
    extra = ["model.ctc_weight=0.3"] if recipe_name == "demo_rnnt.yaml" else []    # the transducer's auxiliary head
    recipe = load_recipe(REPO / "configs" / recipe_name, TINY_RECIPE.get(recipe_name, TINY_MODEL) + extra)
    utts = read_manifest(corpus / "dev.jsonl")[0][:3]
    normalize = Normalizer(recipe.text)
    tokenizer = CharTokenizer.build(normalize(u.text) for u in utts)
    torch.manual_seed(0)
    task = ScratchTask(recipe, tokenizer, tmp_path, torch.device("cpu"))
    model = task.model.eval()
    dev = SpeechDataset(utts, FeatureExtractor(recipe.features), tokenizer, normalize)
    examples = task.examples(model, dev, [0, 2])
    has_ctc, panels = FAMILIES[recipe_name]
    transcriber = Transcriber(model, recipe, tokenizer)
    assert [e.uid for e in examples] == [utts[0].id, utts[2].id]
    for example, index in zip(examples, [0, 2]):
        feats = dev.features_of(index)[None]
        lens = torch.tensor([feats.shape[1]])
        hyp = transcriber.decode(feats, lens, transcriber.decode_config(beam_size=1)).hyps[0].tokens
        assert example.hypothesis == transcriber.text(hyp) and example.reference == normalize(utts[index].text)
        assert np.array_equal(example.audio, dev.wave(index))
        with torch.inference_mode():
            frames = int(model.encode(feats, lens)[1][0])
        if has_ctc:
            assert example.posteriors.shape == (frames, tokenizer.vocab_size) and len(example.labels) == tokenizer.vocab_size
            assert np.allclose(example.posteriors.sum(1), 1.0, atol=1e-4)
            assert posteriorgram_image(example).shape[1:] == (800, 3)
        else:
            assert example.posteriors is None
        if panels:
            assert example.attention.shape == (panels, len(hyp) + 1, frames)       # the hypothesis' tokens and <eos>
            assert np.allclose(example.attention.sum(-1), 1.0, atol=1e-4)
            assert example.attention_rows[-1] == EOS_LABEL and len(example.attention_panels) == panels
            assert attention_image(example).shape[1:] == (800, 3)
        else:
            assert example.attention is None


def test_the_posteriorgram_shows_the_blank_and_the_tokens_that_reach_the_threshold():
    probs = np.full((20, 100), 0.001, dtype=np.float32)
    probs[:, 0] = 0.5
    probs[3, 7], probs[9, 42], probs[5, 13] = 0.6, 0.3, ROW_PEAK / 2
    assert posteriorgram_rows(probs) == [0, 7, 42]
    probs[:, 1:] = np.linspace(0.05, 0.5, 99)            # every token reaches it: the highest 47 and the blank
    assert posteriorgram_rows(probs) == [0, *range(53, 100)]


def test_the_text_names_the_errors_and_escapes_markdown():
    example = Example("u1", np.zeros(16000, np.float32), "a_b one two", "a*b one", 0.04)
    text = example_markdown(example)
    assert "**reference:** a\\_b one two" in text and "**hypothesis:** a\\*b one" in text
    assert "2 word errors in 3 reference words (1 substituted, 1 deleted, 0 inserted)" in text
