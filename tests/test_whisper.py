"""Whisper: checkpoint formats, agreement with Hugging Face transformers, the KV cache, decoding rules,
long-form segmentation and fallback, output writers, and the CLI. All on tiny random checkpoints."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from whisper_fixtures import tiny_whisper

from asrforge.cli import main
from asrforge.decoding.whisper import (BeamSearchDecoder, DecodeResult, TimestampRules, WhisperDecodeOptions,
                                       compression_ratio, decode)
from asrforge.errors import CheckpointError, ConfigError
from asrforge.features.whisper import N_FRAMES, N_SAMPLES, log_mel_spectrogram, pad_or_trim
from asrforge.inference import Result, Segment, load_model
from asrforge.inference import whisper as whisper_inference
from asrforge.inference import whisper_windows
from asrforge.inference.whisper import WhisperTranscriber
from asrforge_runtime.writers import to_srt, to_tsv, to_txt, to_vtt
from asrforge.models.whisper import DecoderCache, load_whisper_checkpoint, save_ctranslate2, save_huggingface, save_openai
from asrforge.text.whisper import WhisperTokenizer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("whisper")
    model, tok = tiny_whisper(folder)
    return model, tok, folder


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    """The tiny model written in every format: name -> path."""
    model, tok, folder = tiny
    out = tmp_path_factory.mktemp("formats")
    save_openai(model, out / "openai" / "tiny.pt")
    (out / "openai" / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes())
    save_huggingface(model, out / "hf", [folder / "tokenizer.json"])
    for q in ("float32", "float16", "int8"):
        save_ctranslate2(model, out / f"ct2-{q}", q, tokenizer_files=[folder / "tokenizer.json"])
    return {"openai": out / "openai" / "tiny.pt", "hf": out / "hf", **{f"ct2-{q}": out / f"ct2-{q}" for q in ("float32", "float16", "int8")}}


def mel_window(seed: int = 0, seconds: float = 2.0, n_mels: int = 80) -> torch.Tensor:
    audio = np.random.default_rng(seed).normal(0, 0.1, int(16000 * seconds)).astype(np.float32)
    return pad_or_trim(log_mel_spectrogram(audio, n_mels))[None]


# ------------------------------------------------------------ checkpoints

# tolerance relative to each tensor's largest value: fp16 rounding, or half an int8 step (max / 254)
@pytest.mark.parametrize("fmt,tol", [("openai", 0.0), ("hf", 0.0), ("ct2-float32", 0.0), ("ct2-float16", 5e-4), ("ct2-int8", 4e-3)])
def test_every_format_loads_the_same_weights(tiny, saved, fmt, tol):
    model = tiny[0]
    loaded = load_whisper_checkpoint(saved[fmt])
    assert loaded.dims == model.dims
    rebuilt = loaded.build().state_dict()
    for name, value in model.state_dict().items():
        assert torch.allclose(rebuilt[name], value, atol=tol * float(value.abs().max()), rtol=0), name
    assert loaded.build().alignment_heads == [(1, 0), (1, 1)]


def test_reads_int8_scales_and_fused_projections(saved):
    from asrforge.models.whisper.checkpoints import read_ct2_variables

    spec, v = read_ct2_variables(saved["ct2-int8"] / "model.bin")
    assert spec == "WhisperSpec"
    assert v["decoder/layer_0/self_attention/linear_0/weight"].dtype == np.int8
    assert v["decoder/layer_0/self_attention/linear_0/weight"].shape == (96, 32)       # q, k, v stacked
    assert v["decoder/layer_0/attention/linear_1/weight_scale"].shape == (64,)         # k, v of the audio
    assert v["decoder/projection/weight"] is v["decoder/embeddings/weight"]            # alias resolved


def test_a_truncated_ctranslate2_file_is_named_as_such(saved, tmp_path):
    folder = tmp_path / "cut"
    folder.mkdir()
    for f in saved["ct2-float16"].iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.*supported Whisper formats"):
        load_whisper_checkpoint(folder)


def test_logits_match_huggingface_transformers(tiny, saved):
    transformers = pytest.importorskip("transformers")
    model = tiny[0]
    hf = transformers.WhisperForConditionalGeneration.from_pretrained(str(saved["hf"])).eval()
    mel = mel_window()
    tokens = torch.tensor([[tiny[1].sot, tiny[1].special("<|en|>"), tiny[1].transcribe, 5, 77, 120]])
    with torch.no_grad():
        ours = model(mel, tokens)
        theirs = hf(input_features=mel, decoder_input_ids=tokens).logits
    assert ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()


def test_kv_cache_gives_the_same_logits_as_a_full_pass(tiny):
    model = tiny[0]
    audio = model.embed_audio(mel_window())
    tokens = torch.randint(0, 300, (1, 9))
    with torch.no_grad():
        full, _ = model.decoder(tokens, audio)
        cache = DecoderCache()
        step0, _ = model.decoder(tokens[:, :4], audio, cache)
        rest = [model.decoder(tokens[:, i:i + 1], None, cache)[0] for i in range(4, 7)]
        chunk, _ = model.decoder(tokens[:, 7:], None, cache)       # two new tokens after a filled cache
    incremental = torch.cat([step0, *rest, chunk], dim=1)
    assert torch.allclose(full, incremental, atol=1e-5)
    # three rows (beams) sharing one audio's cached keys/values give the rows' own full-pass logits
    rows = torch.randint(0, 300, (3, 5))
    with torch.no_grad():
        separate, _ = model.decoder(rows, audio.expand(3, -1, -1))
        shared_cache = DecoderCache()
        shared_cache.cross_kv = model.decoder.cross_kv(audio)
        shared, _ = model.decoder(rows, None, shared_cache)
    assert torch.allclose(separate, shared, atol=1e-5)


def test_corrupt_or_foreign_files_get_one_message_listing_the_formats(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.bin").write_bytes(b"\x06\x00\x00\x00garbage")
    (tmp_path / "bad" / "config.json").write_text("{}")
    (tmp_path / "x.pt").write_bytes(b"not a zip")
    torch.save({"something": 1}, tmp_path / "y.pt")
    for path in (tmp_path / "bad", tmp_path / "x.pt", tmp_path / "y.pt", tmp_path):
        with pytest.raises(CheckpointError, match="supported Whisper formats"):
            load_whisper_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_whisper_checkpoint(tmp_path / "missing")


# ------------------------------------------------------------ decoding

def test_beam_one_equals_greedy_and_beams_are_ranked(tiny):
    model, tok, _ = tiny
    feats = model.embed_audio(torch.cat([mel_window(1), mel_window(2)]))
    greedy = decode(model, tok, feats, WhisperDecodeOptions(language="en", sample_len=20))
    beam1 = decode(model, tok, feats, WhisperDecodeOptions(language="en", sample_len=20, beam_size=1))
    assert [r.tokens for r in greedy] == [r.tokens for r in beam1]
    beam4 = decode(model, tok, feats, WhisperDecodeOptions(language="en", sample_len=20, beam_size=4))
    for r in beam4:
        assert len(r.tokens) <= 20 and tok.eot not in r.tokens
        assert r.avg_logprob == pytest.approx(r.sum_logprob / (len(r.tokens) + 1))


def test_timestamp_rules():
    class Tok:
        eot, no_timestamps, timestamp_begin = 10, 11, 12
    rules = TimestampRules(Tok(), sample_begin=2, max_initial_index=3)
    V = 30
    # first sampled position: only timestamps, at most 3 steps in
    logits = torch.zeros(1, V)
    rules.apply(logits, torch.tensor([[0, 1]]))
    assert torch.isinf(logits[0, :12]).all() and torch.isfinite(logits[0, 12:16]).all() and torch.isinf(logits[0, 16:]).all()
    # <|t3|> then text: the closing timestamp must be later than t3 (no zero-length segment)
    logits = torch.zeros(1, V)
    logits[0, 3] = 5.0                                 # text likelier than all timestamps together
    rules.apply(logits, torch.tensor([[0, 1, 15, 3]]))
    assert torch.isinf(logits[0, 12:16]).all() and torch.isfinite(logits[0, 16]) and torch.isfinite(logits[0, 3])
    # an opening then a closing timestamp: text must follow (no third timestamp in a row)
    logits = torch.zeros(1, V)
    rules.apply(logits, torch.tensor([[0, 1, 13, 3, 16, 17]]))
    assert torch.isinf(logits[0, 12:]).all() and torch.isfinite(logits[0, :10]).all()
    # text then one timestamp: must close with a timestamp or end
    logits = torch.zeros(1, V)
    logits[0, 10] = 5.0
    rules.apply(logits, torch.tensor([[0, 1, 13, 3, 16]]))
    assert torch.isinf(logits[0, :10]).all() and torch.isfinite(logits[0, 10])
    # timestamps likelier together than any text token: forced
    logits = torch.zeros(1, V)
    logits[0, 5] = 2.0
    rules.apply(logits, torch.tensor([[0, 1, 13, 3]]))
    assert torch.isinf(logits[0, :12]).all()


def test_beam_search_collects_finished_hypotheses_with_patience():
    search = BeamSearchDecoder(beam_size=2, eot=9, patience=2.0)
    assert search.max_candidates == 4
    tokens = torch.tensor([[1], [1]])
    logits = torch.full((2, 10), -10.0)
    logits[:, 9], logits[:, 3], logits[:, 4] = 0.0, -0.5, -1.0       # eot likeliest
    cache = DecoderCache()
    sums = torch.zeros(2)
    tokens, done = search.update(tokens, logits, sums, cache)
    assert done == [False]                            # one finished candidate, four wanted
    assert tokens.tolist() == [[1, 3], [1, 4]]        # eot left the beam, the next two stay
    assert list(search.finished[0]) == [(1, 9)]


def test_compression_ratio_flags_loops():
    assert compression_ratio("the the the the the the the the the the the the the the") > 2.4
    assert compression_ratio("ask not what your country can do for you") < 2.4


# ------------------------------------------------------------ long form

def fake_result(tokens, temperature=0.0, avg_logprob=-0.2, no_speech=0.01, ratio=1.0):
    return DecodeResult(tokens=tokens, text="", language="en", language_probs=None, avg_logprob=avg_logprob,
                        sum_logprob=0.0, no_speech_prob=no_speech, temperature=temperature, compression_ratio=ratio)


def patch_decode(monkeypatch, fake):
    """Replace window decoding everywhere the sequential mode calls it: the first windows' batch and the fallback."""
    monkeypatch.setattr(whisper_inference, "decode", fake)
    monkeypatch.setattr(whisper_windows, "decode", fake)


