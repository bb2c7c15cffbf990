"""Word and character error rates from a Levenshtein alignment, with S/D/I counts, an sclite-style
summary, per-utterance results and the most frequent confusions."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


@dataclass
class Alignment:
    """Edit operations turning ``ref`` into ``hyp``: pairs (ref_token|None, hyp_token|None)."""
    pairs: list[tuple[str | None, str | None]]
    sub: int
    dels: int
    ins: int
    hits: int


def align(ref: Sequence[str], hyp: Sequence[str]) -> Alignment:
    """Minimum-edit alignment (unit costs). Ties prefer substitution, then deletion, like sclite."""
    n, m = len(ref), len(hyp)
    # cost[i][j]: edits between ref[:i] and hyp[:j]
    cost = [list(range(m + 1))] + [[i] + [0] * m for i in range(1, n + 1)]
    for i in range(1, n + 1):
        row, prev, r = cost[i], cost[i - 1], ref[i - 1]
        for j in range(1, m + 1):
            row[j] = min(prev[j - 1] + (r != hyp[j - 1]), prev[j] + 1, row[j - 1] + 1)
    pairs: list[tuple[str | None, str | None]] = []
    i, j = n, m
    sub = dels = ins = hits = 0
    while i > 0 or j > 0:
        if i > 0 and j > 0 and cost[i][j] == cost[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            same = ref[i - 1] == hyp[j - 1]
            hits += same
            sub += not same
            pairs.append((ref[i - 1], hyp[j - 1]))
            i, j = i - 1, j - 1
        elif i > 0 and cost[i][j] == cost[i - 1][j] + 1:
            dels += 1
            pairs.append((ref[i - 1], None))
            i -= 1
        else:
            ins += 1
            pairs.append((None, hyp[j - 1]))
            j -= 1
    pairs.reverse()
    return Alignment(pairs, sub, dels, ins, hits)


@dataclass
class ErrorCounts:
    sub: int = 0
    dels: int = 0
    ins: int = 0
    ref_len: int = 0

    @property
    def errors(self) -> int:
        return self.sub + self.dels + self.ins

    @property
    def rate(self) -> float:
        # An empty reference with insertions is 100 % wrong per inserted token, not a division by zero.
        return self.errors / self.ref_len if self.ref_len else float(self.errors > 0)

    def add(self, a: Alignment, ref_len: int) -> None:
        self.sub += a.sub
        self.dels += a.dels
        self.ins += a.ins
        self.ref_len += ref_len


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    c = ErrorCounts()
    for r, h in zip(refs, hyps, strict=True):
        c.add(align(r.split(), h.split()), len(r.split()))
    return c.rate


def cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    c = ErrorCounts()
    for r, h in zip(refs, hyps, strict=True):
        c.add(align(list(r), list(h)), len(r))
    return c.rate


@dataclass
class UttResult:
    id: str
    ref: str
    hyp: str
    speaker: str | None
    words: Alignment
    chars: Alignment
    # the reference as the manifest writes it and the hypothesis as the model wrote it, before scoring normalized
    # them (what `compare --normalizer` scores again); None where the evaluator did not keep them
    written: tuple[str, str] | None = None

    @property
    def has_error(self) -> bool:
        return self.words.sub + self.words.dels + self.words.ins > 0


@dataclass
class ErrorReport:
    """Accumulates utterances; summarizes WER/CER, per speaker, and confusions."""
    utts: list[UttResult] = field(default_factory=list)

    def add(self, id: str, ref: str, hyp: str, speaker: str | None = None,
            written: tuple[str, str] | None = None) -> UttResult:
        res = UttResult(id, ref, hyp, speaker, align(ref.split(), hyp.split()), align(list(ref), list(hyp)), written)
        self.utts.append(res)
        return res

    def _counts(self, utts: list[UttResult]) -> tuple[ErrorCounts, ErrorCounts]:
        w, c = ErrorCounts(), ErrorCounts()
        for u in utts:
            w.add(u.words, len(u.ref.split()))
            c.add(u.chars, len(u.ref))
        return w, c

    def summary(self) -> dict:
        w, c = self._counts(self.utts)
        return {"wer": w.rate, "cer": c.rate, "utts": len(self.utts), "words": w.ref_len, "sub": w.sub,
                "del": w.dels, "ins": w.ins, "sentence_errors": sum(u.has_error for u in self.utts),
                "char_sub": c.sub, "char_del": c.dels, "char_ins": c.ins}

    def confusions(self, top: int = 10) -> dict[str, list[tuple[str, int]]]:
        subs, dels, ins = Counter(), Counter(), Counter()
        for u in self.utts:
            for r, h in u.words.pairs:
                if r is not None and h is not None and r != h:
                    subs[f"{r} -> {h}"] += 1
                elif h is None:
                    dels[r] += 1
                elif r is None:
                    ins[h] += 1
        return {"substitutions": subs.most_common(top), "deletions": dels.most_common(top), "insertions": ins.most_common(top)}

    def table(self) -> str:
        """sclite-style summary: one row per speaker and a total row, counts as % of reference words."""
        rows = []
        speakers = sorted({u.speaker for u in self.utts if u.speaker is not None})
        groups = [(s, [u for u in self.utts if u.speaker == s]) for s in speakers] if len(speakers) > 1 else []
        groups.append(("Sum/Avg", self.utts))
        header = f"| {'SPKR':<14} | {'#Snt':>5} | {'#Wrd':>6} | {'Corr':>5} | {'Sub':>5} | {'Del':>5} | {'Ins':>5} | {'Err':>5} | {'S.Err':>5} | {'CER':>5} |"
        line = "|" + "-" * (len(header) - 2) + "|"
        rows += [line, header, line]
        for name, utts in groups:
            w, c = self._counts(utts)
            n = max(w.ref_len, 1)
            serr = sum(u.has_error for u in utts)
            corr = 100 * (w.ref_len - w.sub - w.dels) / n
            if name == "Sum/Avg" and groups[:-1]:
                rows.append(line)
            rows.append(f"| {name[:14]:<14} | {len(utts):>5} | {w.ref_len:>6} | {corr:>5.1f} | {100*w.sub/n:>5.1f} | "
                        f"{100*w.dels/n:>5.1f} | {100*w.ins/n:>5.1f} | {100*w.rate:>5.1f} | {100*serr/max(len(utts),1):>5.1f} | {100*c.rate:>5.1f} |")
        rows.append(line)
        return "\n".join(rows)

    def write_utterances(self, path: str | Path) -> None:
        """Per-utterance results, sclite ``pra`` style: id, counts, then REF/HYP aligned with errors upper-cased."""
        lines = []
        for u in self.utts:
            refs, hyps = [], []
            for r, h in u.words.pairs:
                rr = "*" * len(h) if r is None else (r if r == h else r.upper())
                hh = "*" * len(r) if h is None else (h if r == h else h.upper())
                width = max(len(rr), len(hh))
                refs.append(rr.ljust(width))
                hyps.append(hh.ljust(width))
            lines += [f"id: {u.id}" + (f"  speaker: {u.speaker}" if u.speaker else ""),
                      f"Scores: (#C #S #D #I) {u.words.hits} {u.words.sub} {u.words.dels} {u.words.ins}",
                      "REF:  " + " ".join(refs), "HYP:  " + " ".join(hyps), ""]
        Path(path).write_text("\n".join(lines), encoding="utf-8")

    def utterance_rows(self) -> list[dict]:
        """Each utterance's scoring: id, speaker, reference, hypothesis, word errors by kind over its reference words,
        character errors over its reference characters (what ``evaluate --json`` holds and ``compare`` reads), and
        the texts as written before scoring normalized them (``written_reference``, ``written_hypothesis``)."""
        return [{"id": u.id, "speaker": u.speaker, "reference": u.ref, "hypothesis": u.hyp, "sub": u.words.sub,
                 "del": u.words.dels, "ins": u.words.ins, "words": len(u.ref.split()),
                 "char_errors": u.chars.sub + u.chars.dels + u.chars.ins, "chars": len(u.ref),
                 **({"written_reference": u.written[0], "written_hypothesis": u.written[1]} if u.written else {})}
                for u in self.utts]

    def write_jsonl(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            for row in self.utterance_rows():
                f.write(json.dumps(row) + "\n")
