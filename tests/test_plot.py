"""``asrforge plot``: runs' training curves overlaid in one PNG; a missing or corrupt log is named."""

from __future__ import annotations

import json

import pytest

from asrforge.cli import main
from asrforge.cli.plot import _minutes, read_log

pytest.importorskip("matplotlib")      # the plot extra, in the test extra


def _run(folder, with_minutes: bool):
    folder.mkdir()
    lines = []
    for epoch in range(3):
        for k in range(1, 4):
            step = epoch * 3 + k
            record = {"step": step, "epoch": epoch, "loss": 5.0 / step, "lr": 1e-3, "grad_norm": 1.0, "utts_per_s": 50}
            if with_minutes:
                record["elapsed_min"] = step / 3
            lines.append(record)
        lines.append({"epoch": epoch + 1, "step": 3 * epoch + 3, "elapsed_min": epoch + 1.0, "dev_wer": 0.9 - 0.3 * epoch,
                      "dev_cer": 0.5, "dev_loss": 2.0})
    (folder / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder


def test_plot_overlays_runs_and_times_older_logs_by_their_validations(tmp_path, capsys):
    new, old = _run(tmp_path / "new", True), _run(tmp_path / "old", False)
    out = tmp_path / "curves.png"
    assert main(["plot", str(new), str(old), "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    assert "2 run(s)" in capsys.readouterr().out
    steps, evals = read_log(old)
    # steps 1..9, validations at steps 3, 6, 9 after 1, 2, 3 minutes: wall time interpolated in between
    assert _minutes(steps, evals) == pytest.approx([s / 3 for s in range(1, 10)])


def test_a_missing_or_corrupt_log_is_named(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "train_log.jsonl does not exist" in capsys.readouterr().err
    bad = _run(tmp_path / "bad", True)
    with open(bad / "train_log.jsonl", "a") as f:
        f.write('{"step": 10, "lo')
    assert main(["plot", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "line 13 is not JSON" in err and str(bad) in err
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "train_log.jsonl").write_text("")
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "holds no training step or validation yet" in capsys.readouterr().err