def test_windows_seek_by_timestamps_and_fall_back_on_loops(tiny, monkeypatch):
    model, tok, _ = tiny
    pipe = WhisperTranscriber(model, tok)
    tb = tok.timestamp_begin
    word = tok.encode(" fox")
    calls = []

    def fake_decode(model_, tok_, features, options, languages=None):
        calls.append(options.temperature)
        window = len([c for c in calls if c == 0.0])
        if window == 1 and options.temperature == 0.0:
            return [fake_result(word * 3, ratio=5.0)]          # looks like a loop: must retry warmer
        if window == 1:
            # two segments; the second is unfinished (no closing timestamp) so the next window starts at 10 s
            return [fake_result([tb + 0, *word, tb + 250, tb + 250, *word, tb + 500, tb + 500, *word], options.temperature)]
        return [fake_result([tb + 0, *word, tb + 100], options.temperature)]

    patch_decode(monkeypatch, fake_decode)
    audio = np.zeros(16000 * 40, dtype=np.float32)
    result = pipe.transcribe(audio, language="en")
    assert calls[:2] == [0.0, 0.2]
    starts = [(s.start, s.end, s.seek) for s in result.segments]
    assert starts[0] == (0.0, 5.0, 0) and starts[1] == (5.0, 10.0, 0)
    assert starts[2] == (10.0, 12.0, 1000)           # the second window began where the last closed segment ended
    assert result.segments[0].temperature == 0.2
    assert result.text == " fox fox fox"              # the unfinished third segment of window 1 was dropped


