"""``asrforge serve``: the official ``openai`` client against a real server on a loopback port, every response
format, streaming, translations, the model list, OpenAI's errors, malformed uploads, concurrency, cancellation,
the queue limit, readiness, idle unloading and metrics. Models: the tiny random Whisper and a seeded untrained CTC
model (it says a different string for every recording, so a swapped or lost answer shows)."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from serve_fixtures import SR, RunningServer, load_multilingual, spoken, write_wav

from asrforge.inference import load_model
from asrforge.serve.app import ServerConfig

KEY = "test-key-1234"


@pytest.fixture(scope="module")
def audio(tmp_path_factory):
    """Three short recordings and one of 70 s (speech with pauses: cut into pieces by the server)."""
    folder = tmp_path_factory.mktemp("audio")
    texts = ["ask not what your country can do for you", "the quick brown fox jumps over the lazy dog",
             "seven eight nine zero one two three"]
    files = [write_wav(folder / f"short{i}.wav", spoken(t, seed=i)) for i, t in enumerate(texts)]
    pause = np.zeros(SR, dtype=np.float32)
    long_wave = np.concatenate([np.concatenate([spoken(texts[i % 3], seed=i), pause]) for i in range(24)])[: 70 * SR]
    return {"short": files, "long": write_wav(folder / "long.wav", long_wave)}


@pytest.fixture(scope="module")
def server(whisper_pt, babbler, tmp_path_factory):
    temp = tmp_path_factory.mktemp("serve-temp")
    config = ServerConfig(models={"whisper": str(whisper_pt), "ctc": str(babbler)}, api_key=KEY, max_upload_mb=3,
                          temp_dir=str(temp), loader=load_multilingual)
    with RunningServer(config) as running:
        running.wait_ready()
        running.temp = temp
        yield running


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)


def transcribe(client, path, **kw):
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(file=f, **kw)


def post(server, files=None, data=None, key=KEY, path="/v1/audio/transcriptions"):
    return httpx.post(server.url + path, files=files, data=data, headers={"Authorization": f"Bearer {key}"}, timeout=60)


# ---- response formats, granularities, stream, translations ----------------------------------------------------------
def test_json_and_text_give_what_the_recognizer_gives(client, audio, babbler, whisper_pt):
    for model, path in (("ctc", babbler), ("whisper", whisper_pt)):
        expected = load_multilingual(path).transcribe(str(audio["short"][0])).text.strip()
        got = transcribe(client, audio["short"][0], model=model)
        assert got.text == expected and expected
        assert got.usage.type == "duration" and got.usage.seconds == pytest.approx(2.0, abs=1.5)
        assert transcribe(client, audio["short"][0], model=model, response_format="text") == expected + "\n"


def test_srt_vtt_and_verbose_json_have_openais_fields(client, audio):
    srt = transcribe(client, audio["short"][1], model="whisper", response_format="srt")
    assert srt.startswith("1\n00:00:00,000 --> ") and "\n\n" in srt
    vtt = transcribe(client, audio["short"][1], model="whisper", response_format="vtt")
    assert vtt.startswith("WEBVTT\n\n00:00.000 --> ")
    verbose = transcribe(client, audio["short"][1], model="whisper", response_format="verbose_json")
    body = verbose.model_dump()
    assert body["language"] in ("english", "german", "french") and body["duration"] > 1 and body["text"]
    assert body["usage"] == {"type": "duration", "seconds": body["duration"]}
    assert body["words"] is None and body["segments"]
    segment_fields = {"id", "seek", "start", "end", "text", "tokens", "temperature", "avg_logprob", "compression_ratio",
                      "no_speech_prob"}
    for s in body["segments"]:
        assert set(s) == segment_fields and all(s[k] is not None for k in segment_fields)
        assert 0 <= s["start"] <= s["end"] <= body["duration"] + 0.01
    assert json.loads(verbose.model_dump_json())["segments"][0]["tokens"]


def test_both_timestamp_granularities_and_both_field_names(client, server, audio):
    words = transcribe(client, audio["short"][2], model="ctc", response_format="verbose_json",
                       timestamp_granularities=["word"])
    assert words.words and words.segments is None
    assert all(w.word and w.word == w.word.strip() and 0 <= w.start <= w.end for w in words.words)
    both = transcribe(client, audio["short"][2], model="ctc", response_format="verbose_json",
                      timestamp_granularities=["word", "segment"])
    assert both.words and both.segments
    assert " ".join(w.word for w in both.words) == both.text
    with open(audio["short"][2], "rb") as f:    # the plain field name, as some clients send it
        plain = post(server, {"file": ("a.wav", f)}, {"model": "ctc", "response_format": "verbose_json",
                                                       "timestamp_granularities": "word"})
    assert plain.status_code == 200 and [w["word"] for w in plain.json()["words"]] == [w.word for w in words.words]


def test_stream_sends_deltas_then_one_done_event(client, audio):
    whole = transcribe(client, audio["long"], model="ctc").text
    events = list(transcribe(client, audio["long"], model="ctc", stream=True))
    deltas = [e for e in events if e.type == "transcript.text.delta"]
    assert [e.type for e in events][-1] == "transcript.text.done" and len(deltas) >= 2   # 70 s: several pieces
    assert "".join(e.delta for e in deltas) == events[-1].text == whole
    assert events[-1].usage.seconds == pytest.approx(70.0, abs=0.1)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")    # the client marks translations so
def test_translations(client, audio):
    with open(audio["short"][0], "rb") as f:
        result = client.audio.translations.create(file=f, model="whisper", response_format="verbose_json")
    assert result.language == "english" and result.segments is not None
    with open(audio["short"][0], "rb") as f, pytest.raises(openai.BadRequestError, match="translation") as e:
        client.audio.translations.create(file=f, model="ctc")
    assert e.value.body["param"] == "model"


def test_a_long_upload_is_cut_into_pieces_timed_from_the_uploads_start(client, audio):
    result = transcribe(client, audio["long"], model="ctc", response_format="verbose_json",
                        timestamp_granularities=["segment", "word"])
    assert result.duration == pytest.approx(70.0, abs=0.01)
    assert result.segments[-1].end > 40 and [s.id for s in result.segments] == list(range(len(result.segments)))
    starts = [s.start for s in result.segments]
    assert starts == sorted(starts) and all(w.end <= 70.01 for w in result.words)


# ---- models, health, metrics ----------------------------------------------------------------------------------------
def test_models_list_and_retrieve(client, server):
    listed = client.models.list()
    assert [m.id for m in listed.data] == ["whisper", "ctc"]
    ctc = client.models.retrieve("ctc").model_dump()
    assert ctc["object"] == "model" and ctc["loaded"] and ctc["tasks"] == ["transcribe"] and ctc["word_timestamps"]
    assert client.models.retrieve("whisper").model_dump()["tasks"] == ["transcribe", "translate"]
    with pytest.raises(openai.NotFoundError, match="whisper, ctc"):
        client.models.retrieve("nope")
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    assert httpx.get(server.url + "/ready").status_code == 200      # open without the key, for load balancers


def test_metrics_count_requests_audio_and_models(client, server, audio):
    transcribe(client, audio["short"][0], model="ctc")
    assert httpx.get(server.url + "/metrics").status_code == 401     # the key guards metrics too
    text = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
    assert 'asrforge_requests_total{path="/v1/audio/transcriptions",status="200"}' in text
    assert 'asrforge_audio_seconds_total{model="ctc"}' in text and "asrforge_request_seconds_bucket" in text
    assert "asrforge_models_loaded 2.0" in text and "asrforge_queue_requests 0.0" in text


# ---- errors ---------------------------------------------------------------------------------------------------------
def test_errors_are_openais_and_the_client_raises_the_right_exception(client, server, audio):
    with pytest.raises(openai.NotFoundError, match="'nope' is not served here.*whisper, ctc"):
        transcribe(client, audio["short"][0], model="nope")
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="Authorization: Bearer"):
        transcribe(bad, audio["short"][0], model="ctc")
    with pytest.raises(openai.BadRequestError, match="language") as e:
        transcribe(client, audio["short"][0], model="ctc", language="de")
    assert e.value.body["param"] == "language"
    with pytest.raises(openai.BadRequestError, match="prompt") as e:
        transcribe(client, audio["short"][0], model="ctc", prompt="digits")
    assert e.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError, match="sampling") as e:
        transcribe(client, audio["short"][0], model="ctc", temperature=0.5)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError, match="verbose_json"):
        transcribe(client, audio["short"][0], model="ctc", timestamp_granularities=["word"])
    with pytest.raises(openai.BadRequestError, match="unknown language"):
        transcribe(client, audio["short"][0], model="whisper", language="xx")


def malformed_uploads(audio) -> list[tuple[str, dict, dict, int, str]]:
    """(what, files, data, status, words the message must hold)"""
    good = open(audio["short"][0], "rb").read()
    header = bytearray(good[:44])
    header[40:44] = (10**9 * 2).to_bytes(4, "little")          # a data chunk claiming 10^9 16-bit samples
    return [
        ("0 bytes", {"file": ("a.wav", b"")}, {"model": "ctc"}, 400, "empty"),
        ("random bytes", {"file": ("a.wav", np.random.default_rng(0).bytes(5000))}, {"model": "ctc"}, 400, "cannot be decoded"),
        ("a cut header", {"file": ("a.wav", good[:30])}, {"model": "ctc"}, 400, "'a.wav'"),
        ("10^9 samples promised", {"file": ("a.wav", bytes(header) + good[44:4000])}, {"model": "ctc"}, 400, "truncated"),
        ("text named .wav", {"file": ("notes.wav", b"these are my notes, not audio\n" * 20)}, {"model": "ctc"}, 400,
         "'notes.wav'"),
        ("over the limit", {"file": ("big.wav", b"\0" * (4 * 2**20))}, {"model": "ctc"}, 413, "--max-upload-mb"),
        ("no file", None, {"model": "ctc"}, 400, "file is missing"),
        ("no model", {"file": ("a.wav", good)}, {}, 400, "model is missing"),
        ("temperature not a number", {"file": ("a.wav", good)}, {"model": "ctc", "temperature": "warm"}, 400,
         "temperature must be a number"),
        ("unknown response_format", {"file": ("a.wav", good)}, {"model": "ctc", "response_format": "xml"}, 400,
         "json, text, srt, vtt, verbose_json"),
        ("unknown field", {"file": ("a.wav", good)}, {"model": "ctc", "colour": "red"}, 400, "unknown field"),
        ("not multipart", None, None, 400, "multipart/form-data"),
    ]


def test_each_malformed_upload_gets_its_4xx_and_the_server_goes_on(server, audio, client):
    expected = transcribe(client, audio["short"][1], model="ctc").text
    for what, files, data, status, words in malformed_uploads(audio):
        if files is None and data is None:
            r = httpx.post(server.url + "/v1/audio/transcriptions", content=b"hello",
                           headers={"Authorization": f"Bearer {KEY}", "Content-Type": "text/plain"})
        else:
            r = post(server, files, data)
        assert r.status_code == status, (what, r.text)
        error = r.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and words in error["message"], (what, error)
        assert r.headers["x-should-retry"] == "false", what
        assert transcribe(client, audio["short"][1], model="ctc").text == expected, f"after {what}"
    assert list(server.temp.rglob("*.*")) == []       # every upload's copy was removed, also the failed ones


def test_unknown_routes_answer_in_openais_shape(server):
    r = httpx.get(server.url + "/v1/nothing", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404 and "GET /v1/nothing" in r.json()["error"]["message"]


# ---- concurrency ----------------------------------------------------------------------------------------------------
def test_concurrent_clients_each_get_their_own_text(client, audio):
    files = audio["short"] * 3
    expected = {str(p): transcribe(client, p, model="ctc").text for p in audio["short"]}
    with ThreadPoolExecutor(len(files)) as pool:
        got = list(pool.map(lambda p: transcribe(client, p, model="ctc").text, files))
    assert got == [expected[str(p)] for p in files]
    assert len(set(expected.values())) == 3


class SlowRecognizer:
    """A real recognizer whose batches each take ``delay`` seconds longer: makes queueing observable."""

    def __init__(self, inner, delay: float):
        self.inner, self.delay = inner, delay
        self.batches: list[int] = []
        self.started = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def transcribe_batch(self, audio, **options):
        self.started += 1
        time.sleep(self.delay)
        self.batches.append(len(audio))
        return self.inner.transcribe_batch(audio, **options)


def test_queue_limit_cancellation_and_readiness(babbler, audio, tmp_path):
    loaded = threading.Event()
    made: list[SlowRecognizer] = []

    def loader(path):
        loaded.wait(30)
        made.append(SlowRecognizer(load_model(path), 0.4))
        return made[-1]

    config = ServerConfig(models={"ctc": str(babbler)}, max_queue=1, max_batch=1, loader=loader, temp_dir=str(tmp_path))
    with RunningServer(config) as server:
        r = post(server, {"file": ("a.wav", open(audio["short"][0], "rb").read())}, {"model": "ctc"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready" and "Retry-After" in r.headers
        assert httpx.get(server.url + "/ready").status_code == 503
        loaded.set()
        server.wait_ready()
        long_bytes = open(audio["long"], "rb").read()
        # a long request whose client gives up: its remaining pieces are dropped and its slot freed
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(server.url + "/v1/audio/transcriptions", files={"file": ("l.wav", long_bytes)},
                       data={"model": "ctc", "beam_size": "1"}, timeout=0.8)
        deadline = time.monotonic() + 20
        while (not made[0].started or server.internals.scheduler.stats().jobs) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert made[0].started and server.internals.scheduler.stats().jobs == 0
        time.sleep(1.0)
        assert sum(made[0].batches) < 3          # 70 s is 3 pieces; not all of them were decoded
        # one request at a time (--max-queue 1): a second one meanwhile gets 429 with Retry-After
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(post, server, {"file": ("l.wav", long_bytes)}, {"model": "ctc"})
            while not server.internals.scheduler.stats().jobs:
                time.sleep(0.02)
            second = post(server, {"file": ("a.wav", open(audio["short"][0], "rb").read())}, {"model": "ctc"})
            assert first.result().status_code == 200
        assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1
        assert second.json()["error"]["type"] == "rate_limit_exceeded" and "x-should-retry" not in second.headers
    assert list(tmp_path.rglob("*")) == []      # the server's temporary folder went with it


def test_a_short_request_is_decoded_in_the_batch_after_a_long_one_started(babbler, audio, tmp_path):
    made: list[SlowRecognizer] = []

    def loader(path):
        made.append(SlowRecognizer(load_model(path), 0.3))
        return made[-1]

    with RunningServer(ServerConfig(models={"ctc": str(babbler)}, max_batch=1, loader=loader)) as server:
        server.wait_ready()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        with ThreadPoolExecutor(2) as pool:
            long = pool.submit(transcribe, client, audio["long"], model="ctc")
            time.sleep(0.2)
            start = time.monotonic()
            transcribe(client, audio["short"][0], model="ctc")
            short_seconds = time.monotonic() - start
            long.result()
            long_seconds = time.monotonic() - start
    # the long request is 3 pieces of 0.3 s or more each; the short one waited for at most the piece under way
    assert short_seconds < long_seconds and made[0].batches == [1, 1, 1, 1]


def test_an_idle_model_is_unloaded_and_loaded_again(babbler, audio):
    config = ServerConfig(models={"ctc": str(babbler)}, model_ttl=0.2)
    with RunningServer(config) as server:
        server.wait_ready()
        client = openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        first = transcribe(client, audio["short"][0], model="ctc").text
        deadline = time.monotonic() + 10
        while client.models.retrieve("ctc").model_dump()["loaded"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not client.models.retrieve("ctc").model_dump()["loaded"]
        assert transcribe(client, audio["short"][0], model="ctc").text == first


# ---- the command ----------------------------------------------------------------------------------------------------
def test_model_specs_and_the_command_line(capsys, tmp_path):
    from asrforge.cli import main
    from asrforge.serve.models import parse_model_specs

    assert parse_model_specs(["a=/x/y.pt", "/m/exp1", "/m/tiny.pt", "/m/exp2/"]) == {
        "a": "/x/y.pt", "exp1": "/m/exp1", "tiny": "/m/tiny.pt", "exp2": "/m/exp2/"}
    with pytest.raises(ValueError, match="twice"):
        parse_model_specs(["/a/m.pt", "/b/m.pt"])
    assert main(["serve", "--model", f"x={tmp_path / 'missing.pt'}"]) == 2
    assert "missing.pt does not exist" in capsys.readouterr().err


# ---- the scheduler alone --------------------------------------------------------------------------------------------
class Recording:
    """A recognizer that answers each piece with its own first sample and records every batch it was given."""

    languages: tuple = ()

    def __init__(self):
        self.batches: list[list[float]] = []
        self.go = threading.Event()

    def transcribe_batch(self, audio, **options):
        self.go.wait(10)
        self.batches.append([float(a[0]) for a in audio])
        from asrforge_runtime.result import Result, Segment

        return [Result(f"p{int(a[0])}", [Segment(0.0, 1.0, f"p{int(a[0])}")], None, 1.0) for a in audio]


def pieces(first: int, n: int, seconds: int = 1) -> list:
    return [(k * SR * 30, np.full(SR * seconds, first + k, dtype=np.float32)) for k in range(n)]


def test_the_scheduler_takes_a_piece_of_every_request_before_a_second_of_any():
    import asyncio

    from asrforge.serve.scheduler import Job, Scheduler

    async def run():
        loop = asyncio.get_running_loop()
        model, other = Recording(), Recording()
        scheduler = Scheduler(max_queue=8, max_batch=4)
        try:
            long = Job(model, {}, pieces(100, 6), 180.0, loop)
            scheduler.submit(long)
            await asyncio.sleep(0.2)                 # the first batch (4 pieces of the long job alone) is under way
            short = Job(model, {}, pieces(200, 1), 1.0, loop)
            greedy = Job(model, {"beam_size": 3}, pieces(300, 2), 60.0, loop)   # other options: not batched with them
            scheduler.submit(short)
            scheduler.submit(greedy)
            elsewhere = Job(other, {}, pieces(400, 1), 1.0, loop)
            scheduler.submit(elsewhere)
            model.go.set()
            other.go.set()
            results = await asyncio.gather(*(j.future for j in (long, short, greedy, elsewhere)))
        finally:
            scheduler.stop()
        return model.batches, other.batches, results

    batches, other_batches, (long, short, greedy, elsewhere) = asyncio.run(run())
    assert batches[0] == [100, 101, 102, 103]        # alone: as many of its pieces as a batch holds
    assert batches[1] == [104, 200]                   # then a piece of every waiting request with the same options
    assert sorted(sum(batches[2:], [])) == [105, 300, 301]
    assert other_batches == [[400]]
    assert long.text == "p100 p101 p102 p103 p104 p105" and [s.start for s in long.segments] == [0, 30, 60, 90, 120, 150]
    assert short.text == "p200" and greedy.text == "p300 p301" and elsewhere.text == "p400"


class Stepping:
    """A recognizer whose batches take ``steps`` decoding steps, each a yield point, and which logs what it does."""

    languages: tuple = ()

    def __init__(self, log: list, steps: int):
        self.log, self.steps = log, steps

    def transcribe_batch(self, audio, **options):
        from asrforge_runtime.result import Result, Segment
        from asrforge.preempt import yield_point

        names = [int(a[0]) for a in audio]
        self.log.append(("start", names))
        for _ in range(self.steps):
            yield_point()
            time.sleep(0.01)
        self.log.append(("end", names))
        return [Result(f"p{n}", [Segment(0.0, 1.0, f"p{n}")], None, 1.0) for n in names]


def test_a_short_request_arriving_mid_batch_is_decoded_at_the_next_step_and_the_batch_goes_on():
    import asyncio

    from asrforge.serve.scheduler import Job, Scheduler

    async def run():
        loop = asyncio.get_running_loop()
        log: list = []
        model = Stepping(log, steps=40)
        scheduler = Scheduler(max_queue=8, max_batch=4)
        try:
            long = Job(model, {}, pieces(100, 5, seconds=4), 150.0, loop)
            scheduler.submit(long)
            while not log:
                await asyncio.sleep(0.01)
            short = Job(model, {}, pieces(200, 1), 1.0, loop)
            another_short = Job(model, {}, pieces(300, 2, seconds=2), 32.0, loop)
            second_long = Job(model, {}, pieces(400, 2, seconds=4), 60.0, loop)   # as long as the batch: waits
            scheduler.submit(short)
            scheduler.submit(another_short)
            scheduler.submit(second_long)
            results = await asyncio.gather(long.future, short.future, another_short.future, second_long.future)
        finally:
            scheduler.stop()
        return log, results

    log, (long, short, another_short, second_long) = asyncio.run(run())
    # the short newcomers' first pieces ran inside the long batch, between two of its steps, and the batch went on
    # (in one batch, or two when the worker looked between the submissions)
    assert log[0] == ("start", [100, 101, 102, 103])
    first_end = log.index(("end", [100, 101, 102, 103]))
    inside = [names for kind, names in log[1:first_end] if kind == "start"]
    assert sorted(sum(inside, [])) == [200, 300] and len(log[1:first_end]) == 2 * len(inside)
    # then the usual turns: a piece of each request that has some left
    assert sorted(sum((names for kind, names in log[first_end:] if kind == "start"), [])) == [104, 301, 400, 401]
    assert long.text == "p100 p101 p102 p103 p104" and short.text == "p200"
    assert another_short.text == "p300 p301" and second_long.text == "p400 p401"
