"""The FastAPI application: OpenAI's audio endpoints, the model list, health, readiness and metrics.

``create_app(config)`` builds it; ``asrforge serve`` runs it under uvicorn. Routes:

- ``POST /v1/audio/transcriptions``, ``POST /v1/audio/translations`` (multipart, see :mod:`asrforge.serve.fields`);
- ``GET /v1/models``, ``GET /v1/models/{id}``;
- ``GET /health`` (the process answers), ``GET /ready`` (503 until the models are loaded), ``GET /metrics``.

With an API key, ``/v1/*`` and ``/metrics`` need ``Authorization: Bearer KEY`` (compared in constant time);
``/health`` and ``/ready`` stay open for load balancers. Every error is OpenAI's error body.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import tempfile
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from asrforge.errors import ConfigError
from asrforge.inference.recognizer import Recognizer
from asrforge_runtime.result import Result
from asrforge.inference.speakers import assign_speakers, with_word_times
from asrforge.serve.errors import ApiError, bad_request
from asrforge.serve.fields import AudioRequest, parse_form
from asrforge.serve.formats import delta_event, done_event, response_body
from asrforge.serve.live import LiveStreams, serve_stream
from asrforge.serve.metrics import Metrics, RequestMetrics
from asrforge.serve.models import ModelPool
from asrforge.serve.scheduler import PIECE_SECONDS, SAMPLE_RATE, Job, Scheduler, cut_into_pieces
from asrforge.serve.uploads import UploadLimit, UploadTooLarge, read_upload, too_large

log = logging.getLogger("asrforge")

AUDIO_PATHS = ("/v1/audio/transcriptions", "/v1/audio/translations")
OPEN_PATHS = ("/health", "/ready")
KEY_PROTOCOL = "asrforge.key."          # a WebSocket subprotocol carrying the API key, for browsers
DISCONNECT_POLL_S = 0.25
# the options Recognizer.transcribe takes -> the form field a request names them with
OPTION_FIELDS = {"initial_prompt": "prompt", "language": "language", "temperature": "temperature",
                 "word_timestamps": "timestamp_granularities[]", "task": "model", "beam_size": "beam_size",
                 "best_of": "best_of", "patience": "patience", "length_penalty": "length_penalty"}


@dataclass
class ServerConfig:
    models: dict[str, str]                  # name -> checkpoint path
    device: str = "cpu"
    dtype: str = "float32"
    api_key: str | None = None
    max_upload_mb: float = 25.0
    max_queue: int = 64
    max_batch: int = 8
    model_ttl: float | None = None          # seconds idle before a model is unloaded; None: never
    lazy: bool = False                      # load each model on its first request instead of at start
    loader: Callable[[str], Recognizer] | None = None    # default: asrforge.load_model(path, device, dtype)
    temp_dir: str | None = None             # where uploads are copied while decoded; default: the system's
    inference_thread: bool = True           # False: the caller runs Scheduler.work_here (asrforge serve: the main thread)
    max_streams: int = 8                    # live WebSocket streams at once; more are told to try again later
    ui_path: str | None = None              # where the web app is mounted ("/ui", or "/"); None: no web app
    speaker_model: str = "resemblyzer"      # diarized_json's speaker embedding model (KIND or KIND:PATH)


class Server:
    """What the routes share: the models, the scheduler, the metrics, the temporary folder."""

    def __init__(self, config: ServerConfig):
        from asrforge.inference.recognizer import load_model

        self.config = config
        loader = config.loader or (lambda path: load_model(path, config.device, config.dtype))
        self.pool = ModelPool(config.models, loader, config.model_ttl)
        self.metrics = Metrics()
        self.created = int(time.time())
        self.ready = threading.Event()
        self.load_error: str | None = None
        self.scheduler = Scheduler(config.max_queue, config.max_batch, own_thread=config.inference_thread)
        self.live = LiveStreams(config.max_streams)
        self.temp: Path | None = None
        self.ui_temp: Path | None = None    # the web app's files (Gradio's cache), when it is mounted
        self._diarizer = None               # loaded on the first request for speakers
        self._stop = threading.Event()

    def start(self) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="asrforge-serve-", dir=self.config.temp_dir))
        self.scheduler.call(self._load)      # on the worker, like every PyTorch call (see asrforge.serve.scheduler)
        if self.config.model_ttl:
            threading.Thread(target=self._unload_idle, name="asrforge-ttl", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.scheduler.stop()
        for folder in (self.temp, self.ui_temp):
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    def _load(self) -> None:
        try:
            if not self.config.lazy:
                self.pool.load_all()
        except Exception as e:      # the server stays up and says why in /ready and every request
            self.load_error = f"{type(e).__name__}: {e}"
            log.error("loading the models failed: %s", self.load_error)
            return
        self._update_gauges()
        self.ready.set()

    def _unload_idle(self) -> None:
        period = max(0.05, min(5.0, self.config.model_ttl / 4))
        while not self._stop.wait(period):
            if self.pool.unload_idle():
                self._update_gauges()

    def _update_gauges(self) -> None:
        self.metrics.models_loaded.set(len(self.pool.loaded()))
        self.metrics.live_streams.set(len(self.live.lag))
        stats = self.scheduler.stats()
        self.metrics.queue_requests.set(stats.jobs)
        self.metrics.queue_pieces.set(stats.pieces_waiting)

    async def acquire(self, name: str) -> Recognizer:
        """The model ``name``, held until ``pool.release(name)``: at once when it is in memory; loading it is
        PyTorch's work, so that waits for the worker."""
        return (self.pool.acquire_loaded(name)
                or await asyncio.wrap_future(self.scheduler.call(self.pool.acquire, name)))

    async def pieces(self, wave):
        """16 kHz samples ``(N,)`` -> :func:`cut_into_pieces`; only a long recording needs the worker (Silero VAD
        finds its pauses), a short one is one piece."""
        if len(wave) <= PIECE_SECONDS * SAMPLE_RATE:
            return cut_into_pieces(wave)
        return await asyncio.wrap_future(self.scheduler.call(cut_into_pieces, wave))

    async def diarize(self, wave, options=None):
        """Who spoke when in 16 kHz samples ``(N,)`` (a :class:`Diarization`), on the worker; the diarizer is
        loaded by the first request that asks, and a server without the ``diarize`` extra says so as a 400."""
        def run():
            from asrforge.inference.diarization import load_diarizer

            if self._diarizer is None:
                self._diarizer = load_diarizer(self.config.speaker_model, self.config.device)
            return self._diarizer(wave, options)
        try:
            return await asyncio.wrap_future(self.scheduler.call(run))
        except ConfigError as e:
            raise ApiError(400, f"this server cannot find speakers: {e}", "response_format",
                           "diarization_unavailable") from None

    def check_ready(self) -> None:
        if self.load_error:
            raise ApiError(503, f"the server could not load its models ({self.load_error}); fix the --model paths "
                                "and restart it", None, "load_failed")
        if not self.ready.is_set():
            raise ApiError(503, "the server is still loading its models; retry in a few seconds", None, "not_ready",
                           headers={"Retry-After": "2"})