def test_when_every_temperature_fails_the_likeliest_non_looping_attempt_is_kept(tiny, monkeypatch):
    model, tok, _ = tiny
    tb = tok.timestamp_begin
    scores = {0.0: (5.0, -0.1), 0.2: (1.0, -1.5), 0.4: (1.0, -2.0), 0.6: (1.0, -1.8), 0.8: (1.0, -3.0), 1.0: (1.0, -2.5)}
    seen = []

    def fake_decode(model_, tok_, features, options, languages=None):
        seen.append(options.temperature)
        ratio, lp = scores[options.temperature]
        return [fake_result([tb, *tok.encode(" fox"), tb + 50], options.temperature, avg_logprob=lp, ratio=ratio)]

    patch_decode(monkeypatch, fake_decode)
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(16000 * 5, dtype=np.float32), language="en")
    assert seen == list(scores)                       # every temperature was tried
    assert result.segments[0].temperature == 0.2


def test_silent_windows_give_an_empty_result(tiny, monkeypatch):
    model, tok, _ = tiny
    patch_decode(monkeypatch, lambda *a, **k: [fake_result([tok.timestamp_begin, *tok.encode(" you"), tok.timestamp_begin + 50],
                                                            avg_logprob=-1.5, no_speech=0.9)])
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(16000 * 45, dtype=np.float32), language="en")
    assert result.text == "" and result.segments == []


