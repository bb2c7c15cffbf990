"""``WS /v1/audio/stream``: live audio in, ``partial`` and ``final`` results out (the protocol: docs/streaming.md).

client -> server: first a text message, the stream's settings::

    {"model": NAME, "language": "en" | null, "sample_rate": 16000, "encoding": "pcm_s16le" | "pcm_f32le",
     "task": "transcribe", "beam_size": 5}          # all but model optional

then binary frames of little-endian mono samples, of any size (a sample split across two frames is joined), then
``{"type": "end"}``. server -> client: ``{"type": "ready"}``; ``partial`` and ``final`` events as
:class:`asrforge.inference.streaming.StreamEvent` gives them; ``{"type": "error", "message"}``; after ``end``, the
last finals, ``{"type": "done"}`` and a normal close.

Each stream's audio goes through the server's one worker (:meth:`Scheduler.call`, which a long batch lets in at
its next decoding step), so streams never wait for whole uploads. A server that cannot keep up says so to new
streams (an error and close code 1013, "try again later") instead of falling behind on every one: at
``--max-streams`` live streams, or while a live stream's audio waits more than :data:`MAX_LAG_S` to be decoded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect

from asrforge.audio.live import PcmDecoder
from asrforge.errors import AudioError, ConfigError
from asrforge.inference.streaming import StreamingRecognizer, streaming_engine
from asrforge_runtime.stream_events import AudioStream
from asrforge.serve.errors import ApiError

log = logging.getLogger("asrforge")

ENCODINGS = {"pcm_s16le": "s16le", "pcm_f32le": "f32le"}        # the protocol's names -> PcmDecoder's
SETTINGS = ("model", "language", "sample_rate", "encoding", "task", "beam_size")
PROTOCOL = "asrforge"            # the subprotocol a browser offers beside its key
MAX_LAG_S = 3.0                 # a live stream's audio waiting longer than this to be decoded: the server is behind
CLOSE_NORMAL, CLOSE_UNSUPPORTED, CLOSE_POLICY, CLOSE_ERROR, CLOSE_TRY_LATER = 1000, 1003, 1008, 1011, 1013


class Refusal(Exception):
    """What to tell the client before closing with ``code``."""

    def __init__(self, message: str, code: int = CLOSE_POLICY):
        super().__init__(message)
        self.code = code


class LiveStreams:
    """The live streams, how far behind each is (seconds its audio has waited for the worker), and one engine per
    loaded model that all of its streams share: a worker call for one stream decodes every stream of that engine
    with audio due, in one batch where the engine batches (streaming models encode all their chunks at once)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.lag: dict[int, float] = {}
        self._keys = itertools.count()
        self.groups: dict[int, tuple[object, list[AudioStream]]] = {}   # id(recognizer) -> (engine, its streams)

    def join(self, recognizer, options: dict) -> tuple[object, AudioStream]:
        """A new stream of ``recognizer``'s engine (made with its first stream); ConfigError for options it refuses."""
        engine, members = self.groups.get(id(recognizer)) or (streaming_engine(recognizer), [])
        stream = engine.create_stream(**options)
        self.groups[id(recognizer)] = (engine, members + [stream])
        return engine, stream

    def part(self, recognizer, stream: AudioStream) -> None:
        engine, members = self.groups.get(id(recognizer), (None, []))
        rest = [m for m in members if m is not stream]
        if rest:
            self.groups[id(recognizer)] = (engine, rest)
        else:
            self.groups.pop(id(recognizer), None)

    def peers(self, recognizer) -> list[AudioStream]:
        """The streams sharing ``recognizer``'s engine, as of now (the list is replaced, never changed in place)."""
        return self.groups.get(id(recognizer), (None, []))[1]

    def admit(self) -> int:
        if len(self.lag) >= self.limit:
            raise Refusal(f"the server is at its limit of {self.limit} live streams (--max-streams); try again later",
                          CLOSE_TRY_LATER)
        behind = max(self.lag.values(), default=0.0)
        if behind > MAX_LAG_S:
            raise Refusal(f"the server is {behind:.1f} s behind on its live streams; try again later", CLOSE_TRY_LATER)
        key = next(self._keys)
        self.lag[key] = 0.0
        return key

    def leave(self, key: int) -> None:
        self.lag.pop(key, None)


def settings(text: str | None, served: list[str]) -> dict:
    """The first message -> the stream's settings, or :class:`Refusal` naming the field at fault."""
    try:
        value = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise Refusal('the first message must be a JSON object of the stream\'s settings, e.g. {"model": "'
                      f'{served[0]}", "sample_rate": 16000, "encoding": "pcm_s16le"}}', CLOSE_UNSUPPORTED)
    unknown = sorted(set(value) - set(SETTINGS))
    if unknown:
        raise Refusal(f"unknown setting(s) {', '.join(unknown)}; a stream takes {', '.join(SETTINGS)}")
    model = value.get("model")
    if model not in served:
        raise Refusal(f"model {model!r} is not served here; this server has {', '.join(served)}")
    rate = value.get("sample_rate", 16000)
    if not isinstance(rate, int) or isinstance(rate, bool) or not 8000 <= rate <= 192000:
        raise Refusal(f"sample_rate must be a whole number of samples per second from 8000 to 192000; got {rate!r}")
    encoding = value.get("encoding", "pcm_s16le")
    if encoding not in ENCODINGS:
        raise Refusal(f"encoding {encoding!r} is not one of {', '.join(ENCODINGS)}")
    language = value.get("language")
    if language is not None and not isinstance(language, str):
        raise Refusal(f"language must be a language code or null; got {language!r}")
    task = value.get("task", "transcribe")
    if task not in ("transcribe", "translate"):
        raise Refusal(f"task must be transcribe or translate; got {task!r}")
    beam = value.get("beam_size")
    if beam is not None and (not isinstance(beam, int) or isinstance(beam, bool) or not 1 <= beam <= 64):
        raise Refusal(f"beam_size must be a whole number from 1 to 64; got {beam!r}")
    options = {"language": language, "beam_size": beam}
    if task == "translate":
        options["task"] = "translate"
    return {"model": model, "sample_rate": rate, "encoding": ENCODINGS[encoding],
            "options": {k: v for k, v in options.items() if v is not None}}


