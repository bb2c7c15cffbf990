"""The client side of ``WS /v1/audio/stream`` (what ``asrforge stream --server URL`` runs): audio chunks out as
16-bit PCM frames, events back as they come (protocol: :mod:`asrforge.serve.live`)."""

from __future__ import annotations

import contextlib
import json
import threading
from typing import Callable, Iterable

import numpy as np

from asrforge.errors import ConfigError
from asrforge_runtime.stream_events import StreamEvent


def pcm16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> little-endian 16-bit PCM, the inverse of reading it as ``int / 32768`` (so audio
    read from a 16-bit file goes out as the very samples it holds)."""
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype("<i2").tobytes()


def stream_to_server(url: str, chunks: Iterable[np.ndarray], sample_rate: int, settings: dict,
                     on_events: Callable[[list[StreamEvent]], None], api_key: str | None = None) -> list[StreamEvent]:
    """Send ``chunks`` (float32 in [-1, 1] at ``sample_rate``) to the server at ``url`` with the stream ``settings``
    (``model``, ``language``, ...); ``on_events`` gets the events as they arrive (on another thread). Returns the
    finals. A server's error message, or a refused connection, is raised as :class:`ConfigError`."""
    from websockets.exceptions import InvalidStatus, WebSocketException
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
    with contextlib.ExitStack() as stack:
        try:
            ws = stack.enter_context(connect(url, additional_headers=headers, open_timeout=10))
        except InvalidStatus as e:
            status = e.response.status_code
            hint = "; give the server's key with --api-key" if status == 403 else ""
            raise ConfigError(f"{url}: the server refused the stream (HTTP {status}){hint}") from None
        except (OSError, WebSocketException) as e:
            raise ConfigError(f"{url}: could not connect ({e}); is `asrforge serve` running there?") from None
        return _converse(url, ws, chunks, sample_rate, settings, on_events)


def _converse(url: str, ws, chunks: Iterable[np.ndarray], sample_rate: int, settings: dict,
              on_events: Callable[[list[StreamEvent]], None]) -> list[StreamEvent]:
    """The stream over an open connection ``ws``; see :func:`stream_to_server`."""
    from websockets.exceptions import WebSocketException

    finals: list[StreamEvent] = []
    failure: list[str] = []
    ws.send(json.dumps({**settings, "sample_rate": sample_rate, "encoding": "pcm_s16le"}))
    first = json.loads(ws.recv())
    if first.get("type") != "ready":
        raise ConfigError(f"{url}: {first.get('message', first)}")

    def read() -> None:             # events as they come, until done, an error or the close
        try:
            for message in ws:
                event = json.loads(message)
                if event["type"] == "error":
                    failure.append(event["message"])
                    return
                if event["type"] == "done":
                    return
                got = StreamEvent.from_dict(event)
                if got.type == "final":
                    finals.append(got)
                on_events([got])
        except WebSocketException as e:
            failure.append(f"the connection ended ({e})")

    reader = threading.Thread(target=read, name="asrforge-stream-events")
    reader.start()
    try:
        try:
            for chunk in chunks:
                if failure:
                    break
                ws.send(pcm16(chunk))
        except KeyboardInterrupt:   # the microphone's way to stop: the server still sends the last finals
            pass
        if not failure:
            ws.send(json.dumps({"type": "end"}))
    except WebSocketException:
        pass                        # the reader saw why
    finally:
        reader.join()
    if failure:
        raise ConfigError(f"{url}: {failure[0]}")
    return finals