def test_a_confident_loop_is_decoded_again_even_when_no_speech_is_likely(tiny, monkeypatch):
    """Silence is a likely no-speech token *and* an unlikely text; a loop the model is sure of is neither."""
    model, tok, _ = tiny
    tb, fox = tok.timestamp_begin, tok.encode(" fox")
    temperatures = []

    def fake_decode(model_, tok_, features, options, languages=None):
        temperatures.append(options.temperature)
        if options.temperature == 0.0:
            return [fake_result([tb, *fox * 40, tb + 100], avg_logprob=-0.1, no_speech=0.9, ratio=8.0)]
        return [fake_result([tb, *tok.encode(" dog"), tb + 100], options.temperature, avg_logprob=-0.5, no_speech=0.9)]

    patch_decode(monkeypatch, fake_decode)
    result = WhisperTranscriber(model, tok).transcribe(np.zeros(16000 * 5, dtype=np.float32), language="en")
    assert temperatures == [0.0, 0.2] and result.text.strip() == "dog"


def test_real_decoding_on_tiny_model_runs_end_to_end(tiny):
    model, tok, _ = tiny
    pipe = WhisperTranscriber(model, tok)
    audio = np.random.default_rng(0).normal(0, 0.05, 16000 * 3).astype(np.float32)
    for options in ({}, {"beam_size": 3}, {"temperature": 0.5, "best_of": 2}, {"language": "de", "task": "translate"},
                    {"initial_prompt": "a fox", "without_timestamps": True}):
        result = pipe.transcribe(audio, **options)
        assert set(result.to_dict()) >= {"text", "segments", "language", "duration"}
        for s in result.segments:
            assert 0 <= s.start < s.end and s.tokens
    assert pipe.transcribe(audio, language="de").language == "de"
    lang, probs = pipe.detect_language(audio)
    assert lang in ("en", "de", "fr") and math.isclose(sum(probs.values()), 1.0, rel_tol=1e-5)
    with pytest.raises(ConfigError, match="unknown language 'xx'"):
        pipe.transcribe(audio, language="xx")
    with pytest.raises(ConfigError, match="unknown Whisper option"):
        pipe.transcribe(audio, beam=3)


