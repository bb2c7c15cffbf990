"""Every model family: learns a tiny batch, is unaffected by padding, and its beam search of width 1 is its greedy search."""

import itertools

import numpy as np
import pytest
import torch

from asrforge.config import to_dict
from asrforge.decoding.attention import TorchAttention
from asrforge_runtime.search.attention import AttentionBeamOptions, attention_beam_search, attention_greedy, attention_rescore
from asrforge_runtime.search.ctc_align import ctc_align
from asrforge_runtime.search.ctc_prefix_score import CTCPrefixScorer, pad_with_certain_blank
from asrforge_runtime.search.config import DecodeConfig
from asrforge.decoding.searches import decode_batch
from asrforge.decoding.transducer import TransducerOptions, transducer_beam_search, transducer_greedy
from asrforge.errors import ConfigError
from asrforge.losses.objectives import objective_for
from asrforge.models.build import build_model
from asrforge.recipe import recipe_from_dict
from conftest import TINY_RECIPE

DIM, VOCAB = 20, 8
TINY_ATT = {"d_model": 32, "heads": 2, "layers": 1, "dropout": 0.0}
FAMILIES = {
    "ctc-rnn": {"family": "ctc", "dropout": 0.0, "encoder": {"hidden": 32, "layers": 1, "conv_channels": 4, "dropout": 0.0}},
    "ctc-conformer": {"family": "ctc", "dropout": 0.0, "encoder": {"kind": "conformer", "conv_kernel": 5, **TINY_ATT}},
    "las": {"family": "las", "encoder": {"hidden": 32, "pyramid_layers": 2, "dropout": 0.0},
            "decoder": {"hidden": 48, "embed": 16, "attn_dim": 32, "dropout": 0.0}, "label_smoothing": 0.0},
    "transformer": {"family": "transformer", "encoder": {"ff": 64, **TINY_ATT}, "decoder": {"ff": 64, **TINY_ATT},
                    "label_smoothing": 0.0},
    "joint": {"family": "joint", "encoder": {"conv_kernel": 5, **TINY_ATT}, "decoder": {"ff": 64, **TINY_ATT},
              "label_smoothing": 0.0},
    "rnnt": {"family": "rnnt", "encoder": {"hidden": 32, "layers": 1, "conv_channels": 4, "dropout": 0.0},
             "pred_hidden": 32, "joint_dim": 32, "dropout": 0.0},
    "rnnt-conformer": {"family": "rnnt", "encoder": {"kind": "conformer", "conv_kernel": 5, **TINY_ATT},
                      "pred_hidden": 32, "joint_dim": 32, "dropout": 0.0},
    "rnnt-stateless-streaming": {"family": "rnnt", "predictor": "stateless", "streaming": True, "dropout": 0.0,
                                 "ctc_weight": 0.3,
                                 "encoder": {"hidden": 32, "layers": 2, "bidirectional": False, "conv_channels": 4,
                                             "dropout": 0.0}, "pred_hidden": 32, "joint_dim": 32},
    "ctc-streaming": {"family": "ctc", "streaming": True, "dropout": 0.0,
                      "encoder": {"hidden": 32, "layers": 2, "bidirectional": False, "conv_channels": 4, "dropout": 0.0}},
}


def make_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    # a streaming model's features need no future audio (no utterance CMVN)
    features = {"n_mels": DIM, **({"cmvn": "none"} if FAMILIES[name].get("streaming") else {})}
    recipe = recipe_from_dict({"model": FAMILIES[name], "features": features})
    return build_model(recipe.model, DIM, VOCAB)


