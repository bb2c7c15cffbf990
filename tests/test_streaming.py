"""Streaming recognition: the engine's commitments and endpoints (over a recognizer double that knows the words of
the audio it is given), and `asrforge stream` from a file, a pipe and a microphone double (a real model)."""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from asrforge.errors import ConfigError
from asrforge_runtime.result import Result, Segment, Word
from asrforge.inference.streaming import StreamingRecognizer
from asrforge_runtime.stream_events import EndpointRules
from asrforge.inference.vad import VadOptions, speech_spans
from serve_fixtures import spoken, write_wav

SR = 16000


def recording(parts: list) -> np.ndarray:
    """Speech (strings, eSpeak) and silences (seconds), with a faint seeded hiss so every stretch is unique."""
    waves = [spoken(p, seed=i) if isinstance(p, str) else np.zeros(int(p * SR), np.float32) for i, p in enumerate(parts)]
    wave = np.concatenate(waves)
    return wave + np.random.default_rng(0).normal(0, 1e-4, len(wave)).astype(np.float32)


class Scripted:
    """A recognizer double: it finds the audio it is given inside the whole recording, and answers with the script's
    words that lie wholly inside it, timed from its start. A word cut off by the end of the audio while its speech
    goes on comes out wrong ("qword"), as a real model guesses at a clipped word: only agreement may commit it."""

    source, sample_rate, languages, tasks, word_timestamps, streaming = "scripted", SR, (), ("transcribe",), True, False

    def __init__(self, wave: np.ndarray, words_per_span: list[list[str]], prompts: bool = False):
        self.wave, self.prompts = wave, prompts
        self.spans = [(s / SR, e / SR) for s, e in speech_spans(wave, VadOptions(speech_pad_ms=0))]
        assert len(self.spans) == len(words_per_span), self.spans
        self.words = []             # (word, start, end) in recording time: each span's words share it evenly
        for (start, end), names in zip(self.spans, words_per_span):
            step = (end - start) / len(names)
            self.words += [(n, round(start + k * step, 3), round(start + (k + 1) * step - 0.02, 3))
                           for k, n in enumerate(names)]
        self.calls: list[tuple[float, float, str | None]] = []

    def check_options(self, **options):
        if "initial_prompt" in options and not self.prompts:
            raise ConfigError("initial_prompt: this model takes no prompt")

    def locate(self, audio: np.ndarray) -> float:
        head = audio[:256]
        windows = np.lib.stride_tricks.sliding_window_view(self.wave, len(head))
        found = np.flatnonzero((windows == head).all(axis=1))
        assert len(found) == 1
        return found[0] / SR

    def transcribe(self, audio, **options):
        start = self.locate(audio)
        end = start + len(audio) / SR
        self.calls.append((start, end, options.get("initial_prompt")))
        words = []
        for name, a, b in self.words:
            if a >= start - 0.01 and a < end:
                clipped = b > end or (end - b < 0.3 and any(s < end < e - 0.05 for s, e in self.spans))
                if b > end + 0.4:
                    break
                words.append(Word(f" q{name}" if clipped else f" {name}", round(a - start, 3), round(min(b, end) - start, 3)))
        segments = [Segment(0.0, len(audio) / SR, "".join(w.word for w in words), words)] if words else []
        return Result("".join(w.word for w in words).strip(), segments, None, len(audio) / SR)


def replay(engine: StreamingRecognizer, wave: np.ndarray, chunk_s: float = 0.1, rate: int = SR, **stream_options):
    stream = engine.create_stream(**stream_options)
    events = []
    buffered = 0
    step = int(chunk_s * rate)
    for k in range(0, len(wave), step):
        stream.accept_waveform(wave[k: k + step], rate)
        engine.decode_streams([stream])
        events += stream.pop_events()
        buffered = max(buffered, len(stream.buffer))
    stream.finish()
    engine.decode_streams([stream])
    events += stream.pop_events()
    return stream, events, buffered