def _refusal(error: ConfigError, options: dict, model: str) -> ApiError:
    """An option the model cannot take -> 400 naming the form field the request used for it."""
    message = str(error)
    named = [k for k in options if k in message]
    if not named:
        return bad_request(message, None, "unsupported_value")
    option = named[0]
    fld = OPTION_FIELDS.get(option, option)
    if option == "task":        # asked of the translations endpoint: the model is what cannot do it
        message = f"model {model!r} cannot translate: {message}"
    elif fld != option:
        message = f"{fld}: " + message.replace(option, fld)
    return bad_request(message, fld, "unsupported_value")


def create_app(config: ServerConfig) -> FastAPI:
    server = Server(config)

    @asynccontextmanager
    async def lifespan(app):
        server.start()
        try:
            yield
        finally:
            server.stop()

    app = FastAPI(title="asrforge", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse(e.body(), e.status, headers=e.response_headers())

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        detail = f"{request.method} {request.url.path}: {e.detail}" if e.status_code in (404, 405) else str(e.detail)
        return await api_error(request, ApiError(e.status_code, detail, None, code))

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        server.check_ready()
        return {"status": "ready", "models": server.pool.loaded() if not config.lazy else server.pool.names()}

    @app.get("/metrics")
    async def metrics():
        server._update_gauges()
        return Response(generate_latest(server.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def list_models():
        return {"object": "list", "data": [server.pool.describe(n, server.created) for n in server.pool.names()]}

    @app.get("/v1/models/{model_id:path}")
    async def get_model(model_id: str):
        return server.pool.describe(model_id, server.created)

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request):
        return await _audio(server, request, "transcribe")

    @app.post("/v1/audio/translations")
    async def translations(request: Request):
        return await _audio(server, request, "translate")

    @app.websocket("/v1/audio/stream")
    async def live_stream(ws: WebSocket):
        await serve_stream(server, ws)

    if config.ui_path is not None:
        from asrforge.serve.ui import mount_ui

        mount_ui(app, server, config.ui_path)
    app.add_middleware(UploadLimit, max_bytes=int(config.max_upload_mb * 2**20))
    if config.api_key:
        app.add_middleware(ApiKey, key=config.api_key, ui_path=config.ui_path)
    app.add_middleware(RequestMetrics, metrics=server.metrics,
                       paths=AUDIO_PATHS + OPEN_PATHS + ("/metrics", "/v1/models"))
    return app


class ApiKey:
    """ASGI middleware: every path but :data:`OPEN_PATHS` needs ``Authorization: Bearer <key>``, compared in
    constant time. A browser cannot set headers on a WebSocket, so a live stream may instead offer the
    subprotocol ``asrforge.key.<key>`` (see :mod:`asrforge.serve.live`). The web app's pages (under ``ui_path``,
    but never ``/v1/*`` or ``/metrics``) pass: Gradio asks for the key at its own login page. (A plain ASGI
    middleware rather than Starlette's ``BaseHTTPMiddleware``, which hides a client's disconnect from the routes:
    a cancelled request would go on decoding.)"""

    def __init__(self, app, key: str, ui_path: str | None = None):
        self.app = app
        self.key = key.encode()
        self.ui_prefix = None if ui_path is None else ui_path.rstrip("/") + "/"

    def _open(self, path: str) -> bool:
        if path in OPEN_PATHS:
            return True
        if self.ui_prefix is None or path.startswith("/v1/") or path in ("/v1", "/metrics"):
            return False
        return (path + "/").startswith(self.ui_prefix)

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or self._open(scope["path"]):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        token = given[7:] if given[:7].lower() == b"bearer " else b""
        if scope["type"] == "websocket" and not token:
            offered = [p for p in scope.get("subprotocols", ()) if p.startswith(KEY_PROTOCOL)]
            token = offered[0][len(KEY_PROTOCOL):].encode() if offered else b""
        if hmac.compare_digest(token, self.key):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":     # refused before the handshake: the client sees HTTP 403
            return await send({"type": "websocket.close", "code": 1008})
        e = ApiError(401, "a valid API key is needed: send the header 'Authorization: Bearer <key>' with the key this "
                          "server was started with", None, "invalid_api_key")
        await JSONResponse(e.body(), 401, headers=e.response_headers())(scope, receive, send)


async def _read_form(server: Server, request: Request):
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("multipart/form-data", "application/x-www-form-urlencoded"):   # the latter: no file in it
        raise bad_request(f"the request body must be multipart/form-data with the audio in the field 'file', not "
                          f"{kind or 'untyped'}", None, "invalid_body")
    try:
        return await request.form(max_files=1, max_fields=64)
    except Exception as e:      # not multipart, malformed multipart, or over the cap (maybe inside a task group)
        if _holds(e, UploadTooLarge):
            raise too_large(int(server.config.max_upload_mb * 2**20)) from None
        raise bad_request(f"the request body must be multipart/form-data with the audio in the field 'file' "
                          f"({type(e).__name__}: {e})", None, "invalid_body") from None


def _holds(error: BaseException, kind: type) -> bool:
    """Whether ``error`` is a ``kind``, or an exception group holding one."""
    if isinstance(error, kind):
        return True
    return isinstance(error, BaseExceptionGroup) and any(_holds(e, kind) for e in error.exceptions)


async def _audio(server: Server, request: Request, task: str) -> Response:
    server.check_ready()
    form = await _read_form(server, request)
    streaming = False
    try:
        req = parse_form(form, task)
        server.pool.served(req.model)
        if req.stream and req.response_format not in ("json", "text"):
            raise bad_request(f"stream=true sends text events; it takes response_format json or text, not "
                              f"{req.response_format}", "stream")
        options = req.options()
        recognizer = await server.acquire(req.model)
        try:
            if req.diarize:
                options = with_word_times(recognizer, options)
            try:
                recognizer.check_options(**options)
            except ConfigError as e:
                raise _refusal(e, options, req.model) from None
            wave = await run_in_threadpool(read_upload, req.upload, server.temp)
            pieces = await server.pieces(wave)
            duration = len(wave) / SAMPLE_RATE
            if not req.diarize:
                del wave
            if req.stream:
                response = _stream(server, request, req, recognizer, options, pieces, duration)
                streaming = True
                return response
            job = Job(recognizer, options, pieces, duration, asyncio.get_running_loop())
            server.scheduler.submit(job)
            result = await _wait(server, request, job)
            if req.diarize:
                result = assign_speakers(result, await server.diarize(wave, req.diarize_options()))
            server.metrics.audio_seconds.labels(req.model).inc(duration)
            body, media = response_body(result, req.response_format, task, req.granularities)
            return Response(body, media_type=media)
        finally:
            if not streaming:
                server.pool.release(req.model)
    finally:
        await form.close()


async def _wait(server: Server, request: Request, job: Job) -> Result:
    """The job's result; cancels it when the client goes away first."""
    while True:
        done, _ = await asyncio.wait({job.future}, timeout=DISCONNECT_POLL_S)
        if done:
            return job.future.result()
        if await request.is_disconnected():
            server.scheduler.cancel(job)
            raise ApiError(499, "the client closed the connection; the request was cancelled", None, "cancelled")


def _stream(server: Server, request: Request, req: AudioRequest, recognizer: Recognizer, options: dict,
            pieces: list, duration: float) -> StreamingResponse:
    """``stream=true``: a delta event per piece as pieces are decoded (in order), then one done event."""
    arrived: asyncio.Queue = asyncio.Queue()
    job = Job(recognizer, options, pieces, duration, asyncio.get_running_loop(),
              on_piece=lambda i, r: arrived.put_nowait(i))
    try:
        server.scheduler.submit(job)
    except BaseException:
        server.pool.release(req.model)
        raise

    async def events():
        sent, texts = 0, []
        try:
            while sent < len(pieces):
                await arrived.get()
                while sent < len(pieces) and job.results[sent] is not None:
                    text = job.results[sent].text.strip()
                    if text:
                        yield delta_event((" " if texts else "") + text)
                        texts.append(text)
                    sent += 1
            result = await job.future
            server.metrics.audio_seconds.labels(req.model).inc(duration)
            yield done_event(result.text.strip(), duration)
        finally:
            if not job.future.done():
                server.scheduler.cancel(job)
            server.pool.release(req.model)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