def test_seeded_sampling_draws_the_same_tokens_and_sample_len_bounds_a_window(tiny):
    from asrforge.decoding.whisper import GreedyDecoder
    from asrforge.models.whisper.model import DecoderCache

    logits = torch.zeros(16, 1000)          # flat: every draw is a fresh choice among 1000 tokens

    def draw(seed):
        tokens = torch.zeros(16, 1, dtype=torch.long)
        return GreedyDecoder(1.0, 999, 1, seed).update(tokens, logits.clone(), torch.zeros(16), DecoderCache())[0]

    assert torch.equal(draw(7), draw(7)) and not torch.equal(draw(7), draw(8))
    model, tok, _ = tiny
    audio = np.random.default_rng(1).normal(0, 0.05, 16000 * 3).astype(np.float32)
    full = WhisperTranscriber(model, tok).transcribe(audio, language="en", temperature=1.0, seed=7)
    bounded = WhisperTranscriber(model, tok).transcribe(audio, language="en", temperature=1.0, seed=7, sample_len=6)
    assert max(len(s.tokens) for s in full.segments) > 7 and all(len(s.tokens) <= 7 for s in bounded.segments)


def test_log_mel_matches_the_reference_definition():
    librosa = pytest.importorskip("librosa")
    audio = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    ours = log_mel_spectrogram(audio, 80).numpy()
    stft = librosa.stft(audio, n_fft=400, hop_length=160, window="hann", center=True, pad_mode="reflect")
    power = np.abs(stft[:, :-1]) ** 2
    mel = librosa.filters.mel(sr=16000, n_fft=400, n_mels=80) @ power
    ref = np.log10(np.maximum(mel, 1e-10))
    ref = (np.maximum(ref, ref.max() - 8.0) + 4.0) / 4.0
    assert ours.shape == (80, 100) and np.abs(ours - ref).max() < 1e-4
    assert log_mel_spectrogram(audio, 128).shape == (128, 100)
    # computed in blocks (bounded memory on long files), the same numbers
    longer = np.random.default_rng(1).normal(0, 0.1, 16000 * 7 + 123).astype(np.float32)
    whole = log_mel_spectrogram(longer, padding=N_SAMPLES)
    assert torch.allclose(log_mel_spectrogram(longer, padding=N_SAMPLES, block_frames=251), whole, atol=1e-5)
    assert pad_or_trim(torch.zeros(80, 10)).shape == (80, N_FRAMES) and N_SAMPLES == 480000


# ------------------------------------------------------------ writers, API, CLI

RESULT = Result(" Hello there. General --> Kenobi", [Segment(0.0, 1.5, " Hello there."),
                                                     Segment(3661.25, 3662.004, " General --> Kenobi")])


def test_writers_match_openai_whisper_layouts():
    assert to_txt(RESULT) == "Hello there.\nGeneral --> Kenobi\n"
    assert to_srt(RESULT) == ("1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
                              "2\n01:01:01,250 --> 01:01:02,004\nGeneral -> Kenobi\n\n")
    assert to_vtt(RESULT) == ("WEBVTT\n\n00:00.000 --> 00:01.500\nHello there.\n\n"
                              "01:01:01.250 --> 01:01:02.004\nGeneral -> Kenobi\n\n")
    assert to_tsv(RESULT) == "start\tend\ttext\n0\t1500\tHello there.\n3661250\t3662004\tGeneral --> Kenobi\n"


