"""TED-LIUM release 3: ``SRC/legacy/{train,dev,test}/{sph,stm}`` (the standard splits) or ``SRC/data/{sph,stm}``
(all training talks). One manifest entry per STM segment, with ``offset`` and ``duration``.

STM line: ``<talk> <channel> <speaker> <start> <end> <label> <transcript>``. Segments whose transcript is
``ignore_time_segment_in_scoring`` are dropped (not reported: they are by design). ``<unk>`` and noise
markers are left to the normalizer; the corpus' split contractions ("it 's") are rejoined.
"""

from __future__ import annotations

import re
from pathlib import Path

from asrforge.data.importers.base import Candidate, LayoutError, SplitListing
from asrforge.data.manifest import Skipped

IGNORE = "ignore_time_segment_in_scoring"
_CONTRACTION = re.compile(r"(\w) '(\w)")


def _split_dirs(src: Path) -> dict[str, Path]:
    if (src / "legacy").is_dir():
        return {d.name: d for d in sorted((src / "legacy").iterdir()) if (d / "stm").is_dir()}
    if (src / "data" / "stm").is_dir():
        return {"train": src / "data"}
    return {}


def parse_stm_line(line: str) -> tuple[str, str, float, float, str] | None:
    """-> (talk, speaker, start, end, transcript), or None when the line does not parse.
    The ``<label>`` field (``<o,f0,male>``) is optional."""
    parts = line.split(None, 5)
    if len(parts) < 5:
        return None
    talk, _, speaker, start, end = parts[:5]
    try:
        t0, t1 = float(start), float(end)
    except ValueError:
        return None
    if t1 <= t0:
        return None
    rest = parts[5] if len(parts) == 6 else ""
    if rest.startswith("<") and ">" in rest:
        rest = rest[rest.index(">") + 1 :]
    return talk, speaker, t0, t1, rest.strip()


def list_tedlium(src: Path) -> dict[str, SplitListing]:
    dirs = _split_dirs(src)
    if not dirs:
        raise LayoutError(f"{src} is not a TED-LIUM 3 folder: expected SRC/legacy/{{train,dev,test}}/{{sph,stm}} "
                          "or SRC/data/{sph,stm}")
    splits = {}
    for split, folder in dirs.items():
        listing = splits[split] = SplitListing()
        for stm in sorted((folder / "stm").glob("*.stm")):
            for n, line in enumerate(stm.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
                if not line.strip() or line.startswith(";;"):
                    continue
                parsed = parse_stm_line(line)
                if parsed is None:
                    listing.skipped.append(Skipped(f"{stm}:{n}", "STM line does not parse (expected "
                                                                 "'<talk> <channel> <speaker> <start> <end> <label> <text>')"))
                    continue
                talk, speaker, t0, t1, text = parsed
                if text.strip() == IGNORE:
                    continue
                text = _CONTRACTION.sub(r"\1'\2", text)
                uid = f"{talk}-{int(round(t0 * 100)):07d}-{int(round(t1 * 100)):07d}"
                listing.candidates.append(Candidate(uid, str(folder / "sph" / f"{talk}.sph"), text, speaker, t0, t1 - t0))
    return splits
