"""``diarize``: who spoke when in each recording, printed as turns and written as NIST RTTM."""

from __future__ import annotations

import sys
from pathlib import Path

from asrforge.cli.args import add_diarize_arguments, diarize_options
from asrforge.errors import AsrforgeError


def add_parsers(sub) -> None:
    d = sub.add_parser("diarize", help="find who spoke when in recordings (NIST RTTM; extra diarize)")
    d.add_argument("audio", nargs="+", help="audio files, or folders (every audio file below them)")
    d.add_argument("--output-dir", help="write <audio stem>.rttm here (one SPEAKER line per turn)")
    d.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto: where the embedding model runs")
    add_diarize_arguments(d)
    d.set_defaults(func=diarize, parser=d, trailing="audio")


def diarize(args) -> int:
    """Diarize each file; a bad file is reported and skipped, the rest still run. Returns the failures."""
    from asrforge_runtime.audio import load_audio
    from asrforge.cli.transcribe import audio_inputs
    from asrforge.devices import resolve_device
    from asrforge.inference.diarization import load_diarizer
    from asrforge.inference.rttm import write_rttm

    if "-" in args.audio:
        raise AsrforgeError("diarize reads files or folders, not standard input; save the audio to a file first")
    options = diarize_options(args)
    inputs = audio_inputs(args.audio)
    diarizer = load_diarizer(args.embedding_model, str(resolve_device(args.device)), options)
    failures = 0
    for path, name in inputs:
        try:
            result = diarizer(load_audio(path), source=path)
        except AsrforgeError as e:
            print(f"asrforge: skipped {path}: {e}", file=sys.stderr)
            failures += 1
            continue
        speakers = result.speakers
        print(f"{path}: {len(speakers)} speaker(s), {len(result.turns)} turn(s) in {result.duration:.1f} s")
        for turn in result.turns:
            print(f"  {turn.start:8.2f} {turn.end:8.2f}  {turn.speaker}")
        if result.note:
            print(f"asrforge: {path}: {result.note}", file=sys.stderr)
        if args.output_dir:
            written = write_rttm(Path(args.output_dir) / f"{name}.rttm", Path(name).name, result.turns)
            print(f"wrote {written}", file=sys.stderr)
    if failures == len(inputs):
        raise AsrforgeError(f"none of the {len(inputs)} file(s) could be diarized")
    return failures