def tiny_batch(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lens = torch.tensor([48, 36, 28])
    x = torch.randn(3, 48, DIM, generator=g)
    for b, n in enumerate(lens.tolist()):
        x[b, n:] = 0
    token_lens = torch.tensor([4, 3, 2])
    tokens = torch.randint(1, VOCAB, (3, 4), generator=g)
    for b, n in enumerate(token_lens.tolist()):
        tokens[b, n:] = 0
    return x, lens, tokens, token_lens


def targets(tokens, token_lens):
    return [tokens[b, :n].tolist() for b, n in enumerate(token_lens.tolist())]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_each_family_overfits_a_tiny_batch(name):
    model = make_model(name)
    x, lens, tokens, token_lens = tiny_batch()
    objective = objective_for(model)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    want = targets(tokens, token_lens)
    for step in range(400):
        model.train()
        loss = objective(model, model(x, lens, tokens, token_lens), tokens, token_lens).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 25 == 24:
            model.eval()
            if [h.tokens for h in decode_batch(model, x, lens, DecodeConfig(beam_size=1)).hyps] == want:
                break
    model.eval()
    for beam in (1, 4):
        decoded = decode_batch(model, x, lens, DecodeConfig(beam_size=beam))
        got = [h.tokens for h in decoded.hyps]
        assert got == want, f"{name} beam {beam}: {got} != {want} (loss {float(loss):.3f} after {step + 1} steps)"
        # word times: CTC posteriors, where the model has them (a joint model's CTC head times its decoder's words)
        has_ctc = model.objective == "ctc" or getattr(model, "ctc_head", None) is not None
        assert (decoded.ctc_log_probs is not None) == has_ctc
        if has_ctc:
            for b, tokens in enumerate(got):
                spans = ctc_align(decoded.ctc_log_probs[b, : int(decoded.out_lens[b])], tokens, blank=0)
                assert spans is not None and all(p[1] < c[0] for p, c in zip(spans, spans[1:]))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_padding_changes_no_output(name):
    model = make_model(name, seed=1).eval()
    x, lens, tokens, token_lens = tiny_batch(seed=1)
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        batched = {beam: decode_batch(model, x, lens, DecodeConfig(beam_size=beam)).hyps for beam in (1, 3)}
        for b in range(3):
            n = int(lens[b])
            h1, h1_lens = model.encode(x[b:b + 1, :n], lens[b:b + 1])
            assert int(h1_lens[0]) == int(h_lens[b])
            torch.testing.assert_close(h[b, : int(h_lens[b])], h1[0], atol=2e-5, rtol=1e-4)
            for beam in (1, 3):
                alone = decode_batch(model, x[b:b + 1, :n], lens[b:b + 1], DecodeConfig(beam_size=beam)).hyps[0]
                assert alone.tokens == batched[beam][b].tokens
                assert alone.score == pytest.approx(batched[beam][b].score, abs=1e-3)


@pytest.mark.parametrize("name", ["las", "transformer", "joint"])
def test_attention_beam_of_one_is_greedy(name):
    model = make_model(name, seed=2).eval()
    x, lens, _, _ = tiny_batch(seed=2)
    h, h_lens = model.encode(x, lens)
    net = TorchAttention(model)
    greedy = attention_greedy(net, net.memory(h, h_lens), h_lens.numpy())
    beam = attention_beam_search(net, net.memory(h, h_lens), h_lens.numpy(), AttentionBeamOptions(beam_size=1))
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam]
    assert all(len(g.tokens) >= 1 for g in greedy)   # an untrained model runs to the length bound, and stops there


@pytest.mark.parametrize("name", ["las", "transformer"])
def test_decoder_steps_equal_the_teacher_forced_pass(name):
    """Search runs the decoder one token at a time (the Transformer from its key/value cache); training runs it
    over the whole sequence. Both must give the same logits."""
    model = make_model(name, seed=6).eval()
    x, lens, tokens, token_lens = tiny_batch(seed=6)
    with torch.inference_mode():
        h, h_lens = model.encode(x, lens)
        mem = model.prepare(h, h_lens)
        tokens_in = torch.nn.functional.pad(tokens, (1, 0), value=0)
        full = model.decoder(mem, tokens_in)
        state = model.decoder.initial_state(mem)
        for i in range(tokens_in.shape[1]):
            logits, state = model.decoder.step(mem, state, tokens_in[:, : i + 1])
            torch.testing.assert_close(logits, full[:, i], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["rnnt", "rnnt-stateless-streaming"])
