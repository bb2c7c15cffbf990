"""``stream``: recognize speech as it arrives, from a file, raw PCM on standard input, or a microphone."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from asrforge.cli.args import count, positive
from asrforge.cli.serve import API_KEY_ENV
from asrforge.errors import ConfigError

STDIN = "-"


def add_parsers(sub) -> None:
    s = sub.add_parser("stream", help="real-time recognition with partial and final results (file, pipe, microphone)")
    s.add_argument("source", nargs="?", help="an audio file (replayed), or - for raw PCM on standard input "
                   "(ffmpeg -i URL -f s16le -ac 1 -ar 16000 - | asrforge stream --model M -)")
    s.add_argument("--model", required=True, help="a Whisper checkpoint or an asrforge checkpoint with word times; "
                   "with --server, the name of a model the server serves")
    s.add_argument("--server", help="stream to asrforge serve's WebSocket endpoint instead of a local model "
                   "(ws://HOST:PORT/v1/audio/stream)")
    s.add_argument("--api-key", help="with --server: the server's key (default: $ASRFORGE_API_KEY if set)")
    s.add_argument("--mic", action="store_true", help="listen to the microphone (extra 'stream'; Ctrl-C ends)")
    s.add_argument("--mic-device", help="input device name or number (python -m sounddevice lists them)")
    s.add_argument("--realtime", action="store_true", help="replay a file at speaking pace (default: as fast as it "
                   "decodes)")
    s.add_argument("--format", dest="encoding", default="s16le", choices=["s16le", "f32le"],
                   help="with -: the samples' encoding (little-endian, mono)")
    s.add_argument("--rate", type=int, default=16000, help="with - and --mic: samples per second (default 16000)")
    s.add_argument("--language", help="Whisper: the language code (default: detected)")
    s.add_argument("--beam-size", type=count, help="default: the model's own (Whisper: greedy)")
    s.add_argument("--step", type=positive, default=1.0, help="re-decoding models (Whisper): seconds of new audio "
                   "between decodes (default 1.0)")
    s.add_argument("--chunk-ms", type=positive, default=320, help="streaming models (model.streaming): milliseconds "
                   "of audio per encoder step (default 320)")
    s.add_argument("--endpoint-silence", type=positive, default=None,
                   help="seconds of silence after speech that end an utterance (default 1.0; 0.6 for streaming "
                        "models, which decode the silence themselves)")
    s.add_argument("--max-utterance", type=positive, default=20.0, help="seconds an utterance lasts at most (default 20)")
    s.add_argument("--output-format", default="text", choices=["text", "jsonl"],
                   help="text: finals as lines (on a terminal, the partial line is rewritten in place); jsonl: one "
                        "event per line")
    s.add_argument("--output-dir", help="also write <name>.srt, .vtt and .json of the finals at the end")
    s.add_argument("--device", default="cpu")
    s.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "int8"])
    s.set_defaults(func=stream)


def stream(args) -> None:
    from asrforge.audio.live import file_chunks, microphone_chunks, pcm_chunks

    if bool(args.mic) == bool(args.source):
        raise ConfigError("give one source: an audio file, - for PCM on standard input, or --mic")
    if args.realtime and args.source in (None, STDIN):
        raise ConfigError("--realtime replays a file; a pipe or a microphone is real time already")
    if args.source not in (None, STDIN) and not Path(args.source).is_file():
        raise ConfigError(f"{args.source}: no such audio file")
    if args.output_dir and not Path(args.output_dir).is_dir():
        raise ConfigError(f"--output-dir {args.output_dir}: no such folder")
    if args.mic:
        chunks, rate, name = microphone_chunks(args.rate, device=args.mic_device), args.rate, "microphone"
    elif args.source == STDIN:
        chunks, rate, name = pcm_chunks(sys.stdin.buffer, args.encoding, args.rate), args.rate, "stream"
    else:
        chunks, rate, name = file_chunks(args.source, realtime=args.realtime), 16000, Path(args.source).stem
    show = Display(args.output_format, sys.stdout)
    if args.server:
        finals, seconds = _remote(args, chunks, rate, show)
    else:
        finals, seconds = _local(args, chunks, rate, show)
    show.close()
    if args.output_dir:
        from asrforge_runtime.stream_events import finals_result
        from asrforge_runtime.writers import write_result

        for fmt in ("srt", "vtt", "json"):
            for path in write_result(finals_result(finals, seconds, args.language), name, args.output_dir, fmt):
                print(f"wrote {path}", file=sys.stderr)


def _local(args, chunks, rate: int, show) -> tuple[list, float]:
    from dataclasses import replace

    from asrforge.inference.streaming import streaming_engine
    from asrforge_runtime.native_streaming import NATIVE_RULES
    from asrforge.inference.recognizer import load_model
    from asrforge_runtime.stream_events import EndpointRules

    recognizer = load_model(args.model, device=args.device, dtype=args.dtype)
    defaults = NATIVE_RULES if recognizer.streaming else EndpointRules()
    rules = replace(defaults, max_utterance_s=args.max_utterance,
                    silence_after_text_s=args.endpoint_silence or defaults.silence_after_text_s)
    options = {"beam_size": args.beam_size} if args.beam_size else {}
    engine = streaming_engine(recognizer, rules, step_s=args.step, trim_s=min(15.0, 0.75 * args.max_utterance),
                              chunk_ms=args.chunk_ms, **options)
    s = engine.create_stream(language=args.language)
    try:
        for chunk in chunks:
            s.accept_waveform(chunk, rate)
            engine.decode_streams([s])
            show(s.pop_events())
    except KeyboardInterrupt:       # the microphone's way to stop: what was heard is still committed
        pass
    s.finish()
    engine.decode_streams([s])
    show(s.pop_events())
    return s.finals, s.seconds


def _remote(args, chunks, rate: int, show) -> tuple[list, float]:
    from asrforge.extras import require_extra

    require_extra("serve", "asrforge stream --server", "websockets")
    from asrforge.serve.live_client import stream_to_server

    if not args.server.startswith(("ws://", "wss://")):
        raise ConfigError(f"--server {args.server}: give a WebSocket address, ws://HOST:PORT/v1/audio/stream")
    counted = [0]

    def counting():
        for chunk in chunks:
            counted[0] += len(chunk)
            yield chunk

    settings = {"model": args.model, "language": args.language}
    if args.beam_size:
        settings["beam_size"] = args.beam_size
    finals = stream_to_server(args.server, counting(), rate, settings, show,
                              args.api_key or os.environ.get(API_KEY_ENV) or None)
    return finals, counted[0] / rate


class Display:
    """Events -> lines. ``text``: each final on a line of its own; on a terminal the partial is shown on the line
    below, rewritten as it changes. ``jsonl``: every event as a JSON line, flushed at once (for a pipe)."""

    def __init__(self, output_format: str, out):
        self.format, self.out = output_format, out
        self.live = output_format == "text" and out.isatty()
        self.showing = False

    def __call__(self, events) -> None:
        for e in events:
            if self.format == "jsonl":
                self.out.write(json.dumps(e.to_dict(), ensure_ascii=False) + "\n")
            elif e.type == "final":
                self.out.write(("\r\x1b[K" if self.showing else "") + e.text + "\n")
                self.showing = False
            elif self.live:
                # the tail of the partial, on one line: a wrapped line could not be rewritten in place
                width = max(10, shutil.get_terminal_size().columns - 1)
                self.out.write("\r\x1b[K" + (e.text if len(e.text) <= width else "…" + e.text[-(width - 1):]))
                self.showing = bool(e.text)
        self.out.flush()

    def close(self) -> None:
        if self.showing:
            self.out.write("\n")
            self.out.flush()