def test_load_model_serves_both_kinds(saved, trained, tmp_path, capsys):
    audio = np.random.default_rng(1).normal(0, 0.05, 16000 * 2).astype(np.float32)
    whisper = load_model(saved["ct2-float32"])
    own = load_model(trained)
    for m in (whisper, own):
        result = m.transcribe(audio)
        assert isinstance(result.text, str) and isinstance(result.segments, list) and result.duration == 2.0
    # the tiny checkpoint's vocabulary is English-only-sized; with a multilingual tokenizer it offers more
    assert (whisper.tasks, whisper.languages, own.tasks, own.languages) == (("transcribe",), ("en",), ("transcribe",), ())
    multilingual = WhisperTranscriber(whisper.model, WhisperTokenizer.from_folder(saved["hf"], multilingual=True))
    assert multilingual.tasks == ("transcribe", "translate") and multilingual.languages == ("en", "de", "fr")
    with pytest.raises(ConfigError, match="cannot translate"):
        whisper.check_options(task="translate")
    assert whisper.word_timestamps and own.word_timestamps and not (whisper.streaming or own.streaming)
    assert whisper.sample_rate == own.sample_rate == 16000
    with pytest.raises(ConfigError, match="takes no language option"):
        own.transcribe(audio, language="en")
    with pytest.raises(ConfigError, match="translation needs a multilingual Whisper"):
        own.check_options(task="translate")
    own.check_options(language="auto", task="transcribe", temperature=0.0)     # what it can honour passes
    with pytest.raises(ConfigError, match="apply to Whisper checkpoints only"):
        own.check_options(best_of=3)
    wav = tmp_path / "a.wav"
    sf.write(wav, audio, 16000)
    assert main(["transcribe", str(wav), str(wav), "--model", str(trained), "--temperature", "0.2"]) == 2
    err = capsys.readouterr().err
    assert "temperature: an asrforge model decodes by search, not by sampling" in err and "skipped" not in err
    # subtitles of several recordings printed one after another could not be told apart
    sf.write(tmp_path / "b.wav", audio, 16000)
    assert main(["transcribe", str(wav), str(tmp_path / "b.wav"), "--model", str(trained), "--output-format", "srt"]) == 2
    assert "--output-format srt prints one document per recording; for 2 recordings give --output-dir" \
        in capsys.readouterr().err
    assert main(["transcribe", str(wav), str(tmp_path / "b.wav"), "--model", str(trained), "--output-format", "srt",
                 "--output-dir", str(tmp_path / "subs")]) == 0
    assert sorted(p.name for p in (tmp_path / "subs").iterdir()) == ["a.srt", "b.srt"]
    assert main(["transcribe", str(wav), "--model", str(trained), "--output-format", "all"]) == 2   # printed only txt
    assert "--output-format all writes five files per recording" in capsys.readouterr().err

def test_int8_quantizes_every_linear_layer_and_stays_close(tiny, saved):
    from asrforge.nn.int8 import DynamicInt8Linear, Int8Embedding, RowwiseInt8Linear

    int8 = load_model(saved["openai"], dtype="int8")
    model = int8.model
    assert not [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not isinstance(m, DynamicInt8Linear)]
    # the layers that read the audio quantize their inputs per row; the decoding step's use PyTorch's kernels,
    # the vocabulary projection included; every weight has one scale per output row
    audio_side = [*model.encoder.modules()] + [m for b in model.decoder.blocks for m in (b.cross_attn.key, b.cross_attn.value)]
    assert all(isinstance(m, RowwiseInt8Linear) for m in audio_side if hasattr(m, "in_features"))
    step = [m for m in model.decoder.modules() if isinstance(m, DynamicInt8Linear)]
    # per layer: query, key, value and output of self-attention, query and output of cross-attention, the MLP's two
    assert len(step) == 8 * len(model.decoder.blocks) + 1 and model.decoder.output_projection in step
    assert all(m.weight().qscheme() == torch.per_channel_affine for m in step)
    # the embedding lookup reads the projection's own int8 rows, so the float table is gone
    embedding = model.decoder.token_embedding
    assert isinstance(embedding, Int8Embedding) and embedding.weight.dtype == torch.int8
    assert torch.equal(embedding.weight, model.decoder.output_projection.weight().int_repr())
    mel, tokens = mel_window(3), torch.tensor([[tiny[1].sot, 5, 77]])
    with torch.no_grad():
        ref, got = tiny[0](mel, tokens), model(mel, tokens)
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.parametrize("dtype,tol", [("bfloat16", 0.02), ("float16", 0.005)])
def test_half_precision_runs_and_stays_close(tiny, saved, dtype, tol):
    """The GPU dtypes, exercised on the CPU (no GPU in CI): the weights are cast, LayerNorm and the logits
    stay float32, and the logits stay within the dtype's rounding of the float32 model's."""
    half = load_model(saved["openai"], dtype=dtype)
    assert half.model.encoder.conv1.weight.dtype == getattr(torch, dtype)
    mel, tokens = mel_window(4), torch.tensor([[tiny[1].sot, 5, 77]])
    with torch.no_grad():
        ref, got = tiny[0](mel, tokens), half.model(mel, tokens)
    assert got.dtype == torch.float32
    assert (got - ref).abs().max() < tol * ref.abs().max()
    result = half.transcribe(np.random.default_rng(3).normal(0, 0.05, 16000).astype(np.float32), language="en",
                             beam_size=2)
    assert isinstance(result.text, str) and all(s.end >= s.start for s in result.segments)


