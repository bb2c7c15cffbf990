"""One inference thread that every request shares, fairly: long uploads are cut at pauses into pieces, and
each batch takes a piece from every waiting request before a second piece from any.

Why: whisper.cpp's server holds one mutex per request, so a 3-s request waits behind a 10-minute one. Here
a request is a :class:`Job` of pieces (the whole upload when it is at most 30 s; else Silero VAD's stretches
of speech joined into chunks of at most 30 s, as Whisper's batched mode cuts them), and the worker decodes
one batch at a time through ``Recognizer.transcribe_batch``:

- with several requests waiting, a batch holds one piece of each (in turn, up to ``max_batch``), so a new
  short request is in the very next batch;
- a request alone gets up to ``max_batch`` of its pieces at once (batched decoding is faster per second
  of audio than one piece after another);
- pieces share a batch only when their requests ask for the same options of the same model;
- a short request that arrives while a batch of longer pieces is being decoded does not wait for the batch to
  end: at the batch's next decoding step (a yield point, :mod:`asrforge.preempt`), the worker decodes the first
  piece of each request that arrived since and is at most half as long as the batch's longest piece, then goes
  on with the batch where it stopped. Only shorter work may cut in (a request of similar length waits its turn, as
  letting it in would only delay the batch by as much as it gains). Requests that cut in may take at most as much
  of the worker's time as the batch itself has had since it started, so a flow of short requests can slow a
  batch to half speed but not starve it (without that bound, 8 clients of short clips kept a batch holding an
  11-s clip waiting: p95 latency 1.9 -> 5.0 s). Calls waiting for the worker run there too.

Inference never runs on the event loop: the worker hands results back to the loop with ``call_soon_threadsafe``.
Every PyTorch call of the server runs on this one worker: decoding, but also voice activity detection and model
loading (:meth:`Scheduler.call`). Each thread that runs a parallel region keeps an OpenMP team alive, and with
more OpenMP threads than cores, libgomp stops letting idle team members spin, so every small parallel region waits
for a sleeping thread to wake: measured on 2 cores, an int8 512 -> 2048 layer on 40 rows took 0.21 ms instead of
0.11, and a 3-minute upload through tiny.en 26-29 s instead of 12.5. ``asrforge serve`` runs the worker on the
process's main thread and the event loop on another (:meth:`Scheduler.work_here`); embedded in another program
(and in the tests) it runs on a thread of its own. A request whose client went away is cancelled, and its
remaining pieces are dropped. Pieces are not conditioned on each other's text (Whisper's prompt carries no text
across pieces).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

from asrforge.errors import AsrforgeError
from asrforge.inference.recognizer import Recognizer
from asrforge_runtime.result import Result, Segment, Word
from asrforge.inference.vad import merge_spans, speech_spans
from asrforge.preempt import yielding_to
from asrforge.serve.errors import ApiError

log = logging.getLogger("asrforge")

SAMPLE_RATE = 16000
PIECE_SECONDS = 30.0         # Whisper's window; a longer upload is cut at its pauses into pieces of at most this


def cut_into_pieces(wave: np.ndarray, max_seconds: float = PIECE_SECONDS) -> list[tuple[int, np.ndarray]]:
    """16 kHz samples ``(N,)`` -> ``[(first sample, samples), ...]``: the whole of a short upload; the speech of a
    long one in chunks of at most ``max_seconds`` (silence between chunks is left out)."""
    limit = int(max_seconds * SAMPLE_RATE)
    if len(wave) <= limit:
        return [(0, wave)] if len(wave) else []
    return [(s, wave[s:e]) for s, e in merge_spans(speech_spans(wave), limit)]


def join_results(results: list[Result], starts: list[float], duration: float) -> Result:
    """Piece results (each timed from its piece's start) -> one result timed from the upload's start."""
    segments: list[Segment] = []
    for result, offset in zip(results, starts):
        for s in result.segments:
            words = None if s.words is None else [Word(w.word, round(w.start + offset, 3), round(w.end + offset, 3),
                                                       w.probability) for w in s.words]
            segments.append(Segment(round(s.start + offset, 3), round(s.end + offset, 3), s.text, words,
                                    len(segments), s.seek + round(offset * 100), s.tokens, s.temperature,
                                    s.avg_logprob, s.compression_ratio, s.no_speech_prob))
    text = " ".join(r.text.strip() for r in results if r.text.strip())
    first = results[0] if results else None
    return Result(text, segments, first.language if first else None, duration,
                  first.language_probs if first else None)


class Job:
    """One request's pieces and what came back; ``future`` (on the event loop) gets the joined :class:`Result`."""

    def __init__(self, recognizer: Recognizer, options: dict, pieces: list[tuple[int, np.ndarray]], duration: float,
                 loop: asyncio.AbstractEventLoop, on_piece: Callable[[int, Result], None] | None = None):
        self.recognizer = recognizer
        self.options = dict(options)
        self.starts = [start / SAMPLE_RATE for start, _ in pieces]
        self.audio = [samples for _, samples in pieces]
        self.duration = duration
        self.results: list[Result | None] = [None] * len(pieces)
        self.next = 0               # the next piece to hand out
        self.out = 0                # pieces handed out and not back
        self.cancelled = False
        self.loop = loop
        self.future: asyncio.Future = loop.create_future()
        self.on_piece = on_piece    # called on the loop as each piece's result arrives
        # a multilingual model told no language detects it on the first piece; the rest are then told it
        self.detecting = "language" not in self.options and len(recognizer.languages) > 1

    def ready(self) -> bool:
        """Whether a piece can be handed out now."""
        if self.cancelled or self.next >= len(self.audio):
            return False
        return not (self.detecting and self.next > 0)

    def key(self) -> tuple:
        return id(self.recognizer), tuple(sorted((k, repr(v)) for k, v in self.options.items()))

    def take(self) -> int:
        self.next += 1
        self.out += 1
        return self.next - 1

    def _call(self, fn, *args) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def deliver(self, index: int, result: Result) -> None:
        """A piece came back (worker thread)."""
        self.out -= 1
        self.results[index] = result
        if self.detecting:
            if result.language:
                self.options["language"] = result.language
            self.detecting = False
        if self.on_piece is not None:
            self._call(self.on_piece, index, result)
        if all(r is not None for r in self.results):
            self._call(self._finish, join_results(self.results, self.starts, self.duration))

    def fail(self, error: Exception) -> None:
        self.cancelled = True
        self._call(self._finish, error)

    def _finish(self, outcome) -> None:
        if self.future.done():
            return
        if isinstance(outcome, Exception):
            self.future.set_exception(outcome)
        else:
            self.future.set_result(outcome)


@dataclass
class SchedulerStats:
    jobs: int            # requests admitted and not finished
    pieces_waiting: int  # pieces not yet handed out


class Scheduler:
    """Admits up to ``max_queue`` jobs and runs them on one worker thread (see the module docstring)."""

    def __init__(self, max_queue: int = 64, max_batch: int = 8, own_thread: bool = True):
        self.max_queue = max_queue
        self.max_batch = max_batch
        self._jobs: deque[Job] = deque()
        self._calls: deque[tuple[concurrent.futures.Future, Callable, tuple]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._seconds_per_piece = 1.0      # running estimate, for Retry-After
        self._news = False                 # a job or call arrived since the running batch last looked
        self._cut_in_below = 0             # samples: a newcomer's first piece at most this long may cut in
        self._batch_started = 0.0          # when the running batch started (time.monotonic())
        self._cut_in_seconds = 0.0         # worker time that newcomers have taken from it
        self._thread = None
        if own_thread:
            self._thread = threading.Thread(target=self.work_here, name="asrforge-inference", daemon=True)
            self._thread.start()

    # ---- the event loop's side -------------------------------------------------------------------------------
    def submit(self, job: Job) -> None:
        with self._cond:
            if len(self._jobs) >= self.max_queue:
                waiting = sum(len(j.audio) - j.next for j in self._jobs)
                retry = max(1, round(waiting * self._seconds_per_piece / self.max_batch))
                raise ApiError(429, f"the server is busy: {len(self._jobs)} requests are queued (--max-queue "
                                    f"{self.max_queue}); retry in about {retry} s", None, "queue_full",
                               type="rate_limit_exceeded", headers={"Retry-After": str(retry)})
            if not job.audio:       # nothing to decode (silence): done at once
                job._finish(join_results([], [], job.duration))
                return
            self._jobs.append(job)
            self._news = True
            self._cond.notify()

    def call(self, fn: Callable, *args) -> concurrent.futures.Future:
        """Run ``fn(*args)`` on the worker, before the next batch (``await asyncio.wrap_future(...)`` on the loop)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            self._calls.append((future, fn, args))
            self._news = True
            self._cond.notify()
        return future

    def cancel(self, job: Job) -> None:
        with self._cond:
            job.cancelled = True
            if job in self._jobs and job.out == 0:
                self._jobs.remove(job)
        if not job.future.done():
            job.future.cancel()

    def stats(self) -> SchedulerStats:
        with self._cond:
            return SchedulerStats(len(self._jobs), sum(len(j.audio) - j.next for j in self._jobs if not j.cancelled))

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ---- the worker ------------------------------------------------------------------------------------------
    def _take_batch(self) -> list[tuple[Job, int]]:
        """Under the lock: the next batch, a piece from each ready job in turn first (see the module docstring)."""
        for job in [j for j in self._jobs if j.cancelled and j.out == 0]:
            self._jobs.remove(job)
        ready = [j for j in self._jobs if j.ready()]
        if not ready:
            return []
        key = ready[0].key()
        fellows = [j for j in ready if j.key() == key]
        batch = [(j, j.take()) for j in fellows[: self.max_batch]]
        if len(fellows) == 1:
            while len(batch) < self.max_batch and fellows[0].ready():
                batch.append((fellows[0], fellows[0].take()))
        self._jobs.rotate(-1 - self._jobs.index(batch[0][0]))    # the next batch starts after this one's first job
        return batch

    def _take_newcomers(self) -> list[tuple[Job, int]]:
        """Under the lock: the first piece of each job not started yet whose first piece is short enough to cut in
        (those asking what the first of them asks)."""
        fresh = [j for j in self._jobs if j.next == 0 and j.ready() and len(j.audio[0]) <= self._cut_in_below]
        if not fresh:
            return []
        key = fresh[0].key()
        fellows = [j for j in fresh if j.key() == key][: self.max_batch]
        if len(fellows) < len(fresh):
            self._news = True       # the others at the next yield point
        return [(j, j.take()) for j in fellows]

    def _let_newcomers_in(self) -> None:
        """The running batch's yield point: waiting calls, then one batch of the jobs that arrived meanwhile."""
        if not self._news:          # read without the lock: the common case costs one attribute read a step
            return
        now = time.monotonic()
        if self._cut_in_seconds > now - self._batch_started - self._cut_in_seconds:
            return                  # newcomers have had as much time as the batch: it goes on for now
        with self._cond:
            self._news = False
            calls = list(self._calls)
            self._calls.clear()
        for call in calls:
            self._run(call)
        with self._cond:
            batch = self._take_newcomers()
        if batch:
            self._decode(batch, nested=True)
        self._cut_in_seconds += time.monotonic() - now

    def work_here(self, keep_going=lambda: True) -> None:
        """Decode on the calling thread until :meth:`stop`, or until ``keep_going()`` turns false (checked at least
        every 0.2 s)."""
        while True:
            call = None
            with self._cond:
                batch = [] if self._calls else self._take_batch()
                while not batch and not self._calls and not self._stopping and keep_going():
                    self._cond.wait(0.2)
                    batch = [] if self._calls else self._take_batch()
                if self._stopping or not keep_going():
                    return
                if self._calls:
                    call = self._calls.popleft()
            if call is not None:
                self._run(call)
            else:
                self._decode(batch)

    @staticmethod
    def _run(call: tuple[concurrent.futures.Future, Callable, tuple]) -> None:
        future, fn, args = call
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(fn(*args))
            except BaseException as e:      # handed to whoever waits for it
                future.set_exception(e)

    def _decode(self, batch: list[tuple[Job, int]], nested: bool = False) -> None:
        """Decode ``batch``; unless it is itself a newcomers' batch, newcomers may run at its yield points."""
        job = batch[0][0]
        start = time.monotonic()
        if not nested:
            self._cut_in_below = max(len(j.audio[i]) for j, i in batch) // 2
            self._batch_started, self._cut_in_seconds = start, 0.0
        try:
            with yielding_to(None if nested else self._let_newcomers_in):
                results = job.recognizer.transcribe_batch([j.audio[i] for j, i in batch], **job.options)
        except Exception as e:      # a bug or a bad option: these requests fail, the server goes on
            if isinstance(e, AsrforgeError):
                error = ApiError(400, str(e), None, "invalid_value")
            else:
                log.exception("transcription failed")
                error = ApiError(500, f"transcription failed ({type(e).__name__}: {e}); the server goes on serving")
            with self._cond:
                for j, _ in batch:
                    j.out -= 1
                    j.fail(error)
                self._cond.notify()
            return
        self._seconds_per_piece = 0.8 * self._seconds_per_piece + 0.2 * (time.monotonic() - start) / len(batch)
        with self._cond:
            for (j, i), result in zip(batch, results):
                if not j.cancelled:
                    j.deliver(i, result)
                else:
                    j.out -= 1
            for j in {id(j): j for j, _ in batch}.values():
                if all(r is not None for r in j.results) or (j.cancelled and j.out == 0):
                    if j in self._jobs:
                        self._jobs.remove(j)
            self._cond.notify()
