"""``GET /metrics``: Prometheus text format (prometheus-client), one registry per server.

- ``asrforge_requests_total{path, status}``: answered requests;
- ``asrforge_request_seconds{path}``: latency histogram, from the request's arrival to the last byte;
- ``asrforge_audio_seconds_total{model}``: seconds of audio transcribed or translated;
- ``asrforge_queue_requests`` / ``asrforge_queue_pieces``: requests admitted and pieces not yet decoded;
- ``asrforge_models_loaded``: models in memory;
- ``asrforge_live_streams``: WebSocket streams being recognized.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("asrforge_requests", "Answered HTTP requests", ["path", "status"], registry=self.registry)
        self.latency = Histogram("asrforge_request_seconds", "Seconds from a request's arrival to its answer's end",
                                 ["path"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.audio_seconds = Counter("asrforge_audio_seconds", "Seconds of audio transcribed or translated", ["model"],
                                     registry=self.registry)
        self.queue_requests = Gauge("asrforge_queue_requests", "Requests admitted and not finished",
                                    registry=self.registry)
        self.queue_pieces = Gauge("asrforge_queue_pieces", "Pieces of audio waiting to be decoded",
                                  registry=self.registry)
        self.models_loaded = Gauge("asrforge_models_loaded", "Models in memory", registry=self.registry)
        self.live_streams = Gauge("asrforge_live_streams", "WebSocket streams being recognized", registry=self.registry)


class RequestMetrics:
    """ASGI middleware counting every answer by path and status, with its latency (streams included)."""

    def __init__(self, app, metrics: Metrics, paths: tuple[str, ...]):
        self.app = app
        self.metrics = metrics
        self.paths = paths          # the paths worth a label of their own; others count as "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        status = 500
        path = scope["path"] if scope["path"] in self.paths else "other"

        async def counting(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(time.monotonic() - start)