def test_cli_transcribe_writes_every_format(saved, tmp_path, capsys):
    wav = tmp_path / "talk.wav"
    sf.write(wav, np.random.default_rng(2).normal(0, 0.05, 16000 * 2).astype(np.float32), 16000)
    out = tmp_path / "out"
    assert main(["transcribe", str(wav), "--model", str(saved["hf"]), "--language", "en", "--beam-size", "2",
                 "--output-format", "all", "--output-dir", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"talk.{f}" for f in ("json", "srt", "tsv", "txt", "vtt")]
    data = json.loads((out / "talk.json").read_text())
    assert set(data) >= {"text", "segments", "language"} and data["language"] == "en"
    assert main(["transcribe", str(wav), "--model", str(saved["hf"]), "--language", "klingon"]) == 2
    assert "unknown language 'klingon'" in capsys.readouterr().err
    assert main(["transcribe", str(wav), "--model", str(tmp_path)]) == 2
    # an option of asrforge's own models is refused once, up front, not as a skip per file
    capsys.readouterr()
    assert main(["transcribe", str(wav), str(wav), "--model", str(saved["hf"]), "--max-segment-s", "5"]) == 2
    err = capsys.readouterr().err
    assert "max_segment_s is for asrforge models" in err and "skipped" not in err


@pytest.mark.skipif(not os.environ.get("ASRFORGE_WHISPER_MODEL"), reason="set ASRFORGE_WHISPER_MODEL to a real Whisper checkpoint")
def test_real_checkpoint_transcribes_speech_and_ignores_silence():
    """Real weights (any of the three formats): speech gives words, silence and noise give nothing."""
    pipe = load_model(os.environ["ASRFORGE_WHISPER_MODEL"])
    assert pipe.transcribe(np.zeros(16000 * 20, dtype=np.float32)).text == ""
    noise = np.random.default_rng(0).normal(0, 0.01, 16000 * 20).astype(np.float32)
    assert pipe.transcribe(noise).text.strip() == ""
    sample = Path(__file__).resolve().parents[2] / "shared" / "data" / "english" / "jfk.flac"
    if sample.is_file():
        assert "fellow Americans" in pipe.transcribe(str(sample)).text


GOLDEN_OPTIONS = {"greedy": {}, "greedy_no_ts": {"without_timestamps": True}, "beam3": {"beam_size": 3},
                  "beam3_no_ts": {"beam_size": 3, "without_timestamps": True},
                  "beam2_patience2": {"beam_size": 2, "patience": 2.0}}


@pytest.mark.parametrize("name", GOLDEN_OPTIONS)
def test_decoding_gives_the_tokens_it_gave_before_and_alone(tmp_path, name):
    """Windows that end at different steps leave the batch as they finish; neither that nor any other speed-up may
    change a token: the recorded tokens (tests/whisper_golden_tokens.json) are given again, batched and alone."""
    golden = json.loads((Path(__file__).parent / "whisper_golden_tokens.json").read_text())["decodes"][name]
    model, tok = tiny_whisper(tmp_path)
    with torch.no_grad():
        model.decoder.token_embedding.weight[tok.eot] *= 6      # end-of-text likely enough to end at different steps
        for block in model.decoder.blocks:
            block.cross_attn.out.weight *= 3                   # the audio steers the text, so windows differ
    feats = torch.randn(4, 1500, 32, generator=torch.Generator().manual_seed(0)) * torch.tensor([0.5, 1.0, 2.0, 4.0])[:, None, None]
    options = WhisperDecodeOptions(language="en", sample_len=40, **GOLDEN_OPTIONS[name])
    batched = decode(model, tok, feats, options)
    assert [r.tokens for r in batched] == golden["tokens"]
    assert [r.sum_logprob for r in batched] == pytest.approx(golden["sum_logprob"], abs=2e-4)
    alone = [decode(model, tok, feats[i: i + 1], options)[0].tokens for i in range(4)]
    assert alone == golden["tokens"]
