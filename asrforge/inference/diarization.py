"""Who spoke when: a recording -> speaker turns.

Silero VAD finds the speech; sliding windows over each stretch of speech (``window_s`` long, every ``hop_s``) are
embedded by a speaker embedding model (:mod:`asrforge.inference.speaker_embedding`); the embeddings are clustered
(:mod:`asrforge.inference.speaker_clustering`); every 10-ms frame of speech then takes the speaker of the windows
that cover it, weighted toward the window whose centre is nearest, which re-segments at the speaker changes
inside a stretch of speech; turns shorter than ``min_turn_s`` join a neighbour, and a speaker's turns with a pause
under ``join_gap_s`` between them become one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from asrforge.extras import require_extra
from asrforge.inference.speaker_clustering import Method, cluster_speakers
from asrforge.inference.speaker_embedding import load_embedder
from asrforge.inference.vad import SAMPLE_RATE, VadOptions, speech_spans

FRAME = 0.01              # seconds per frame of the speaker map
MOST_SPEAKERS = 8         # the most speakers found when no bound is given
MIN_WINDOW_S = 0.4        # a stretch of speech shorter than this is not embedded; it takes its neighbours' speaker
# Speech for diarization: a lower threshold and wider margins than transcription's cutting uses, since speech
# missed here is counted against the turns (on the benchmark's conversations: 1.2 % missed, 0.2 % false alarm)
SPEECH = VadOptions(threshold=0.35, min_silence_ms=100, speech_pad_ms=100, max_chunk_s=1e9)


@dataclass(frozen=True)
class DiarizeOptions:
    num_speakers: int | None = None     # known beforehand; None: estimated within [min_speakers, max_speakers]
    min_speakers: int = 1
    max_speakers: int | None = None     # None: 8, or min_speakers when that is more
    window_s: float = 1.5
    hop_s: float = 0.25
    method: Method = "spectral"
    threshold: float = 0.35             # agglomerative: the cosine distance under which clusters merge
    min_turn_s: float = 0.3
    join_gap_s: float = 0.5

    def __post_init__(self):
        if self.max_speakers is None:
            object.__setattr__(self, "max_speakers", max(MOST_SPEAKERS, self.min_speakers))

    def check(self) -> "DiarizeOptions":
        from asrforge.errors import ConfigError
        if self.num_speakers is not None and self.num_speakers < 1:
            raise ConfigError(f"num_speakers must be at least 1, not {self.num_speakers}")
        if self.min_speakers < 1 or self.max_speakers < self.min_speakers:
            raise ConfigError(f"min_speakers ({self.min_speakers}) must be at least 1 and at most max_speakers "
                              f"({self.max_speakers})")
        if not 0 < self.hop_s <= self.window_s:
            raise ConfigError(f"hop_s ({self.hop_s}) must be above 0 and at most window_s ({self.window_s})")
        return self


@dataclass
class Turn:
    start: float            # seconds
    end: float
    speaker: str            # SPEAKER_1, SPEAKER_2, ... in order of first appearance


@dataclass
class Diarization:
    turns: list[Turn] = field(default_factory=list)
    duration: float = 0.0
    source: str | None = None
    note: str | None = None     # what a person should know about this result (no speech; fewer speakers than asked)

    @property
    def speakers(self) -> list[str]:
        """The speakers in order of first appearance."""
        return list(dict.fromkeys(t.speaker for t in self.turns))

    def speaker_at(self, start: float, end: float) -> str | None:
        """The speaker whose turns overlap ``[start, end]`` most; for a span in a pause, the nearest turn's."""
        if not self.turns:
            return None
        overlap: dict[str, float] = {}
        for t in self.turns:
            shared = min(end, t.end) - max(start, t.start)
            if shared > 0:
                overlap[t.speaker] = overlap.get(t.speaker, 0.0) + shared
        if overlap:
            return max(overlap, key=overlap.__getitem__)
        middle = (start + end) / 2
        return min(self.turns, key=lambda t: max(t.start - middle, middle - t.end)).speaker


class Diarizer:
    """Holds the embedding model, so one process diarizes many recordings with one load."""

    def __init__(self, embedder, options: DiarizeOptions = DiarizeOptions()):
        self.embedder = embedder
        self.options = options.check()

    def __call__(self, wave: np.ndarray, options: DiarizeOptions | None = None, source: str | None = None
                 ) -> Diarization:
        """16-kHz samples ``(N,)`` -> the turns; no speech gives no turns."""
        opts = (options or self.options).check()
        duration = len(wave) / SAMPLE_RATE
        spans = speech_spans(wave, SPEECH)
        if not spans:
            return Diarization([], duration, source, "no speech found, so no speaker turns")
        frames = int(np.ceil(duration / FRAME))
        speech = np.zeros(frames, dtype=bool)
        for a, b in spans:
            speech[_frame(a): _frame(b)] = True
        windows = _windows(spans, opts.window_s, opts.hop_s)
        if not windows:     # only bursts too short to embed: there is no telling voices apart
            turns = _turns(np.where(speech, 0, -1), opts.min_turn_s, opts.join_gap_s)
            return Diarization(_named(turns), duration, source,
                               f"only {sum(b - a for a, b in spans) / SAMPLE_RATE:.1f} s of speech: too little to tell "
                               "voices apart, so it is given to one speaker")
        embeddings = self.embedder.embed([wave[a:b] for a, b in windows])
        labels = cluster_speakers(embeddings, opts.num_speakers, opts.min_speakers, opts.max_speakers, opts.method,
                                  opts.threshold)
        turns = _named(_turns(_vote(windows, labels, frames, speech), opts.min_turn_s, opts.join_gap_s))
        result = Diarization(turns, duration, source)
        asked = opts.num_speakers or opts.min_speakers
        if len(result.speakers) < asked:
            result.note = (f"{asked} speakers asked for, {len(result.speakers)} found: "
                           f"{len(windows)} windows of speech could not be split further")
        return result


