"""``compare``: whether two evaluations of the same manifest really differ (paired bootstrap and sclite's MAPSSWE)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from asrforge.errors import AsrforgeError, ConfigError
from asrforge.metrics import ErrorReport
from asrforge.significance import RESAMPLES, mapsswe, paired_bootstrap
from asrforge.text.scoring import NORMALIZERS, scoring_normalizer


def add_parsers(sub) -> None:
    c = sub.add_parser("compare", help="is system B's WER really different from A's? (two `evaluate --json` files)")
    c.add_argument("a", help="`asrforge evaluate --json` of system A")
    c.add_argument("b", help="the same of system B, on the same manifest")
    c.add_argument("--json", help="write wer_a, wer_b, delta, delta_ci, p_bootstrap, p_mapsswe here")
    c.add_argument("--bootstrap", type=int, default=RESAMPLES, metavar="N",
                   help=f"paired bootstrap resamples (default {RESAMPLES})")
    c.add_argument("--normalizer", choices=NORMALIZERS,
                   help="score both again after this normalizer, from the texts as written (default: as evaluated, "
                        "which must then be the same for both)")
    c.set_defaults(func=compare, parser=c)


def read_evaluation(path: str | Path) -> dict:
    """An ``evaluate --json`` file with its per-utterance results, or an error naming the file and what it lacks."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AsrforgeError(f"{path} does not exist; write it with `asrforge evaluate ... --json {path}`") from None
    except (OSError, ValueError) as e:
        raise AsrforgeError(f"{path} is not an evaluation's JSON ({e}); write it with `asrforge evaluate ... --json`") \
            from None
    rows = data.get("utterances") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise AsrforgeError(f"{path} holds no per-utterance results (`utterances`); it was written before evaluate "
                            "kept them: evaluate the model again with --json")
    needed = {"id", "reference", "hypothesis", "sub", "del", "ins", "words"}
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not needed <= row.keys():
            raise AsrforgeError(f"{path}: utterance {i} lacks {sorted(needed - set(row) if isinstance(row, dict) else needed)}")
    return data


def rescored(data: dict, path: str | Path, normalizer: str) -> dict:
    """The evaluation ``data`` (read from ``path``) scored again after ``normalizer``, from each utterance's texts
    as written; an error naming the file if it did not keep them."""
    normalize = scoring_normalizer(normalizer)
    report = ErrorReport()
    for row in data["utterances"]:
        if "written_reference" not in row or "written_hypothesis" not in row:
            raise AsrforgeError(f"{path}: utterance {row['id']} has no texts as written (`written_reference`, "
                                f"`written_hypothesis`) to normalize again; it was written before evaluate kept "
                                f"them: evaluate the model again with --json, or compare without --normalizer")
        written = (row["written_reference"], row["written_hypothesis"])
        report.add(row["id"], normalize(written[0]), normalize(written[1]), row.get("speaker"), written)
    return {**data, "utterances": report.utterance_rows(), "normalizer": normalizer}


def paired_rows(a: dict, b: dict, name_a: str, name_b: str) -> list[tuple[dict, dict]]:
    """The two evaluations' utterances matched by id; an error unless they cover the same utterances and references,
    scored with the same normalizer."""
    if a.get("normalizer", "basic") != b.get("normalizer", "basic"):
        raise AsrforgeError(f"{name_a} was scored with the {a.get('normalizer', 'basic')} normalizer and {name_b} with "
                            f"{b.get('normalizer', 'basic')}: evaluate both with the same one, or give "
                            "--normalizer NAME to score both again after one")
    by_id = {r["id"]: r for r in b["utterances"]}
    ids_a = [r["id"] for r in a["utterances"]]
    only_a, only_b = set(ids_a) - by_id.keys(), by_id.keys() - set(ids_a)
    if only_a or only_b or len(ids_a) != len(by_id):
        example = sorted(only_a or only_b)[:3]
        raise AsrforgeError(f"{name_a} and {name_b} do not cover the same utterances ({len(only_a)} only in the first, "
                            f"{len(only_b)} only in the second, e.g. {example}): evaluate both on the same manifest")
    pairs = [(r, by_id[r["id"]]) for r in a["utterances"]]
    for ra, rb in pairs:
        if ra["reference"] != rb["reference"]:
            raise AsrforgeError(f"utterance {ra['id']} has another reference in {name_b} ({rb['reference']!r} against "
                                f"{ra['reference']!r}): the two were scored with different normalization or manifests")
    if not pairs:
        raise AsrforgeError(f"{name_a} and {name_b} hold no scored utterance; there is nothing to compare")
    return pairs


def compare(args) -> dict:
    if args.bootstrap < 1:
        raise ConfigError(f"--bootstrap takes a number of resamples, 1 or more; got {args.bootstrap}")
    a, b = read_evaluation(args.a), read_evaluation(args.b)
    if args.normalizer:
        a, b = rescored(a, args.a, args.normalizer), rescored(b, args.b, args.normalizer)
    pairs = paired_rows(a, b, args.a, args.b)
    errors = lambda r: r["sub"] + r["del"] + r["ins"]  # noqa: E731
    diff = paired_bootstrap([errors(ra) for ra, _ in pairs], [errors(rb) for _, rb in pairs],
                            [ra["words"] for ra, _ in pairs], args.bootstrap)
    z, p_mapsswe = mapsswe([ra["reference"] for ra, _ in pairs], [ra["hypothesis"] for ra, _ in pairs],
                           [rb["hypothesis"] for _, rb in pairs])
    out = {"a": str(args.a), "b": str(args.b), "utts": len(pairs), "words": sum(ra["words"] for ra, _ in pairs),
           "wer_a": diff.rate_a, "wer_b": diff.rate_b, "delta": diff.delta, "delta_ci": list(diff.interval),
           "p_bootstrap": diff.p, "z_mapsswe": z if math.isfinite(z) else None, "p_mapsswe": p_mapsswe, "bootstrap": args.bootstrap,
           "normalizer": a.get("normalizer", "basic")}
    print(f"scored after the {out['normalizer']} normalizer")
    print(f"A {args.a}: WER {100 * diff.rate_a:.2f}%\nB {args.b}: WER {100 * diff.rate_b:.2f}%\n"
          f"B - A: {100 * diff.delta:+.2f} points, 95% CI [{100 * diff.interval[0]:+.2f}, {100 * diff.interval[1]:+.2f}] "
          f"over {len(pairs)} utterances")
    print(f"paired bootstrap ({args.bootstrap} resamples): p = {diff.p:.4f}   MAPSSWE: z = {z:.2f}, p = {p_mapsswe:.4f}")
    verdict = "differ" if max(diff.p, p_mapsswe) < 0.05 else "are not shown to differ"
    print(f"at the 5% level the two {verdict}" + (" (by both tests)" if verdict == "differ" else ""))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1))
    return out
