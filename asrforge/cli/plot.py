"""``plot``: training curves of one or more runs, overlaid, from their ``train_log.jsonl``."""

from __future__ import annotations

import json
from pathlib import Path

from asrforge.errors import AsrforgeError
from asrforge.extras import require_extra

LOG = "train_log.jsonl"


def add_parsers(sub) -> None:
    p = sub.add_parser("plot", help="training loss and dev WER of runs, overlaid, against steps and wall time (PNG)")
    p.add_argument("runs", nargs="+", metavar="EXP", help="experiment folders (each holding train_log.jsonl)")
    p.add_argument("--out", default="curves.png", help="the picture to write (default curves.png)")
    p.set_defaults(func=plot, parser=p)


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    """A run's training records (step, loss, ...) and its validations (epoch, step, dev_wer, ...), or an error naming
    the file and what it lacks."""
    path = run if run.suffix == ".jsonl" else run / LOG     # an experiment folder, or its log itself
    if not path.is_file():
        raise AsrforgeError(f"{path} does not exist: `asrforge plot` reads the {LOG} that `asrforge train --out "
                            f"{run}` writes")
    steps, evals = [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise AsrforgeError(f"{path} line {n} is not JSON; the log is corrupt (a run killed mid-write leaves at "
                                "most its last line so: delete that line)") from None
        if "loss" in record and "step" in record:
            steps.append(record)
        elif "dev_wer" in record or "dev_loss" in record:
            evals.append(record)
    if not steps and not evals:
        raise AsrforgeError(f"{path} holds no training step or validation yet")
    return steps, evals


def _minutes(steps: list[dict], evals: list[dict]) -> list[float | None]:
    """Each training record's wall-clock minutes: its own, or interpolated between validations (older logs)."""
    known = [(0, 0.0)] + [(e["step"], e["elapsed_min"]) for e in evals if "elapsed_min" in e]
    out = []
    for r in steps:
        if "elapsed_min" in r:
            out.append(r["elapsed_min"])
            continue
        after = next(((s, m) for s, m in known if s >= r["step"]), None)
        before = max(((s, m) for s, m in known if s <= r["step"]), default=(0, 0.0))
        if after is None or after[0] == before[0]:
            out.append(before[1] if after is None else after[1])
        else:
            out.append(before[1] + (after[1] - before[1]) * (r["step"] - before[0]) / (after[0] - before[0]))
    return out


def plot(args) -> int:
    require_extra("plot", "asrforge plot", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")            # a file, no display
    import matplotlib.pyplot as plt

    runs = [(Path(r), *read_log(Path(r))) for r in args.runs]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex="col")
    for run, steps, evals in runs:
        name = run.parent.name if run.suffix == ".jsonl" else run.name
        minutes = _minutes(steps, evals)
        line, = axes[0, 0].plot([r["step"] for r in steps], [r["loss"] for r in steps], label=name)
        axes[0, 1].plot(minutes, [r["loss"] for r in steps], color=line.get_color(), label=name)
        scored = [e for e in evals if e.get("dev_wer") is not None]
        axes[1, 0].plot([e["step"] for e in scored], [100 * e["dev_wer"] for e in scored], "o-",
                        color=line.get_color(), label=name)
        axes[1, 1].plot([e.get("elapsed_min", 0.0) for e in scored], [100 * e["dev_wer"] for e in scored], "o-",
                        color=line.get_color(), label=name)
    axes[0, 0].set_ylabel("training loss")
    axes[1, 0].set_ylabel("dev WER (%)")
    axes[1, 0].set_xlabel("step")
    axes[1, 1].set_xlabel("wall-clock minutes")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    print(f"wrote {out} ({len(runs)} run(s))")
    return 0