SCRIPT = ["one two three four five six seven", 2.0, "eight nine zero", 1.5]
WORDS = [["one", "two", "three", "four", "five", "six", "seven"], ["eight", "nine", "zero"]]


@pytest.fixture(scope="module")
def two_utterances():
    return recording(SCRIPT)


def test_each_pause_ends_an_utterance_with_one_final_of_exactly_its_words(two_utterances):
    model = Scripted(two_utterances, WORDS)
    engine = StreamingRecognizer(model, step_s=0.5)
    stream, events, _ = replay(engine, two_utterances)
    finals = [e for e in events if e.type == "final"]
    assert [e.segment for e in finals] == [0, 1]
    assert [[w.word.strip() for w in e.words] for e in finals] == WORDS
    assert [e.text for e in finals] == [" ".join(w) for w in WORDS]
    # timed from the stream's start, as the script says
    assert [t for e in finals for w in e.words for t in (w.start, w.end)] == pytest.approx(
        [t for _, a, b in model.words for t in (a, b)], abs=0.002)
    # partials came first, guesses at clipped words included; a guess never reached a final
    first_final = events.index(finals[0])
    assert any(" q" in " " + e.text for e in events[:first_final] if e.type == "partial")
    assert all(e.type == "partial" for e in events[:first_final]) and " q" not in " " + " ".join(e.text for e in finals)
    assert stream.result().text == "one two three four five six seven eight nine zero"


def test_silence_is_never_decoded(two_utterances):
    model = Scripted(two_utterances, WORDS)
    replay(StreamingRecognizer(model, step_s=0.5), two_utterances)
    for start, end, _ in model.calls:      # every decode held speech
        assert any(s < end and start < e for s, e in model.spans)
    quiet = Scripted(two_utterances, WORDS)
    stream, events, buffered = replay(StreamingRecognizer(quiet), np.random.default_rng(1).normal(0, 1e-3, 30 * SR)
                                      .astype(np.float32))
    assert quiet.calls == [] and events == [] and buffered < SR      # 30 s of hiss: nothing decoded or held


def test_the_prompt_holds_only_committed_text_whose_audio_has_left_the_buffer(two_utterances):
    model = Scripted(two_utterances, WORDS, prompts=True)
    replay(StreamingRecognizer(model, step_s=0.5), two_utterances)
    prompted = [(start, prompt) for start, _, prompt in model.calls if prompt]
    assert prompted and all(prompt == "one two three four five six seven" for _, prompt in prompted)
    assert all(start >= model.spans[0][1] for start, _ in prompted)       # given only once that audio was gone


def test_a_long_utterance_is_cut_at_the_limit_keeping_every_word_and_bounded_memory():
    names = "one two three four five six seven eight nine zero".split()
    wave = recording([" ".join(names * 3), 1.5])
    model = Scripted(wave, [names * 3])
    rules = EndpointRules(max_utterance_s=4.0)
    stream, events, buffered = replay(StreamingRecognizer(model, rules, step_s=0.5, trim_s=3.0), wave)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) >= 2                                    # cut at the limit, mid-speech
    assert [w.word.strip() for e in finals for w in e.words] == names * 3     # nothing lost or said twice
    assert buffered <= (4.0 + 0.5 + 0.1) * SR                  # never more than the limit (and a step) held


def test_audio_at_another_rate_is_resampled_as_it_arrives(two_utterances):
    wave8k = soxr.resample(two_utterances, SR, 8000).astype(np.float32)
    engine = StreamingRecognizer(Scripted(two_utterances, WORDS))
    stream = engine.create_stream()
    for k in range(0, len(wave8k), 800):
        stream.accept_waveform(wave8k[k: k + 800], 8000)
    stream.finish()
    assert abs(stream.received - len(two_utterances)) <= 16
    with pytest.raises(ConfigError, match="finished"):
        stream.accept_waveform(wave8k[:800], 8000)
    other = engine.create_stream()
    other.accept_waveform(wave8k[:800], 8000)
    with pytest.raises(ConfigError, match="sample_rate changed from 8000 to 16000"):
        other.accept_waveform(two_utterances[:1600], 16000)


