"""Pictures of an :class:`~asrforge.train.examples.Example` for TensorBoard, drawn with matplotlib (the
``tensorboard`` extra holds it) off-screen: each function returns an RGB image ``(H, W, 3)`` uint8.

- :func:`posteriorgram_image`: the CTC head's probability of each token at each encoder frame, against seconds;
  only the rows a reader needs (the blank and every token that reaches :data:`ROW_PEAK` somewhere), so a 500-piece
  vocabulary stays readable;
- :func:`attention_image`: for each token the decoder predicts (rows, top to bottom), its attention over the encoder
  frames (seconds), one panel per decoder layer: a trained model draws a diagonal.
"""

from __future__ import annotations

import numpy as np

from asrforge.train.examples import Example

ROW_PEAK = 0.02       # a token appears in the posteriorgram when its probability reaches this on some frame
MAX_ROWS = 48         # and at most this many of the most probable ones
MAX_LABELLED_ROWS = 60     # an attention panel names its rows up to this many
MAX_PANEL_INCHES = 6.0     # a long hypothesis (a model babbling early in training) squeezes its rows instead


def _render(figure) -> np.ndarray:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _figure(width: float, height: float):
    from matplotlib.figure import Figure     # not pyplot: no window, no global figure state

    return Figure(figsize=(width, height), dpi=100)


def posteriorgram_rows(posteriors: np.ndarray, blank: int = 0) -> list[int]:
    """The token ids ``posteriors (T', V)`` shows: the blank and those peaking at ``ROW_PEAK`` or more (at most
    ``MAX_ROWS``, the highest peaks), in id order."""
    peaks = posteriors.max(axis=0)
    order = [int(i) for i in np.argsort(-peaks, kind="stable") if peaks[i] >= ROW_PEAK and i != blank]
    return sorted({blank, *order[: MAX_ROWS - 1]})


def posteriorgram_image(example: Example) -> np.ndarray:
    posteriors = example.posteriors
    rows = posteriorgram_rows(posteriors)
    seconds = posteriors.shape[0] * example.frame_seconds
    figure = _figure(8.0, max(2.4, 0.9 + 0.16 * len(rows)))
    axes = figure.add_subplot()
    shown = axes.imshow(posteriors[:, rows].T, aspect="auto", origin="lower", interpolation="nearest", vmin=0.0,
                        vmax=1.0, extent=(0.0, seconds, -0.5, len(rows) - 0.5), cmap="viridis")
    axes.set_yticks(range(len(rows)), [example.labels[r] for r in rows], fontsize=7)
    axes.set_xlabel("seconds")
    axes.set_title(f"{example.uid}: CTC posteriors (tokens reaching {ROW_PEAK:.0%})", fontsize=9)
    figure.colorbar(shown, ax=axes, fraction=0.03, pad=0.01)
    return _render(figure)


def attention_image(example: Example) -> np.ndarray:
    weights = example.attention                           # (P, L, T')
    panels, length, frames = weights.shape
    seconds = frames * example.frame_seconds
    labelled = length <= MAX_LABELLED_ROWS
    height = min(MAX_PANEL_INCHES, max(1.6, 0.5 + 0.12 * length))
    figure = _figure(8.0, 0.4 + panels * height)
    for p in range(panels):
        axes = figure.add_subplot(panels, 1, p + 1)
        axes.imshow(weights[p], aspect="auto", origin="upper", interpolation="nearest", cmap="viridis", vmin=0.0,
                    extent=(0.0, seconds, length - 0.5, -0.5))
        if labelled:
            axes.set_yticks(range(length), example.attention_rows, fontsize=6)
        axes.set_ylabel("output token", fontsize=8)
        axes.set_title(f"{example.uid}: {example.attention_panels[p]}", fontsize=9)
    axes.set_xlabel("seconds")
    return _render(figure)
