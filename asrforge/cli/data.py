"""Data commands: ``synth``, ``prepare``, ``export-kaldi``, ``shard``, ``tokenizer train``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from asrforge.cli.args import count, positive
from asrforge.errors import AsrforgeError


def add_parsers(sub) -> None:
    s = sub.add_parser("synth", help="synthesize a speech corpus with eSpeak NG (train/dev/test manifests)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--domain", choices=["digits", "commands"], default="digits")
    s.add_argument("--hours", type=positive, default=1.0, help="hours of training audio (dev/test are added)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=count, default=os.cpu_count() or 1)
    s.set_defaults(func=synth)

    pr = sub.add_parser("prepare", help="import a corpus into JSONL manifests (one per split) with a skip report")
    pr.add_argument("corpus", choices=["librispeech", "commonvoice", "tedlium", "fsdd", "folder", "kaldi"])
    pr.add_argument("src", help="the folder the corpus was extracted to (folder: also a .csv/.tsv table)")
    pr.add_argument("--out", required=True, help="output folder for <split>.jsonl, skipped.jsonl, summary.json")
    pr.add_argument("--workers", type=count, default=None, help="parallel header checks (default: 4 per core, at most 16)")
    pr.add_argument("--holdout-speakers", default="", help="fsdd: comma-separated speakers kept out of train/dev for test")
    pr.add_argument("--include-validated", action="store_true", help="commonvoice: also import validated.tsv")
    pr.add_argument("--audio-only", action="store_true",
                    help="folder: list every audio file with an empty transcript (noise or impulse responses for "
                         "augment.*, untranscribed audio for asrforge adapt)")
    pr.set_defaults(func=prepare)

    k = sub.add_parser("export-kaldi", help="write a manifest as a Kaldi data directory")
    k.add_argument("manifest", help="JSONL manifest")
    k.add_argument("--out", required=True, help="data directory to write: wav.scp (non-WAV audio through flac, "
                   "sph2pipe or ffmpeg commands, as Kaldi recipes write them), text, utt2spk, spk2utt, segments")
    k.set_defaults(func=export_kaldi)

    sh = sub.add_parser("shard", help="write a manifest as WebDataset tar shards (FLAC + JSON per utterance)")
    sh.add_argument("manifest")
    sh.add_argument("--out", required=True)
    sh.add_argument("--shard-size", type=count, default=1000, help="utterances per shard")
    sh.add_argument("--seed", type=int, default=0, help="shuffle before sharding, so shards mix speakers")
    sh.add_argument("--workers", type=count, help="threads decoding and encoding audio (default: CPUs, at most 8)")
    sh.set_defaults(func=shard)

    tk = sub.add_parser("tokenizer", help="train a SentencePiece tokenizer")
    tk_sub = tk.add_subparsers(dest="action", required=True)
    tt = tk_sub.add_parser("train", help="train a BPE or unigram model on a manifest's normalized text")
    tt.add_argument("--manifest", required=True)
    tt.add_argument("--vocab", type=count, required=True, help="number of pieces")
    tt.add_argument("--type", choices=["bpe", "unigram"], default="bpe")
    tt.add_argument("--out", required=True, help="where to write the .model file")
    tt.set_defaults(func=tokenizer_train)


def synth(args) -> None:
    from asrforge.data.synth import SynthConfig, synthesize_corpus

    summary = synthesize_corpus(args.out, SynthConfig(domain=args.domain, hours=args.hours, seed=args.seed), workers=args.workers)
    for split in ("train", "dev", "test"):
        s = summary[split]
        print(f"{split:>5}: {s['utts']} utterances, {s['hours']:.2f} h, {s['speakers']} voices -> {Path(args.out) / (split + '.jsonl')}")
    print(f"test voices (never in train/dev): {', '.join(summary['voices']['test'])}")


def prepare(args) -> None:
    from asrforge.data.importers import prepare as prepare_corpus

    options = {}
    if args.holdout_speakers:
        if args.corpus != "fsdd":
            raise AsrforgeError("--holdout-speakers applies to fsdd only")
        options["holdout_speakers"] = tuple(s for s in args.holdout_speakers.split(",") if s)
    if args.include_validated:
        if args.corpus != "commonvoice":
            raise AsrforgeError("--include-validated applies to commonvoice only")
        options["include_validated"] = True
    if args.audio_only:
        if args.corpus != "folder":
            raise AsrforgeError("--audio-only applies to folder only (a tree or table of audio files without transcripts)")
        options["audio_only"] = True
    summary = prepare_corpus(args.corpus, args.src, args.out, workers=args.workers, **options)
    print_summary(summary, Path(args.out))
    if not any(s["utterances"] for s in summary["splits"].values()):
        report = Path(args.out) / "skipped.jsonl"
        lines = report.read_text(encoding="utf-8").splitlines() if report.is_file() else []
        first = f" (the first: {json.loads(lines[0])['reason']})" if lines else ""
        raise AsrforgeError(f"nothing was prepared from {args.src}: every item was skipped{first}; "
                            f"all reasons are in {report}")


def print_summary(summary: dict, out: Path) -> None:
    """What ``prepare`` made: utterances, hours, speakers and skips per split, and stale splits left in ``out``."""
    print(f"{summary['corpus']} -> {out}")
    for split, s in summary["splits"].items():
        extra = "".join(f", {n} {k}" for k, n in s["skipped_by_reason"].items())
        print(f"  {split:<20} {s['utterances']:>7} utts {s['hours']:>8.2f} h {s['speakers']:>5} speakers   "
              f"skipped {s['skipped']}{extra}")
    if any(s["skipped"] for s in summary["splits"].values()):
        print(f"  skipped items and reasons: {out / 'skipped.jsonl'}")
    for split in summary.get("stale_splits", []):
        print(f"  note: {out / (split + '.jsonl')} is left from an earlier run with other options or another "
              f"source, and this run did not prepare it; delete it (and {out / ('.' + split + '.done.json')}) "
              f"unless you still want it")


def export_kaldi(args) -> None:
    from asrforge.data.importers import export_kaldi as export
    from asrforge.data.manifest import read_manifest

    utts, bad = read_manifest(args.manifest)
    export(utts, args.out)
    print(f"wrote {len(utts)} utterances to Kaldi data directory {args.out}" + (f" ({len(bad)} bad manifest lines skipped)" if bad else ""))


def shard(args) -> None:
    from asrforge.data.shards import write_shards

    index = write_shards(args.manifest, args.out, args.shard_size, args.seed, workers=args.workers)
    speakers = len(index['speakers'])
    print(f"{index['utterances']} utterances ({index['seconds'] / 3600:.2f} h, {speakers} speaker{'s' * (speakers != 1)}) "
          f"in {len(index['shards'])} shards; "
          f"train from them with data.train={index['spec']}" + (f"  ({len(index['skipped'])} skipped, see index.json)" if index["skipped"] else ""))
    for item in index["skipped"][:3]:
        print(f"  skipped {item['item']}: {item['reason']}", file=sys.stderr)


def tokenizer_train(args) -> None:
    from asrforge.data.manifest import read_manifest
    from asrforge.text import Normalizer
    from asrforge.text.sentencepiece import SentencePieceTokenizer

    utts, bad = read_manifest(args.manifest)
    normalizer = Normalizer()
    tokenizer = SentencePieceTokenizer.train([normalizer(u.text) for u in utts], args.vocab, args.type)
    tokenizer.save(args.out)
    print(f"{args.type} model with {tokenizer.vocab_size - 1} pieces (+ CTC blank) from {len(utts)} transcripts -> {args.out}\n"
          f"use it with: text.tokenizer=sentencepiece text.sentencepiece_model={args.out}")
