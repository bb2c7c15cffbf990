"""``serve``: the OpenAI-compatible speech API (:mod:`asrforge.serve`) under uvicorn; ``ui``: the same server with
the web app (:mod:`asrforge.serve.ui`) at its root."""

from __future__ import annotations

import os
import threading

from asrforge.cli.args import count, positive
from asrforge.errors import ConfigError

API_KEY_ENV = "ASRFORGE_API_KEY"


def add_parsers(sub) -> None:
    s = sub.add_parser("serve", help="serve models over HTTP with OpenAI's audio API (/v1/audio/transcriptions, ...)")
    _server_arguments(s, port=8000)
    s.add_argument("--ui", action="store_true", help="also serve the web app at /ui (needs the ui extra)")
    s.set_defaults(func=serve)
    u = sub.add_parser("ui", help="the web app: transcribe uploads and the microphone, and live captions, in a "
                                  "browser (the API is served beside it)")
    _server_arguments(u, port=7860)
    u.set_defaults(func=serve, ui_root=True)


def _server_arguments(s, port: int) -> None:
    s.add_argument("--model", action="append", required=True, metavar="NAME=PATH",
                   help="a checkpoint to serve as NAME (repeat for several); a bare PATH is named after its folder "
                        "or file stem")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                   "0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=port)
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "int8"],
                   help="Whisper checkpoints: float16/bfloat16 need a GPU; int8 quantizes for the CPU")
    s.add_argument("--api-key", help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV} if set; else no key)")
    s.add_argument("--max-upload-mb", type=positive, default=25.0, help="largest upload accepted (default 25, as OpenAI)")
    s.add_argument("--max-queue", type=count, default=64, help="requests admitted at once; more get 429 (default 64)")
    s.add_argument("--max-batch", type=count, default=8, help="pieces of audio decoded together (default 8)")
    s.add_argument("--max-streams", type=count, default=8,
                   help="live WebSocket streams (/v1/audio/stream) at once; more are told to try later (default 8)")
    s.add_argument("--model-ttl", type=positive, default=None,
                   help="unload a model after this many seconds without requests (reloaded on the next one)")
    s.add_argument("--lazy", action="store_true", help="load each model on its first request instead of at start")
    s.add_argument("--speaker-model", default="resemblyzer",
                   help="the speaker embedding model of response_format=diarized_json (extra diarize): resemblyzer, "
                        "resemblyzer:PATH or torchscript:PATH (see asrforge diarize --help)")
    s.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def serve(args) -> None:
    from asrforge.extras import require_extra

    root = getattr(args, "ui_root", False)
    ui_path = "/" if root else ("/ui" if args.ui else None)
    command = "asrforge ui" if root else ("asrforge serve --ui" if args.ui else "asrforge serve")
    require_extra("serve", command, "fastapi", "uvicorn", "multipart", "prometheus_client")
    if ui_path is not None:
        require_extra("ui", command, "gradio")
    import uvicorn

    from asrforge.serve.app import ServerConfig, create_app
    from asrforge.serve.models import parse_model_specs

    try:
        models = parse_model_specs(args.model)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    missing = [f"{name}={path}" for name, path in models.items() if not os.path.exists(path)]
    if missing:
        raise ConfigError(f"--model: {', '.join(missing)} does not exist; give a checkpoint file or folder")
    config = ServerConfig(models=models, device=args.device, dtype=args.dtype,
                          api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
                          max_upload_mb=args.max_upload_mb, max_queue=args.max_queue, max_batch=args.max_batch,
                          max_streams=args.max_streams,
                          model_ttl=args.model_ttl, lazy=args.lazy, inference_thread=False, ui_path=ui_path,
                          speaker_model=args.speaker_model)
    app = create_app(config)
    if ui_path is not None:
        host = "localhost" if args.host in ("127.0.0.1", "0.0.0.0", "::") else args.host
        print(f"the web app: http://{host}:{args.port}{ui_path}", flush=True)
    # the event loop gets a thread; decoding keeps the main one, where PyTorch's parallel regions run fastest
    # (see asrforge.serve.scheduler); uvicorn then leaves signals alone, so Ctrl-C arrives here
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    loop = threading.Thread(target=server.run, name="asrforge-http")
    loop.start()
    try:
        app.state.server.scheduler.work_here(keep_going=loop.is_alive)
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        loop.join()