def test_engine_settings_are_checked(two_utterances):
    model = Scripted(two_utterances, WORDS)
    with pytest.raises(ConfigError, match="max_utterance_s"):
        StreamingRecognizer(model, EndpointRules(max_utterance_s=0))
    with pytest.raises(ConfigError, match="trim_s"):
        StreamingRecognizer(model, trim_s=30.0)
    model.word_timestamps = False
    with pytest.raises(ConfigError, match="word times"):
        StreamingRecognizer(model)


# ---- asrforge stream, with a real (untrained) model ------------------------------------------------------------
@pytest.fixture(scope="module")
def speech_file(tmp_path_factory, two_utterances):
    return write_wav(tmp_path_factory.mktemp("stream") / "two.wav", two_utterances)


def run_stream(capsys, *args, stdin: bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    from asrforge.cli import main

    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(stdin)})())
    code = main(["stream", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_stream_a_file_a_pipe_and_a_microphone_alike(babbler, speech_file, two_utterances, capsys, monkeypatch, tmp_path):
    code, out, err = run_stream(capsys, "--model", str(babbler), str(speech_file), "--output-format", "jsonl",
                                "--output-dir", str(tmp_path))
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert finals and [e["segment"] for e in finals] == list(range(len(finals)))
    assert all(e["start"] <= e["end"] for e in events) and all(e["words"] for e in finals)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["two.json", "two.srt", "two.vtt"]
    assert json.loads((tmp_path / "two.json").read_text())["text"] == " ".join(e["text"] for e in finals)

    held, _ = sf.read(str(speech_file), dtype="int16")     # the very samples the file holds, for the pipe and the mic
    pcm = held.astype("<i2").tobytes()
    heard_samples = held.astype(np.float32) / 32768
    code, piped, err = run_stream(capsys, "--model", str(babbler), "-", "--output-format", "jsonl", stdin=pcm,
                                  monkeypatch=monkeypatch)
    assert code == 0, err
    assert [e["text"] for e in map(json.loads, piped.splitlines()) if e["type"] == "final"] == [e["text"] for e in finals]

    class FakeInput:
        """sounddevice.InputStream's interface: calls back with blocks of the recording, then stops."""

        def __init__(self, samplerate, channels, dtype, device, blocksize, callback):
            assert (samplerate, channels, dtype) == (SR, 1, "float32")
            self.blocks = [heard_samples[k: k + blocksize, None] for k in range(0, len(heard_samples), blocksize)]
            self.callback, self.active = callback, True

        def __enter__(self):
            import threading

            def play():
                for block in self.blocks:
                    self.callback(block, len(block), None, None)
                self.active = False
            threading.Thread(target=play).start()
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("asrforge.audio.live.import_sounddevice", lambda: type("sd", (), {"InputStream": FakeInput}))
    code, heard, err = run_stream(capsys, "--model", str(babbler), "--mic")
    assert code == 0, err
    assert heard.splitlines() == [e["text"] for e in finals]      # text: a final per line


def test_stream_refuses_bad_input_in_one_line(babbler, speech_file, capsys, monkeypatch):
    code, _, err = run_stream(capsys, "--model", str(babbler), "-", stdin=b"\x01\x02\x03", monkeypatch=monkeypatch)
    assert code == 2 and "standard input: the audio ended inside a sample (1 stray byte(s)" in err
    code, _, err = run_stream(capsys, "--model", str(babbler))
    assert code == 2 and "give one source" in err
    code, _, err = run_stream(capsys, "--model", str(babbler), "-", "--realtime")
    assert code == 2 and "--realtime replays a file" in err
    code, _, err = run_stream(capsys, "--model", str(babbler), "missing.wav")
    assert code == 2 and "missing.wav: no such audio file" in err
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sounddevice" else find_spec(name, *a))
    code, _, err = run_stream(capsys, "--model", str(babbler), "--mic")      # sounddevice not installed
    assert code == 2 and "the microphone (--mic) needs sounddevice" in err and "pip install 'asrforge[stream]'" in err


# ---- WS /v1/audio/stream ----------------------------------------------------------------------------------------
def ws_url(server) -> str:
    return server.url.replace("http://", "ws://") + "/v1/audio/stream"


def live(server, settings, frames: list[bytes], headers=None, pace: float = 0.02) -> list[dict]:
    """One stream: settings, frames (one every ``pace`` seconds: faster than speech, but each frame is decoded before
    a second's worth waits, so the server's decode points are those of a live client), end -> every message the
    server sent, up to the close."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    got = []
    with connect(ws_url(server), additional_headers=headers) as ws:
        ws.send(settings if isinstance(settings, str) else json.dumps(settings))
        try:
            got.append(json.loads(ws.recv(timeout=30)))
            if got[-1]["type"] != "ready":
                frames = None
            for frame in frames or []:
                ws.send(frame)
                time.sleep(pace)
            if frames is not None:
                ws.send(json.dumps({"type": "end"}))
            while True:
                got.append(json.loads(ws.recv(timeout=60)))
        except ConnectionClosed:
            got.append({"closed": ws.close_code})
    return got


def pcm16(wave: np.ndarray) -> bytes:
    return (np.clip(wave, -1, 1) * 32767).astype("<i2").tobytes()


def test_websocket_streams_give_what_the_engine_gives_and_bad_ones_are_told_why(babbler, two_utterances, capsys):
    from serve_fixtures import RunningServer

    from asrforge.inference.recognizer import load_model
    from asrforge.serve.app import ServerConfig

    audio = pcm16(two_utterances)
    with RunningServer(ServerConfig(models={"ctc": str(babbler)}, max_streams=2)) as server:
        server.wait_ready()
        # what the engine gives, run on the server's worker thread (an untrained model's near ties could go the
        # other way with another thread's OpenMP settings)
        engine = StreamingRecognizer(load_model(babbler), EndpointRules())
        samples = np.frombuffer(audio, "<i2").astype(np.float32) / 32768.0
        _, expected, _ = server.internals.scheduler.call(replay, engine, samples).result(timeout=120)
        expected_finals = [e.to_dict() for e in expected if e.type == "final"]
        # frames of odd sizes (samples split across frames), from several clients at once
        frames = [audio[k: k + 3201] for k in range(0, len(audio), 3201)]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda _: live(server, {"model": "ctc", "sample_rate": 16000}, frames), range(2)))
        for got in runs:
            assert got[0] == {"type": "ready"} and got[-2] == {"type": "done"} and got[-1] == {"closed": 1000}
            assert [m for m in got if m.get("type") == "final"] == expected_finals
            assert {m["type"] for m in got[1:-2]} <= {"partial", "final"}

        # 8 kHz float32 is resampled as it arrives
        wave8k = soxr.resample(two_utterances, SR, 8000).astype("<f4")
        got = live(server, {"model": "ctc", "sample_rate": 8000, "encoding": "pcm_f32le"}, [wave8k.tobytes()])
        assert got[-2:] == [{"type": "done"}, {"closed": 1000}] and any(m.get("type") == "final" for m in got)

        # bad streams: each gets an error naming what was wrong and a close code; the server goes on
        bad = [("hello", "must be a JSON object", 1003),
               ({"model": "nope"}, "model 'nope' is not served here; this server has ctc", 1008),
               ({"model": "ctc", "sample_rate": 44.1}, "sample_rate must be a whole number", 1008),
               ({"model": "ctc", "encoding": "mp3"}, "encoding 'mp3' is not one of pcm_s16le, pcm_f32le", 1008),
               ({"model": "ctc", "voice": 1}, "unknown setting(s) voice", 1008),
               ({"model": "ctc", "language": "en"}, "language", 1008)]
        for settings, message, code in bad:
            got = live(server, settings, [])
            assert got[0]["type"] == "error" and message in got[0]["message"] and got[-1] == {"closed": code}, got
        got = live(server, {"model": "ctc"}, [audio[:3]])           # an odd number of bytes in all
        assert "the audio ended inside a sample (1 stray byte(s)" in got[-2]["message"] and got[-1] == {"closed": 1008}

        # a client that vanishes mid-stream frees its place
        from websockets.sync.client import connect

        for _ in range(3):
            ws = connect(ws_url(server)).__enter__()
            ws.send(json.dumps({"model": "ctc"}))
            assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
            ws.send(audio[: SR * 2])
            ws.socket.close()                                       # no close handshake: gone
            deadline = time.monotonic() + 10
            while server.internals.live.lag and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not server.internals.live.lag                   # its place is free again

        # at --max-streams, a new stream is told to try later
        holders = [connect(ws_url(server)).__enter__() for _ in range(2)]
        for ws in holders:
            ws.send(json.dumps({"model": "ctc"}))
            assert json.loads(ws.recv(timeout=30)) == {"type": "ready"}
        got = live(server, {"model": "ctc"}, [])
        assert "limit of 2 live streams" in got[0]["message"] and got[-1] == {"closed": 1013}
        for ws in holders:
            ws.close()

        # asrforge stream --server gives what the local engine gives
        from asrforge.cli import main

        wav = Path(tempfile.mkdtemp()) / "two.wav"      # the very samples the streams above sent
        sf.write(str(wav), np.frombuffer(audio, "<i2"), SR, subtype="PCM_16")
        # (--realtime: at speaking pace the server decodes at the points a live client gets; sent as fast as the
        # socket takes them, frames that wait for the worker are decoded together, at other points)
        assert main(["stream", "--model", "ctc", "--server", ws_url(server), str(wav), "--realtime",
                     "--output-format", "jsonl"]) == 0
        out = capsys.readouterr().out
        assert [json.loads(line) for line in out.splitlines() if '"final"' in line] == expected_finals
        assert main(["stream", "--model", "nope", "--server", ws_url(server), str(wav)]) == 2
        assert "model 'nope' is not served here" in capsys.readouterr().err


def test_a_websocket_needs_the_key_when_one_is_set(babbler):
    from serve_fixtures import RunningServer
    from websockets.exceptions import InvalidStatus

    from asrforge.serve.app import ServerConfig

    with RunningServer(ServerConfig(models={"ctc": str(babbler)}, api_key="sesame")) as server:
        server.wait_ready()
        with pytest.raises(InvalidStatus) as refused:
            live(server, {"model": "ctc"}, [])
        assert refused.value.response.status_code == 403
        got = live(server, {"model": "ctc"}, [], headers={"Authorization": "Bearer sesame"})
        assert got[-2:] == [{"type": "done"}, {"closed": 1000}]


def test_a_caller_that_fell_behind_gets_one_decode_per_call_and_the_same_finals(two_utterances):
    model = Scripted(two_utterances, WORDS)
    engine = StreamingRecognizer(model, step_s=0.5)
    stream = engine.create_stream()
    stream.accept_waveform(two_utterances)          # the whole recording at once, as if decoding had stalled
    stream.finish()
    engine.decode_streams([stream])
    finals = [e for e in stream.pop_events() if e.type == "final"]
    assert [[w.word.strip() for w in e.words] for e in finals] == WORDS       # each pause still ends an utterance
    assert len(model.calls) == 2                    # a decode at each endpoint, none of the stale steps between