def load_diarizer(embedding_model: str = "resemblyzer", device: str = "cpu",
                  options: DiarizeOptions = DiarizeOptions()) -> Diarizer:
    """The diarizer with its embedding model (``KIND`` or ``KIND:PATH``, see
    :mod:`asrforge.inference.speaker_embedding`) loaded; a clear error when the ``diarize`` extra is missing."""
    require_extra("diarize", "speaker diarization", "sklearn")
    return Diarizer(load_embedder(embedding_model, device), options)


def _frame(sample: int) -> int:
    return int(round(sample / SAMPLE_RATE / FRAME))


def _windows(spans: list[tuple[int, int]], window_s: float, hop_s: float) -> list[tuple[int, int]]:
    """Sample ranges to embed: each span of speech covered by windows of ``window_s`` every ``hop_s`` (the last
    one ending at the span's end); a span shorter than a window is one window."""
    win, hop, shortest = (int(x * SAMPLE_RATE) for x in (window_s, hop_s, MIN_WINDOW_S))
    out = []
    for a, b in spans:
        if b - a < shortest:
            continue
        if b - a <= win:
            out.append((a, b))
            continue
        starts = list(range(a, b - win + 1, hop))
        if starts[-1] != b - win:
            starts.append(b - win)
        out += [(s, s + win) for s in starts]
    return out


def _vote(windows: list[tuple[int, int]], labels: np.ndarray, frames: int, speech: np.ndarray) -> np.ndarray:
    """``(frames,)`` speaker per frame (-1: no speech). Each window votes for its speaker over the frames it covers,
    most at its centre (a triangle), so a frame goes to the speaker of the windows centred nearest it; speech
    frames no window covers take the nearest covered frame's speaker."""
    k = int(labels.max()) + 1
    votes = np.zeros((frames, k))
    for (a, b), label in zip(windows, labels):
        fa, fb = _frame(a), min(_frame(b), frames)
        if fb <= fa:
            continue
        weight = 1.0 - np.abs(np.linspace(-1, 1, fb - fa)) + 1e-3
        votes[fa:fb, label] += weight
    covered = votes.sum(axis=1) > 0
    out = np.where(covered, votes.argmax(axis=1), -1)
    if not covered.any():
        return np.full(frames, -1)
    idx = np.flatnonzero(covered)
    nearest = idx[np.clip(np.searchsorted(idx, np.arange(frames)), 0, len(idx) - 1)]
    before = idx[np.clip(np.searchsorted(idx, np.arange(frames)) - 1, 0, len(idx) - 1)]
    pick = np.where(np.abs(before - np.arange(frames)) < np.abs(nearest - np.arange(frames)), before, nearest)
    out = np.where(speech & ~covered, out[pick], out)
    return np.where(speech | covered, out, -1)


def _turns(frame_labels: np.ndarray, min_turn_s: float, join_gap_s: float) -> list[list]:
    """Runs of one speaker -> ``[[start_s, end_s, label], ...]``: short runs join a neighbour, then a speaker's
    runs with short pauses between them are joined."""
    runs = []
    for i, label in enumerate(frame_labels):
        if label < 0:
            continue
        if runs and runs[-1][2] == label and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1, int(label)])
    min_frames, gap_frames = min_turn_s / FRAME, join_gap_s / FRAME
    runs = _join(runs, gap_frames)
    while True:     # the shortest too-short run near another speaker's takes the nearer one's speaker, repeatedly
        def gap(i: int, j: int) -> float:
            return max(runs[j][0] - runs[i][1], runs[i][0] - runs[j][1]) if 0 <= j < len(runs) else np.inf
        short = [i for i, (a, b, label) in enumerate(runs) if b - a < min_frames
                 and min(gap(i, i - 1), gap(i, i + 1)) <= gap_frames]
        if not short:
            break
        i = min(short, key=lambda j: runs[j][1] - runs[j][0])
        runs[i][2] = runs[i - 1][2] if gap(i, i - 1) <= gap(i, i + 1) else runs[i + 1][2]
        runs = _join(runs, gap_frames)     # it joins that neighbour: one run fewer each time
    return [[a * FRAME, b * FRAME, label] for a, b, label in runs]


def _join(runs: list[list], gap_frames: float) -> list[list]:
    out: list[list] = []
    for run in runs:
        if out and out[-1][2] == run[2] and run[0] - out[-1][1] <= gap_frames:
            out[-1][1] = run[1]
        else:
            out.append(list(run))
    return out


def _named(turns: list[list]) -> list[Turn]:
    names: dict[int, str] = {}
    for _, _, label in turns:
        names.setdefault(label, f"SPEAKER_{len(names) + 1}")
    return [Turn(round(a, 3), round(b, 3), names[label]) for a, b, label in turns]