def _feed(engine: StreamingRecognizer, stream: AudioStream, samples: np.ndarray | None, rate: int,
          peers: list[AudioStream]) -> list[dict]:
    """On the worker: new audio (None: the end) -> the events it gave. Every stream of the engine (``peers``, this
    one among them: it joined before its first call) is brought up to the audio it has, together; their events
    wait in their own streams for their own calls."""
    if samples is None:
        stream.finish()
    else:
        stream.accept_waveform(samples, rate)
    engine.decode_streams(peers)
    return [e.to_dict() for e in stream.pop_events()]


async def serve_stream(server, ws: WebSocket) -> None:
    """One client's stream, from its settings to ``done`` (or an error); the server goes on either way."""
    # a browser that sent its API key as a subprotocol (asrforge.serve.app.ApiKey) also offered "asrforge"; the
    # server must choose one of those offered or the browser drops the connection
    await ws.accept(subprotocol=PROTOCOL if PROTOCOL in ws.scope.get("subprotocols", ()) else None)
    key = held = stream = recognizer = None
    try:
        try:
            server.check_ready()
        except ApiError as e:
            raise Refusal(e.message, CLOSE_TRY_LATER) from None
        first = await ws.receive()
        if first["type"] == "websocket.disconnect":
            return
        config = settings(first.get("text"), server.pool.names())
        key = server.live.admit()
        model = config["model"]
        recognizer = await server.acquire(model)
        held = model
        try:
            engine, stream = server.live.join(recognizer, config["options"])
        except ConfigError as e:
            raise Refusal(str(e)) from None
        await ws.send_json({"type": "ready"})
        await _pump(server, ws, engine, stream, config, key, lambda: server.live.peers(recognizer))
    except Refusal as e:
        await _close(ws, e.code, str(e))
    except WebSocketDisconnect:
        log.info("a live stream's client went away")
    except Exception as e:              # a bug: this stream ends, the server goes on
        log.exception("a live stream failed")
        await _close(ws, CLOSE_ERROR, f"the stream failed ({type(e).__name__}: {e}); the server goes on serving")
    finally:
        if key is not None:
            server.live.leave(key)
        if stream is not None:
            server.live.part(recognizer, stream)
        if held is not None:
            server.pool.release(held)


async def _pump(server, ws: WebSocket, engine: StreamingRecognizer, stream: AudioStream, config: dict, key: int,
                peers) -> None:
    """Frames are read as they come (a task of their own) and decoded in one worker call per turn: audio that
    arrived while the worker was busy is decoded together, so a stream that fell behind catches up."""
    rate = config["sample_rate"]
    decoder = PcmDecoder(config["encoding"], "the stream")
    arrived: list[np.ndarray] = []
    ended = asyncio.Event()
    wake = asyncio.Event()

    async def read() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                raise WebSocketDisconnect(message.get("code", 1000))
            if message.get("bytes") is not None:
                samples = decoder.feed(message["bytes"])
                if len(samples):
                    arrived.append(samples)
                    wake.set()
                continue
            try:
                command = json.loads(message.get("text") or "")
            except json.JSONDecodeError:
                command = None
            if command != {"type": "end"}:
                raise Refusal(f'after the settings, send binary audio frames and then {{"type": "end"}}; got '
                              f'{(message.get("text") or "")[:80]!r}')
            try:
                decoder.end()
            except AudioError as e:
                raise Refusal(str(e)) from None
            ended.set()
            wake.set()
            return

    reader = asyncio.create_task(read())
    started = None                      # when the first audio arrived; the stream is due to have been heard since
    heard = 0.0                         # seconds of audio decoded
    try:
        while True:
            waiting = asyncio.create_task(wake.wait())
            await asyncio.wait({reader, waiting}, return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if reader.done() and reader.exception() is not None:
                raise reader.exception()
            wake.clear()
            if arrived:
                samples = np.concatenate(arrived)
                arrived.clear()
                started = started or time.monotonic()
                decoded = server.scheduler.call(_feed, engine, stream, samples, rate, peers())
                for event in await asyncio.wrap_future(decoded):
                    await ws.send_json(event)
                heard += len(samples) / rate
                server.live.lag[key] = max(0.0, time.monotonic() - started - heard)
            if ended.is_set() and not arrived:
                decoded = server.scheduler.call(_feed, engine, stream, None, rate, peers())
                for event in await asyncio.wrap_future(decoded):
                    await ws.send_json(event)
                await ws.send_json({"type": "done"})
                await ws.close(CLOSE_NORMAL)
                return
    finally:
        reader.cancel()


async def _close(ws: WebSocket, code: int, message: str) -> None:
    try:
        await ws.send_json({"type": "error", "message": message})
        await ws.close(code)
    except (WebSocketDisconnect, RuntimeError):     # the client is gone already
        pass