def test_transducer_beam_of_one_is_greedy_with_one_symbol_per_frame(name):
    model = make_model(name, seed=3).eval()
    x, lens, _, _ = tiny_batch(seed=3)
    enc, enc_lens = model.encode(x, lens)
    greedy = transducer_greedy(model, enc, enc_lens, TransducerOptions(max_symbols_per_frame=1))
    beam = transducer_beam_search(model, enc, enc_lens, TransducerOptions(beam_size=1))
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beam]
    assert [g.frames for g in greedy] == [b[0].frames for b in beam]


def test_greedy_transducer_bounds_symbols_per_frame():
    model = make_model("rnnt", seed=4).eval()
    with torch.no_grad():
        model.joint_out.bias[0] = -100.0     # blank never wins: only the bound ends each frame
    x, lens, _, _ = tiny_batch()
    enc, enc_lens = model.encode(x, lens)
    for k in (1, 2):
        hyps = transducer_greedy(model, enc, enc_lens, TransducerOptions(max_symbols_per_frame=k))
        assert [len(h.tokens) for h in hyps] == [k * int(n) for n in enc_lens]


def ctc_prefix_probability(log_probs: torch.Tensor, prefix: list[int], full: bool) -> float:
    """Brute force: total probability of every frame path whose labeling starts with (or equals) ``prefix``."""
    T, V = log_probs.shape
    total = 0.0
    for path in itertools.product(range(V), repeat=T):
        labels, prev = [], 0
        for s in path:
            if s != 0 and s != prev:
                labels.append(s)
            prev = s
        if (labels == prefix) if full else (labels[: len(prefix)] == prefix):
            total += float(sum(log_probs[t, s] for t, s in enumerate(path)).exp())
    return total


def test_ctc_prefix_scores_equal_brute_force():
    torch.manual_seed(0)
    T, V = 5, 3
    lp = torch.randn(1, T + 2, V).log_softmax(-1)
    padded = pad_with_certain_blank(lp, [T])            # two padding frames must change nothing
    scorer = CTCPrefixScorer(padded)
    psi, r, eos = scorer.score(np.array([[1, 2]]))
    assert np.exp(eos[0]) == pytest.approx(ctc_prefix_probability(lp[0, :T], [], full=True), rel=1e-4)
    for col, c in enumerate([1, 2]):
        assert np.exp(psi[0, col]) == pytest.approx(ctc_prefix_probability(lp[0, :T], [c], False), rel=1e-4)
    scorer.advance(np.array([0]), np.array([1]), psi, r, np.array([0]))
    psi2, _, eos2 = scorer.score(np.array([[1, 2]]))
    assert np.exp(eos2[0]) == pytest.approx(ctc_prefix_probability(lp[0, :T], [1], True), rel=1e-4)
    for col, c in enumerate([1, 2]):
        assert np.exp(psi2[0, col]) == pytest.approx(ctc_prefix_probability(lp[0, :T], [1, c], False), rel=1e-4)


def test_joint_search_modes_run_and_weight_zero_is_attention_only():
    model = make_model("joint", seed=5).eval()
    x, lens, _, _ = tiny_batch(seed=5)
    h, h_lens = model.encode(x, lens)
    net = TorchAttention(model)
    mem, n, ctc = net.memory(h, h_lens), h_lens.numpy(), net.ctc(h)
    plain = attention_beam_search(net, mem, n, AttentionBeamOptions(beam_size=3, ctc_weight=0.0))
    weighted = attention_beam_search(net, mem, n, AttentionBeamOptions(beam_size=3, ctc_weight=0.5), ctc)
    rescored = attention_rescore(net, mem, n, ctc, AttentionBeamOptions(beam_size=3, ctc_weight=0.5, nbest=3))
    assert len(plain) == len(weighted) == len(rescored) == 3
    assert all(len(n) >= 1 for n in rescored)
    assert all(r[i].score >= r[i + 1].score for r in rescored for i in range(len(r) - 1))
    # with weight 1 the one-pass joint search is a CTC prefix search: every hypothesis is CTC-feasible
    only_ctc = attention_beam_search(net, mem, n, AttentionBeamOptions(beam_size=3, ctc_weight=1.0), ctc)
    assert all(n[0].score > float("-inf") for n in only_ctc)


