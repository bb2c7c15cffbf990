"""A recording drawn as an SVG picture with its segments marked: what the web app shows beside the transcript.

People find their way in a recording by looking: where the speech is, where the long pauses are, which stretch a
segment covers. The picture is plain SVG (no plotting library, scales to any width): the waveform's envelope
(the lowest and highest sample in each column), a band under each segment with its number, and a time axis.
"""

from __future__ import annotations

import html

import numpy as np

from asrforge_runtime.result import Segment

COLUMNS = 600           # envelope columns: finer than a laptop screen needs, coarse enough to stay a few kB
HEIGHT = 120
AXIS = 18               # pixels under the waveform for the time axis
LEGEND = 16             # pixels above it naming the speakers, when segments have them
PALETTE = ("#2563eb", "#16a34a", "#d97706", "#dc2626", "#7c3aed", "#0891b2")   # segment bands, in turn


def envelope(wave: np.ndarray, columns: int = COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """Samples ``(N,)`` -> the lowest and highest sample of each of ``columns`` equal stretches ``(columns,)``
    each (fewer columns when there are fewer samples)."""
    columns = max(1, min(columns, len(wave)))
    edges = np.linspace(0, len(wave), columns + 1).astype(int)
    lows = np.minimum.reduceat(wave, edges[:-1]) if len(wave) else np.zeros(1)
    highs = np.maximum.reduceat(wave, edges[:-1]) if len(wave) else np.zeros(1)
    return lows, highs


def _escape(text: str) -> str:
    """Text for the SVG, which Gradio's HTML component also reads as a JS and Handlebars template: ``$`` and
    braces in a transcript must not be taken for template tags."""
    return html.escape(text).replace("$", "&#36;").replace("{", "&#123;").replace("}", "&#125;")


def _tick_step(duration: float) -> float:
    """A round number of seconds between axis labels: about 8 labels across."""
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600):
        if duration / step <= 8:
            return step
    return 7200


def _clock(seconds: float, duration: float) -> str:
    """An axis label: seconds for a recording under a minute ("1.5 s"), else minutes and seconds ("2:05")."""
    if duration < 60:
        return f"{seconds:g} s"
    minutes, s = divmod(int(round(seconds)), 60)
    return f"{minutes}:{s:02d}"


class Waveform:
    """A recording's picture, drawn once (the envelope and the time axis) and given the segments decoded so far
    each time the page updates: ``Waveform(wave, 16000).svg(segments)``."""

    def __init__(self, wave: np.ndarray, sample_rate: int, columns: int = COLUMNS):
        """16 kHz samples ``(N,)``; the envelope reads every sample once, so a long recording is drawn here and not
        again for each update."""
        self.duration = max(len(wave) / sample_rate, 1e-3)
        lows, highs = envelope(np.asarray(wave, np.float32), columns)
        n = len(lows)
        peak = float(max(np.max(np.abs(lows)), np.max(np.abs(highs)), 1e-4))
        mid = HEIGHT / 2
        x = (np.arange(n) + 0.5) * (COLUMNS / n)
        top = mid - highs / peak * (mid - 4)
        bottom = mid - lows / peak * (mid - 4)
        outline = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, top))
        outline += " " + " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(x[::-1], bottom[::-1]))
        self.shape = f'<polygon points="{outline}" fill="#334155"/>'
        step = _tick_step(self.duration)
        ticks = []
        for k in range(int(self.duration / step) + 1):
            t = k * step
            px = COLUMNS * t / self.duration
            anchor = "start" if k == 0 else ("end" if px > COLUMNS - 20 else "middle")
            ticks.append(f'<line x1="{px:.1f}" y1="{HEIGHT}" x2="{px:.1f}" y2="{HEIGHT + 4}" stroke="#64748b"/>'
                         f'<text x="{px:.1f}" y="{HEIGHT + 15}" font-size="10" fill="#475569" '
                         f'text-anchor="{anchor}">{_clock(t, self.duration)}</text>')
        self.axis = "".join(ticks)

    def svg(self, segments: list[Segment] = ()) -> str:
        """An SVG element (a string) as wide as its container. Each segment is a tinted band over its time span,
        labelled with its number (the row of the segment table), with its text as the band's tooltip. Segments
        with speakers are coloured by speaker (one colour per speaker, named in a legend) instead of in turn."""
        duration = self.duration
        speakers = list(dict.fromkeys(s.speaker for s in segments if s.speaker))
        legend = LEGEND if speakers else 0         # a strip above the waveform naming each speaker's colour
        parts = [f'<svg class="asrforge-waveform" viewBox="0 0 {COLUMNS} {legend + HEIGHT + AXIS}" width="100%" '
                 f'role="img" aria-label="waveform of the recording, {duration:.1f} s, {len(segments)} segments'
                 + (f', {len(speakers)} speakers' if speakers else '') + '" xmlns="http://www.w3.org/2000/svg">']
        for k, speaker in enumerate(speakers):
            x = 2 + 72 * k
            parts.append(f'<g class="speaker"><rect x="{x}" y="2" width="10" height="10" '
                         f'fill="{PALETTE[k % len(PALETTE)]}"/><text x="{x + 13}" y="11" font-size="10" '
                         f'fill="#334155">{_escape(speaker)}</text></g>')
        parts += [f'<g transform="translate(0,{legend})">',
                  f'<rect x="0" y="0" width="{COLUMNS}" height="{HEIGHT}" fill="#f8fafc"/>']
        for i, s in enumerate(segments):
            left = COLUMNS * max(0.0, s.start) / duration
            width = max(1.0, COLUMNS * (min(s.end, duration) - max(0.0, s.start)) / duration)
            by = speakers.index(s.speaker) if s.speaker in speakers else i
            color = PALETTE[by % len(PALETTE)]
            who = f"{_escape(s.speaker)} " if s.speaker else ""
            parts.append(f'<g class="segment" data-speaker="{_escape(s.speaker or "")}"><title>{i}: {s.start:.2f}-'
                         f'{s.end:.2f} s {who}{_escape(s.text.strip())}</title><rect x="{left:.1f}" y="0" '
                         f'width="{width:.1f}" height="{HEIGHT}" fill="{color}" fill-opacity="0.14"/><rect '
                         f'x="{left:.1f}" y="{HEIGHT - 4}" width="{width:.1f}" height="4" fill="{color}"/><text '
                         f'x="{left + 2:.1f}" y="11" font-size="10" fill="{color}">{i}</text></g>')
        parts += [self.shape, self.axis, "</g>", "</svg>"]
        return "".join(parts)
