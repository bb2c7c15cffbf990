"""Free Spoken Digit Dataset: ``SRC/recordings/{digit}_{speaker}_{index}.wav``.

Splits. Without held-out speakers: the dataset's own test split (index 0-4), dev = index 5-9, train = the rest.
With ``holdout_speakers``: test = every recording of those speakers; dev = index 0-4 of the others;
train = the others' remaining recordings — the honest measure on voices never heard.
"""

from __future__ import annotations

import re
from pathlib import Path

from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped
from asrforge.data.synth.grammar import DIGITS

NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def list_fsdd(src: Path, holdout_speakers: tuple[str, ...] = ()) -> dict[str, SplitListing]:
    folder = src / "recordings" if (src / "recordings").is_dir() else src
    files = sorted(folder.glob("*.wav"))
    if not any(NAME.match(f.name) for f in files):
        raise LayoutError(f"{src} is not the Free Spoken Digit Dataset: expected SRC/recordings/{{digit}}_{{speaker}}_{{index}}.wav")
    speakers = {NAME.match(f.name).group(2) for f in files if NAME.match(f.name)}
    unknown = set(holdout_speakers) - speakers
    if unknown:
        raise LayoutError(f"held-out speaker(s) {', '.join(sorted(unknown))} not in {src}; speakers: {', '.join(sorted(speakers))}")
    splits = {name: SplitListing() for name in ("train", "dev", "test")}
    for f in files:
        m = NAME.match(f.name)
        if not m:
            splits["train"].skipped.append(Skipped(str(f), "file name is not {digit}_{speaker}_{index}.wav"))
            continue
        digit, speaker, index = int(m.group(1)), m.group(2), int(m.group(3))
        if holdout_speakers:
            split = "test" if speaker in holdout_speakers else ("dev" if index < 5 else "train")
        else:
            split = "test" if index < 5 else ("dev" if index < 10 else "train")
        splits[split].candidates.append(Candidate(f.stem, str(f), DIGITS[digit], speaker))
    return splits