@pytest.mark.parametrize("model,message", [
    ({"family": "conformer"}, "unknown model family 'conformer'; choose one of: ctc, joint, las, rnnt, transformer"),
    ({"family": "ctc", "encoder": {"kind": "wavenet"}}, "unknown encoder 'wavenet'; choose one of: conformer, pyramid, rnn, transformer"),
    ({"family": "las", "decoder": {"kind": "gru"}}, "unknown attention decoder 'gru'; choose one of: lstm, transformer"),
    ({"family": "rnnt", "streaming": True}, "streaming needs an encoder that sees no frames past.*'rnn'.*bidirectional: false"),
    ({"family": "rnnt", "streaming": True, "encoder": {"kind": "conformer"}}, "'conformer'.*chunk_frames > 0"),
    ({"family": "ctc", "streaming": True, "encoder": {"kind": "pyramid"}}, "'pyramid'.*kind rnn with bidirectional: false"),
    ({"family": "ctc", "encoder": {"kind": "transformer", "chunk_frames": -2}}, "chunk_frames must be >= 0"),
    ({"family": "ctc", "encoder": {"kind": "conformer", "chunk_frames": 4, "left_chunks": -3}}, "left_chunks must be >= 0, or -1"),
    ({"family": "transformer", "sampling_prob": 0.2}, "scheduled sampling.*one of \\['lstm'\\]"),
    ({"family": "joint", "ctc_weight": 0.0}, "ctc_weight must be > 0 for the joint family"),
    ({"family": "las", "encoder": {"kind": "conformer", "d_model": 30, "heads": 4}}, "d_model=30"),
])
def test_incompatible_recipes_fail_at_load_time(model, message):
    with pytest.raises(ConfigError, match=message):
        recipe_from_dict({"model": model})


def test_family_defaults_round_trip_through_a_checkpoint_dict():
    for family, encoder, decoder in [("las", "pyramid", "lstm"), ("transformer", "transformer", "transformer"),
                                     ("joint", "conformer", "transformer")]:
        r = recipe_from_dict({"model": {"family": family}})
        assert (r.model.encoder.kind, r.model.decoder.kind) == (encoder, decoder)
        again = recipe_from_dict({"model": to_dict(r.model)})
        assert to_dict(again.model) == to_dict(r.model)


@pytest.mark.parametrize("recipe", sorted(TINY_RECIPE))
def test_every_family_trains_evaluates_and_transcribes_through_the_cli(recipe, corpus, tmp_path, capsys):
    import json

    from asrforge.cli import main
    from asrforge.data.manifest import read_manifest
    from conftest import REPO

    base = [f"data.train={corpus / 'train.jsonl'}", f"data.dev={corpus / 'dev.jsonl'}", "data.max_batch_seconds=12",
            "train.epochs=1", "train.max_minutes=null", "train.warmup_steps=2", "train.threads=1", "features.n_mels=40",
            "decode.beam_size=2", "lm.order=2"]
    exp = tmp_path / "exp"
    assert main(["train", str(REPO / "configs" / recipe), *base, *TINY_RECIPE[recipe], "--out", str(exp)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and (exp / "best.pt").is_file()
    report = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(exp), "--manifest", str(corpus / "test.jsonl"), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["utts"] == len(read_manifest(corpus / "test.jsonl")[0]) and 0.0 <= result["cer"]
    # every family's beam search decodes with the bigram training wrote (tests/test_ngram.py checks the fusion)
    assert (exp / "lm.arpa").is_file()
    one_pass_attention = recipe in ("demo_las.yaml", "demo_transformer.yaml")
    assert ("2-gram LM weight 0.5, no word bonus" if one_pass_attention else "2-gram LM weight 0.5 bonus 1") in capsys.readouterr().out
    audio = read_manifest(corpus / "test.jsonl")[0][0].audio_filepath
    assert main(["transcribe", audio, "--model", str(exp), "--output-format", "json"]) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["file"] == audio and isinstance(line["text"], str)
