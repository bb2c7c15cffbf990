"""Truly streaming models (``model.streaming: true``): features, front end, encoder and searches that take audio
as it arrives, and the engine over them. The contract: a stream's output is the offline output of the same model
on the same audio, for every chunk size and however the audio is cut; endpoints come from what was decoded."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from asrforge.errors import ConfigError
from asrforge.features import FeatureConfig, FeatureExtractor
from asrforge.features.online import OnlineFeatures
from asrforge.inference.streaming import StreamingRecognizer, streaming_engine
from asrforge_runtime.native_streaming import NativeStreamingRecognizer
from asrforge_runtime.stream_events import EndpointRules
from asrforge.inference.transcriber import Transcriber
from asrforge.models.build import build_model
from asrforge.models.encoders import (ConformerEncoder, ConformerEncoderConfig, RNNEncoder, RNNEncoderConfig,
                                     TransformerEncoder, TransformerEncoderConfig)
from asrforge.nn.subsampling import Conv2dSubsampling
from asrforge.recipe import recipe_from_dict
from asrforge.text import CharTokenizer
from conftest import REPO, TINY_RECIPE, tiny_overrides
from serve_fixtures import spoken, write_wav

SR = 16000
NEVER = EndpointRules(silence_after_text_s=1e4, silence_without_text_s=1e4, max_utterance_s=1e4)
TOKENIZER = CharTokenizer.build(["zero one two three four five six seven eight nine"])


RNN = {"hidden": 32, "layers": 2, "bidirectional": False, "conv_channels": 4, "dropout": 0.0}
CONFORMER = {"kind": "conformer", "d_model": 32, "heads": 2, "layers": 2, "ff_mult": 2, "conv_kernel": 5,
             "conv_channels": 4, "dropout": 0.0, "chunk_frames": 3, "left_chunks": 2}


def streaming_recipe(family: str, beam: int, encoder: dict = RNN, **model):
    spec = {"family": family, "streaming": True, "dropout": 0.0, "encoder": encoder}
    if family == "rnnt":
        spec.update(pred_hidden=32, joint_dim=32)
    spec.update(model)
    return recipe_from_dict({"model": spec, "features": {"n_mels": 40, "cmvn": "none"}, "decode": {"beam_size": beam}})


def random_transcriber(family: str, beam: int, seed: int = 0, encoder: dict = RNN, **model) -> Transcriber:
    """An untrained streaming model: it emits a different string for every input, so any difference shows."""
    recipe = streaming_recipe(family, beam, encoder, **model)
    torch.manual_seed(seed)
    return Transcriber(build_model(recipe.model, recipe.features.dim, TOKENIZER.vocab_size), recipe, TOKENIZER)


def noise(seconds: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * SR)) * 0.05).astype(np.float32)


def stream_through(engine, wave: np.ndarray, piece: int):
    s = engine.create_stream()
    for i in range(0, len(wave), piece):
        s.accept_waveform(wave[i: i + piece])
        engine.decode_streams([s])
    s.finish()
    engine.decode_streams([s])
    return s.pop_events()


def timed_words(words):
    return [(w.word, w.start, w.end) for w in words]


# ---- the pieces ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("samples", [1, 255, 257, 400, 16037])
def test_online_features_equal_the_offline_frames(samples):
    extractor = FeatureExtractor(FeatureConfig(n_mels=40, cmvn="none"))
    wave = noise(samples / SR + 1e-9, seed=samples)[:samples]
    offline = extractor(wave)
    for piece in (1, 7, 160, 333, 20000):
        online = OnlineFeatures(extractor)
        frames = torch.cat([online.accept(wave[i: i + piece]) for i in range(0, samples, piece)] + [online.finish()])
        assert frames.shape == offline.shape
        torch.testing.assert_close(frames, offline, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("freq_pool", [1, 3])
def test_front_end_in_chunks_equals_the_whole(freq_pool):
    """Output t of each convolution reads input frames 2t-1 .. 2t+1: chunks wait for the frames past their end."""
    torch.manual_seed(0)
    front = Conv2dSubsampling(40, 24, 4, freq_pool).eval()
    with torch.no_grad():
        for frames in (1, 2, 3, 5, 8, 13, 50):
            x = torch.randn(frames, 40)
            whole = front(x[None], torch.tensor([frames]))[0][0]
            for size in (1, 2, 3, 32):
                state = front.initial_state(x)
                parts = [front.forward_chunk(x[i: i + size], state, final=i + size >= frames)
                         for i in range(0, frames, size)]
                torch.testing.assert_close(torch.cat(parts), whole, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("rnn_type", ["lstm", "gru"])
def test_encoder_chunks_of_several_streams_equal_each_whole(rnn_type):
    torch.manual_seed(0)
    encoder = RNNEncoder(RNNEncoderConfig(rnn_type=rnn_type, hidden=16, layers=2, bidirectional=False,
                                          conv_channels=4), 40).eval()
    inputs = [torch.randn(n, 40) for n in (5, 40, 77, 1)]
    with torch.no_grad():
        whole = [encoder(x[None], torch.tensor([x.shape[0]]))[0][0] for x in inputs]
        for size in (1, 3, 32):
            states = [encoder.initial_state(x) for x in inputs]
            outs = [[] for _ in inputs]
            for i in range(0, 77, size):
                live = [k for k, x in enumerate(inputs) if i < x.shape[0]]
                got = encoder.forward_chunks([inputs[k][i: i + size] for k in live], [states[k] for k in live],
                                             [i + size >= inputs[k].shape[0] for k in live])
                for k, h in zip(live, got):
                    outs[k].append(h)
            for parts, expected in zip(outs, whole):
                torch.testing.assert_close(torch.cat(parts), expected, atol=1e-5, rtol=1e-4)


def chunked_encoders():
    for chunk, left in ((1, 0), (3, 2), (4, -1), (8, 1)):
        yield ConformerEncoder(ConformerEncoderConfig(**{**CONFORMER, "d_model": 16, "chunk_frames": chunk,
                                                         "left_chunks": left}), 40)
        yield TransformerEncoder(TransformerEncoderConfig(d_model=16, heads=2, layers=2, ff=32, conv_channels=4,
                                                          dropout=0.0, chunk_frames=chunk, left_chunks=left), 40)


@pytest.mark.parametrize("encoder", list(chunked_encoders()), ids=lambda e: f"{type(e).__name__}-{e.chunk_frames}-{e.left_chunks}")
def test_chunked_attention_encoders_stream_several_streams_exactly_as_they_run_whole(encoder):
    """Keys and values of the left context cached per layer (and a causal convolution's last inputs): the
    streams, cut anywhere and batched together at different offsets, give what each gives in one piece."""
    torch.manual_seed(0)
    encoder.eval()
    inputs = [torch.randn(n, 40) for n in (5, 40, 77, 1)]
    with torch.no_grad():
        whole = [encoder(x[None], torch.tensor([x.shape[0]]))[0][0] for x in inputs]
        for size in (1, 3, 32, 100):
            states = [encoder.initial_state(x) for x in inputs]
            outs = [[] for _ in inputs]
            for i in range(0, 77, size):
                live = [k for k, x in enumerate(inputs) if i < x.shape[0]]
                got = encoder.forward_chunks([inputs[k][i: i + size] for k in live], [states[k] for k in live],
                                             [i + size >= inputs[k].shape[0] for k in live])
                for k, h in zip(live, got):
                    outs[k].append(h)
            for parts, expected in zip(outs, whole):
                torch.testing.assert_close(torch.cat(parts), expected, atol=1e-5, rtol=1e-4)


def test_a_chunked_encoder_never_reads_past_the_chunk_and_a_whole_attention_one_does():
    torch.manual_seed(0)
    x = torch.randn(64, 40)
    later = x.clone()
    later[40:] = torch.randn(24, 40)          # input frames 40.. feed encoder frames 10.. (x4, 3 frames ahead)
    for chunk, reads_ahead in ((4, False), (0, True)):
        encoder = ConformerEncoder(ConformerEncoderConfig(**{**CONFORMER, "chunk_frames": chunk}), 40).eval()
        with torch.no_grad():
            a, b = (encoder(v[None], torch.tensor([64]))[0][0] for v in (x, later))
        # encoder frames 0..7 are two whole chunks of 4, and no frame of theirs reads past input frame 31
        assert torch.allclose(a[:8], b[:8]) != reads_ahead
    with pytest.raises(ValueError, match="chunk_frames > 0"):
        encoder.initial_state(x)


# ---- the contract ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("family,beam,encoder", [("ctc", 1, RNN), ("ctc", 4, RNN), ("rnnt", 1, RNN), ("rnnt", 4, RNN),
                                                 ("ctc", 4, CONFORMER), ("rnnt", 4, CONFORMER)],
                         ids=["ctc-1", "ctc-4", "rnnt-1", "rnnt-4", "ctc-4-conformer", "rnnt-4-conformer"])
def test_streaming_gives_exactly_the_offline_output_for_every_chunk_size(family, beam, encoder):
    transcriber = random_transcriber(family, beam, encoder=encoder)
    wave = noise(2.5)
    offline = transcriber.transcribe(wave)
    assert offline.text
    for chunk_ms in (10, 40, 320, 1000):
        engine = NativeStreamingRecognizer(transcriber, NEVER, chunk_ms=chunk_ms)
        for piece in (160, 1234, len(wave)):
            events = stream_through(engine, wave, piece)
            finals = [e for e in events if e.type == "final"]
            assert [e.text for e in finals] == [offline.text], (chunk_ms, piece)
            assert timed_words(finals[0].words) == timed_words(offline.words), (chunk_ms, piece)
            assert events[-1].type == "final" and all(e.type == "partial" for e in events[:-1])


def test_an_lstm_predictor_and_a_stateless_one_both_keep_their_hypotheses_across_chunks():
    for predictor in ("lstm", "stateless"):
        transcriber = random_transcriber("rnnt", 4, seed=3, predictor=predictor)
        wave = noise(1.5, seed=3)
        events = stream_through(NativeStreamingRecognizer(transcriber, NEVER, chunk_ms=40), wave, 700)
        assert [e.text for e in events if e.type == "final"] == [transcriber.transcribe(wave).text]


@pytest.mark.parametrize("family,beam,encoder", [("ctc", 4, RNN), ("rnnt", 1, RNN), ("rnnt", 4, RNN),
                                                 ("rnnt", 1, CONFORMER)],
                         ids=["ctc-4", "rnnt-1", "rnnt-4", "rnnt-1-conformer"])
def test_streams_decoded_in_one_batch_equal_each_alone(family, beam, encoder):
    transcriber = random_transcriber(family, beam, seed=1, encoder=encoder)
    waves = [noise(s, seed=i) for i, s in enumerate((0.7, 2.0, 1.3))]
    engine = NativeStreamingRecognizer(transcriber, NEVER)
    alone = [[e.text for e in stream_through(engine, w, 800) if e.type == "final"] for w in waves]
    streams = [engine.create_stream() for _ in waves]
    for i in range(0, max(len(w) for w in waves), 1000):     # the streams arrive at different paces, end apart
        for s, w in zip(streams, waves):
            if i < len(w):
                s.accept_waveform(w[i: i + 1000])
                if i + 1000 >= len(w):
                    s.finish()
        engine.decode_streams(streams)
    assert [[e.text for e in s.pop_events() if e.type == "final"] for s in streams] == alone


# ---- endpoints --------------------------------------------------------------------------------------------------------
class LoudnessCTC(torch.nn.Module):
    """A streaming CTC model double: every 4 feature frames (an encoder frame) it says "o" when they are loud and
    blank when they are quiet, so its output is known in advance: one "o" per stretch of sound."""

    objective = "ctc"

    def __init__(self, vocab: int, loud: float):
        super().__init__()
        self.vocab, self.loud = vocab, loud

    def encode(self, x, lens):
        return x[:, ::4], (lens + 3) // 4

    def initial_stream(self, x):
        return {"pending": x.new_zeros(0, x.shape[1]), "prev": 0}

    def forward_chunks(self, chunks, states, finals):
        out = []
        for x, state, final in zip(chunks, states, finals):
            frames = torch.cat([state["pending"], x])
            n = (frames.shape[0] + 3) // 4 if final else frames.shape[0] // 4
            state["pending"] = frames[4 * n:]
            logp = torch.full((n, self.vocab), -30.0)
            for t in range(n):
                loud = frames[4 * t: 4 * t + 4].mean() > self.loud
                symbol = TOKENIZER.encode("o")[0] if loud else 0
                # a sound held over several frames is one "o": a blank comes only between sounds
                logp[t, symbol] = 0.0
            out.append(logp)
        return out


def loudness_engine(rules=None):
    recipe = streaming_recipe("ctc", 1)
    quiet = float(FeatureExtractor(recipe.features)(np.zeros(SR, np.float32)).mean())
    transcriber = Transcriber(LoudnessCTC(TOKENIZER.vocab_size, quiet + 2.0), recipe, TOKENIZER)
    return NativeStreamingRecognizer(transcriber, rules or EndpointRules(0.6, 2.4, 20.0))


def tone(seconds: float) -> np.ndarray:
    """Broadband sound: every band is loud."""
    return 6 * noise(seconds, seed=7)


def test_an_utterance_ends_after_the_silence_the_rules_name_and_only_then():
    engine = loudness_engine()
    # sound 0.5-1.0 s, a pause of 0.4 s (shorter than the rule: the utterance goes on), sound 1.4-1.8 s, silence
    wave = np.concatenate([np.zeros(SR // 2), tone(0.5), np.zeros(int(0.4 * SR)), tone(0.4), np.zeros(2 * SR),
                           tone(0.3), np.zeros(SR)])       # and one more after the endpoint: 3.8-4.1 s
    s = engine.create_stream()
    arrivals = []
    for i in range(0, len(wave), 1600):
        s.accept_waveform(wave[i: i + 1600].astype(np.float32))
        engine.decode_streams([s])
        arrivals += [((i + 1600) / SR, e) for e in s.pop_events()]
    finals = [(t, e) for t, e in arrivals if e.type == "final"]
    assert [e.text for _, e in finals] == ["oo", "o"]   # the short pause did not end it; the long one did
    (arrived, final), (_, after) = finals
    # the utterance after an endpoint starts afresh (a new encoder state), its times still counted from the start
    assert after.start == pytest.approx(3.8, abs=0.1) and after.end == pytest.approx(4.1, abs=0.1)
    assert final.start == pytest.approx(0.5, abs=0.1) and final.end == pytest.approx(1.8, abs=0.1)
    # the final came once 0.6 s of silence were decoded, a chunk (0.32 s) after at most
    assert 1.8 + 0.6 <= arrived + 0.05 and arrived <= 1.8 + 0.6 + 0.32 + 0.1 + 0.05
    partials = [(t, e) for t, e in arrivals if e.type == "partial"]
    assert partials[0][1].text == "o" and partials[0][0] <= 0.5 + 0.32 + 0.1 + 0.1   # within a chunk of the sound
    s.finish()
    engine.decode_streams([s])
    assert [e for e in s.pop_events() if e.type == "final"] == []     # nothing was left to say


def test_silence_with_nothing_decoded_is_dropped_and_a_long_utterance_is_cut():
    engine = loudness_engine(EndpointRules(0.6, 2.4, 3.0))
    s = engine.create_stream()
    for _ in range(60):                      # a minute of silence: no event, and the search is started again
        s.accept_waveform(np.zeros(SR, np.float32))
        engine.decode_streams([s])
    assert s.pop_events() == [] and s.search.frames * 0.04 < 2.4 + 0.4
    assert sum(c.shape[0] for c in s.search.chunks) == s.search.frames     # bounded: one utterance's frames
    # sound that never pauses ends an utterance every max_utterance_s
    s.accept_waveform(tone(7.0))
    engine.decode_streams([s])
    finals = [e for e in s.pop_events() if e.type == "final"]
    assert len(finals) == 2 and all(e.end - e.start <= 3.0 + 0.32 for e in finals)   # checked once a chunk


def test_a_model_not_trained_to_stream_is_refused_and_the_factory_picks_the_engine(babbler):
    from asrforge.inference.recognizer import load_model

    offline = load_model(babbler)
    with pytest.raises(ConfigError, match="not trained to stream.*demo_rnnt_streaming"):
        NativeStreamingRecognizer(offline)
    assert isinstance(streaming_engine(offline, step_s=1.0, chunk_ms=320), StreamingRecognizer)
    native = streaming_engine(random_transcriber("rnnt", 1), step_s=1.0, trim_s=10.0)
    assert isinstance(native, NativeStreamingRecognizer)
    with pytest.raises(ConfigError, match="language"):
        native.create_stream(language="fr")


# ---- training and the command line ------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def streaming_checkpoint(tmp_path_factory, corpus):
    """A tiny chunked-Conformer transducer trained a few steps with global CMVN (accuracy irrelevant)."""
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    exp = tmp_path_factory.mktemp("rnnt_streaming")
    overrides = [o for o in tiny_overrides(corpus, **{"decode.beam_size": 2}) if not o.startswith("model.")]
    overrides += TINY_RECIPE["demo_conformer_rnnt.yaml"]
    Trainer(load_recipe(REPO / "configs" / "demo_rnnt_streaming.yaml", overrides), exp, progress=False).fit()
    return exp / "best.pt"


def test_training_measures_global_cmvn_and_the_checkpoint_streams_as_it_transcribes(streaming_checkpoint, corpus):
    from asrforge.checkpoint import load_checkpoint

    recipe = load_checkpoint(streaming_checkpoint)["recipe"]
    assert recipe["features"]["cmvn"] == "global" and len(recipe["features"]["global_mean"]) == 40
    assert all(s > 0 for s in recipe["features"]["global_std"])
    transcriber = Transcriber.from_checkpoint(streaming_checkpoint)
    wave = spoken("three one four", seed=5)
    offline = transcriber.transcribe(wave)
    events = stream_through(NativeStreamingRecognizer(transcriber, NEVER), wave, 2000)
    assert " ".join(e.text for e in events if e.type == "final") == offline.text


def test_stream_command_with_a_streaming_model(streaming_checkpoint, tmp_path, monkeypatch, capsys):
    from asrforge.cli import main

    path = write_wav(tmp_path / "digits.wav", np.concatenate([spoken("seven two", seed=1), np.zeros(SR, np.float32)]))
    monkeypatch.setattr(sys, "argv", ["asrforge", "stream", "--model", str(streaming_checkpoint), str(path),
                                      "--output-format", "jsonl", "--chunk-ms", "160", "--output-dir", str(tmp_path),
                                      "--endpoint-silence", "100"])       # one utterance: the offline one
    main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(e["type"] in ("partial", "final") for e in lines)
    offline = Transcriber.from_checkpoint(streaming_checkpoint).transcribe(str(path))
    assert " ".join(e["text"] for e in lines if e["type"] == "final") == offline.text
    assert (tmp_path / "digits.srt").is_file() and json.loads((tmp_path / "digits.json").read_text())["text"] == offline.text


def test_websocket_streams_of_a_streaming_model_share_one_engine_and_give_its_finals(streaming_checkpoint):
    from concurrent.futures import ThreadPoolExecutor

    from serve_fixtures import RunningServer
    from test_streaming import live, pcm16

    from asrforge.serve.app import ServerConfig

    wave = np.concatenate([spoken("four nine", seed=2), np.zeros(SR, np.float32), spoken("six", seed=3),
                           np.zeros(SR, np.float32)])
    audio = pcm16(wave)
    samples = np.frombuffer(audio, "<i2").astype(np.float32) / 32768.0
    with RunningServer(ServerConfig(models={"rnnt": str(streaming_checkpoint)}, max_streams=3)) as server:
        server.wait_ready()
        engine = streaming_engine(Transcriber.from_checkpoint(streaming_checkpoint))
        expected = server.internals.scheduler.call(stream_through, engine, samples, 3200).result(timeout=120)
        expected_finals = [e.to_dict() for e in expected if e.type == "final"]
        assert expected_finals and all(e["words"] for e in expected_finals)
        frames = [audio[k: k + 3201] for k in range(0, len(audio), 3201)]
        with ThreadPoolExecutor(3) as pool:
            runs = list(pool.map(lambda _: live(server, {"model": "rnnt"}, frames), range(3)))
        for got in runs:
            assert got[0] == {"type": "ready"} and got[-2:] == [{"type": "done"}, {"closed": 1000}]
            assert [m for m in got if m.get("type") == "final"] == expected_finals
        assert server.internals.live.groups == {}          # the streams left, and their shared engine with them
        got = live(server, {"model": "rnnt", "language": "en"}, [])
        assert got[0]["type"] == "error" and "language" in got[0]["message"] and got[-1] == {"closed": 1008}
