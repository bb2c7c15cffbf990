"""The ``asrforge`` command: thin wrappers over the library. Errors print one line, never a traceback."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
from pathlib import Path

from asrforge.errors import AsrforgeError


def _synth(args) -> None:
    from asrforge.data.synth import SynthConfig, synthesize_corpus

    summary = synthesize_corpus(args.out, SynthConfig(domain=args.domain, hours=args.hours, seed=args.seed), workers=args.workers)
    for split in ("train", "dev", "test"):
        s = summary[split]
        print(f"{split:>5}: {s['utts']} utterances, {s['hours']:.2f} h, {s['speakers']} voices -> {Path(args.out) / (split + '.jsonl')}")
    print(f"test voices (never in train/dev): {', '.join(summary['voices']['test'])}")


def _count(text: str) -> int:
    """argparse type for counts that must be at least 1 (beam sizes, shard sizes, workers, epochs, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive(text: str) -> float:
    """argparse type for amounts that must be above 0 (hours, minutes, learning rates)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _prepare(args) -> None:
    from asrforge.data.importers import prepare, print_summary

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
    summary = prepare(args.corpus, args.src, args.out, workers=args.workers, **options)
    print_summary(summary, Path(args.out))
    if not any(s["utterances"] for s in summary["splits"].values()):
        report = Path(args.out) / "skipped.jsonl"
        lines = report.read_text(encoding="utf-8").splitlines() if report.is_file() else []
        first = f" (the first: {json.loads(lines[0])['reason']})" if lines else ""
        raise AsrforgeError(f"nothing was prepared from {args.src}: every item was skipped{first}; "
                            f"all reasons are in {report}")


def _export_kaldi(args) -> None:
    from asrforge.data.importers import export_kaldi
    from asrforge.data.manifest import read_manifest

    utts, bad = read_manifest(args.manifest)
    export_kaldi(utts, args.out)
    print(f"wrote {len(utts)} utterances to Kaldi data directory {args.out}" + (f" ({len(bad)} bad manifest lines skipped)" if bad else ""))


def _shard(args) -> None:
    from asrforge.data.shards import write_shards

    index = write_shards(args.manifest, args.out, args.shard_size, args.seed, workers=args.workers)
    speakers = len(index['speakers'])
    print(f"{index['utterances']} utterances ({index['seconds'] / 3600:.2f} h, {speakers} speaker{'s' * (speakers != 1)}) "
          f"in {len(index['shards'])} shards; "
          f"train from them with data.train={index['spec']}" + (f"  ({len(index['skipped'])} skipped, see index.json)" if index["skipped"] else ""))
    for item in index["skipped"][:3]:
        print(f"  skipped {item['item']}: {item['reason']}", file=sys.stderr)


def _tokenizer_train(args) -> None:
    from asrforge.data.manifest import read_manifest
    from asrforge.text import Normalizer
    from asrforge.text.sentencepiece import SentencePieceTokenizer

    utts, bad = read_manifest(args.manifest)
    normalizer = Normalizer()
    tokenizer = SentencePieceTokenizer.train([normalizer(u.text) for u in utts], args.vocab, args.type)
    tokenizer.save(args.out)
    print(f"{args.type} model with {tokenizer.vocab_size - 1} pieces (+ CTC blank) from {len(utts)} transcripts -> {args.out}\n"
          f"use it with: text.tokenizer=sentencepiece text.sentencepiece_model={args.out}")


def _lm_train(args) -> None:
    from asrforge.data.manifest import read_manifest
    from asrforge.decoding.kneser_ney import write_lm
    from asrforge.recipe import load_recipe
    from asrforge.text import Normalizer

    normalizer = Normalizer(load_recipe(args.config).text if args.config else None)
    texts, bad = [], 0
    for manifest in args.manifest:
        utts, skipped = read_manifest(manifest)
        texts += [normalizer(u.text) for u in utts]
        bad += len(skipped)
    lm = write_lm(texts, args.order, args.out)
    counts = ", ".join(f"{sum(1 for k in lm.probs if len(k) == n)} {n}-grams" for n in range(1, lm.order + 1))
    print(f"Kneser-Ney {args.order}-gram from {len(texts)} transcripts ({len(lm.vocab)} words; {counts}) -> {args.out}"
          + (f"  ({bad} bad manifest lines skipped)" if bad else "")
          + f"\ndecode with it: asrforge evaluate --lm {args.out} --beam-size 8 ..., or lm.path={args.out} in a recipe")


def _lm_tune(args) -> None:
    from asrforge.data.dataset import SpeechDataset
    from asrforge.data.manifest import read_manifest
    from asrforge.decoding.ngram import NGramLM
    from asrforge.inference.api import is_whisper_checkpoint
    from asrforge.inference.lm_tuning import DEFAULT_BONUSES, DEFAULT_WEIGHTS, save_lm_settings, tune_lm
    from asrforge.inference.transcriber import Transcriber, recipe_lm_file
    from asrforge.checkpoint import resolve_checkpoint

    if is_whisper_checkpoint(Path(args.model)):
        raise AsrforgeError(f"{args.model} is a Whisper checkpoint; n-gram LM fusion is for asrforge models")
    checkpoint = resolve_checkpoint(args.model)
    transcriber = Transcriber.from_checkpoint(checkpoint, args.device, lm=False)
    lm_file = Path(args.lm) if args.lm else recipe_lm_file(transcriber.recipe, checkpoint)
    if lm_file is None:
        raise AsrforgeError(f"{checkpoint} was trained without an n-gram LM: give one with --lm PATH "
                            "(e.g. from `asrforge lm train --manifest train.jsonl --out lm.arpa`)")
    lm = NGramLM.load(lm_file)
    beam = args.beam_size or transcriber.recipe.decode.beam_size
    if beam <= 1:
        raise AsrforgeError("the LM is fused into beam search only: give --beam-size 2 or more "
                            "(this checkpoint's recipe decodes greedily)")
    closed = args.closed_vocabulary or transcriber.recipe.lm.closed_vocabulary
    utts, bad = read_manifest(args.manifest)
    if not utts:
        raise AsrforgeError(f"manifest {args.manifest} has no readable line ({len(bad)} bad); check its format")
    dataset = SpeechDataset(utts, transcriber.features, None, transcriber.normalizer, cache_features=True)
    result = tune_lm(transcriber, dataset, lm, beam, args.weights or DEFAULT_WEIGHTS, args.bonuses or DEFAULT_BONUSES, closed,
                     source=args.manifest)
    best = result.best
    print(f"\n{args.manifest}: WER (%) of beam {beam} with {lm_file} ({lm.order}-gram"
          + (", closed vocabulary" if closed else "") + ")")
    print(result.table())
    if not result.tunes_bonus:
        print("(attention beam search adds no word bonus: only the weight is tuned)")
    print(f"without the LM: {100 * result.without_lm.wer:.2f}%")
    flags = f"--lm-weight {best.weight:g}" + (f" --word-bonus {best.word_bonus:g}" if result.tunes_bonus else "")
    print(f"best: {flags}  (WER {100 * best.wer:.2f}%, CER {100 * best.cer:.2f}%)")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({
            "manifest": args.manifest, "lm": str(lm_file), "beam_size": beam, "closed_vocabulary": closed,
            "without_lm": vars(result.without_lm), "best": vars(best), "grid": [vars(p) for p in result.grid]}, indent=1))
    if args.save:
        bonus = best.word_bonus if result.tunes_bonus else transcriber.recipe.lm.word_bonus
        path = save_lm_settings(checkpoint, best.weight, bonus, closed, beam, lm_file if args.lm else None)
        print(f"saved into {path}: evaluate and transcribe now decode at beam {beam} with these settings by default")


def _lm_options(args) -> dict:
    """--lm / --no-lm / --lm-weight / --word-bonus / --closed-vocabulary -> Transcriber.from_checkpoint keyword arguments."""
    if args.no_lm and args.lm:
        raise AsrforgeError("give --lm PATH or --no-lm, not both")
    options = {"lm": False if args.no_lm else (args.lm or True)}
    if args.lm_weight is not None:
        options["lm_weight"] = args.lm_weight
    if args.word_bonus is not None:
        options["word_bonus"] = args.word_bonus
    if args.closed_vocabulary:
        options["closed_vocabulary"] = True
    return options


def _add_lm_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("n-gram LM (asrforge models, beam search)")
    g.add_argument("--lm", help="ARPA file (.arpa/.arpa.gz) to fuse into beam search (default: the recipe's lm.*)")
    g.add_argument("--no-lm", action="store_true", help="decode without the recipe's n-gram LM")
    g.add_argument("--lm-weight", type=float, help="LM log-probability scale (default: the recipe's lm.weight)")
    g.add_argument("--word-bonus", type=float, help="score added per word (default: the recipe's lm.word_bonus)")
    g.add_argument("--closed-vocabulary", action="store_true",
                   help="output only the LM's words (digits, commands; default: the recipe's lm.closed_vocabulary)")


def _train(args) -> None:
    from asrforge.models.whisper.config import WhisperModelConfig
    from asrforge.recipe import load_recipe
    from asrforge.train.trainer import Trainer

    recipe = load_recipe(args.config, args.overrides)
    trained = [n for n in ("best.pt", "last.pt", "whisper.pt") if (Path(args.out) / n).is_file()]
    if trained and not (args.resume or args.overwrite):
        raise AsrforgeError(f"{args.out} already holds a trained model ({', '.join(trained)}); continue it with --resume, "
                            "start it again with --overwrite, or give another --out")
    if isinstance(recipe.model, WhisperModelConfig):   # fine-tuning a pretrained checkpoint: its own loop
        if args.resume:
            from asrforge.errors import ConfigError

            raise ConfigError("--resume is not supported for Whisper fine-tuning; start again with model.init=EXP/whisper.pt")
        from asrforge.train.whisper_finetune import WhisperFineTuner

        summary = WhisperFineTuner(recipe, args.out).fit()
    else:
        summary = Trainer(recipe, args.out, resume=args.resume).fit()
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps(summary))


def _evaluate(args) -> None:
    from asrforge.inference.commands import evaluate_command

    evaluate_command(args.model, args.manifest, args.beam_size, args.json, args.report_dir, args.device,
                     language=args.language, tokenizer=args.tokenizer, lm_options=_lm_options(args))


def _adapt(args) -> None:
    from asrforge.inference.api import is_whisper_checkpoint
    from asrforge.inference.transcriber import LONG_FORM_S
    from asrforge.train.adapt import ADAPTED, AdaptConfig, adapt

    if is_whisper_checkpoint(Path(args.model)):
        raise AsrforgeError(f"{args.model} is a Whisper checkpoint; asrforge adapt self-trains asrforge models. "
                            "Fine-tune Whisper on transcribed audio with configs/whisper_finetune.yaml instead")
    if (Path(args.out) / ADAPTED).is_file() and not args.overwrite:
        raise AsrforgeError(f"{Path(args.out) / ADAPTED} already exists; adapt again over it with --overwrite, "
                            "or give another --out")
    config = AdaptConfig(keep=args.keep, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
                         beam_size=args.beam_size, seed=args.seed)
    summary = adapt(args.model, args.manifest, args.out, config, lm_options=_lm_options(args))
    out = Path(args.out)
    cut = (f" ({summary['long_recordings_cut']} recording(s) longer than {LONG_FORM_S:g} s cut at their pauses)"
           if summary["long_recordings_cut"] else "")
    print(f"pseudo-labelled {summary['utterances']} utterances{cut}, trained on the {summary['kept']} most confident "
          f"(confidence >= {summary['min_kept_confidence']:.3f}); loss per epoch "
          + " ".join(f"{x:.3f}" for x in summary["loss_per_epoch"]))
    for item in summary["bad"][:10]:
        print(f"  skipped {item['id']}: {item['reason']}", file=sys.stderr)
    if len(summary["bad"]) > 10:
        print(f"  ... and {len(summary['bad']) - 10} more skipped", file=sys.stderr)
    print(f"adapted checkpoint: {out / ADAPTED}  (labels and confidences: {out / 'pseudo_labels.jsonl'})\n"
          f"evaluate it: asrforge evaluate --model {out / ADAPTED} --manifest LABELLED.jsonl --beam-size 8")


def _transcribe(args) -> None:
    from asrforge.inference.commands import transcribe_command

    temperature = None
    if args.temperature is not None:
        step = args.temperature_increment_on_fallback
        temperature = (args.temperature,) if not step else tuple(
            round(args.temperature + i * step, 4) for i in range(int(round((1.0 - args.temperature) / step)) + 1))
    transcribe_command(
        args.audio, args.model, args.output_format, args.output_dir, args.device, args.dtype, args.tokenizer,
        same_speaker=args.same_speaker, lm_options=_lm_options(args), beam_size=args.beam_size, language=args.language, task=args.task, temperature=temperature,
        best_of=args.best_of, patience=args.patience, length_penalty=args.length_penalty,
        compression_ratio_threshold=args.compression_ratio_threshold, logprob_threshold=args.logprob_threshold,
        no_speech_threshold=args.no_speech_threshold, initial_prompt=args.initial_prompt,
        condition_on_previous_text=args.condition_on_previous_text, suppress_tokens=args.suppress_tokens,
        without_timestamps=args.without_timestamps, word_timestamps=args.word_timestamps,
        prepend_punctuations=args.prepend_punctuations, append_punctuations=args.append_punctuations,
        batch_size=args.batch_size, max_segment_s=args.max_segment_s)


def _demo(args) -> None:
    from asrforge.demo import run_demo

    run_demo(args.out, minutes=args.minutes, hours=args.hours, json_path=args.json, config=args.config)


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r}: use True or False")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asrforge", description="Train, decode, evaluate and run speech recognizers.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("synth", help="synthesize a speech corpus with eSpeak NG (train/dev/test manifests)")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--domain", choices=["digits", "commands"], default="digits")
    s.add_argument("--hours", type=_positive, default=1.0, help="hours of training audio (dev/test are added)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=_count, default=os.cpu_count() or 1)
    s.set_defaults(func=_synth)

    pr = sub.add_parser("prepare", help="import a corpus into JSONL manifests (one per split) with a skip report")
    pr.add_argument("corpus", choices=["librispeech", "commonvoice", "tedlium", "fsdd", "folder", "kaldi"])
    pr.add_argument("src", help="the folder the corpus was extracted to (folder: also a .csv/.tsv table)")
    pr.add_argument("--out", required=True, help="output folder for <split>.jsonl, skipped.jsonl, summary.json")
    pr.add_argument("--workers", type=_count, default=None, help="parallel header checks (default: 4 per core, at most 16)")
    pr.add_argument("--holdout-speakers", default="", help="fsdd: comma-separated speakers kept out of train/dev for test")
    pr.add_argument("--include-validated", action="store_true", help="commonvoice: also import validated.tsv")
    pr.add_argument("--audio-only", action="store_true",
                    help="folder: list every audio file with an empty transcript (noise or impulse responses for "
                         "augment.*, untranscribed audio for asrforge adapt)")
    pr.set_defaults(func=_prepare)

    k = sub.add_parser("export-kaldi", help="write a manifest as a Kaldi data directory")
    k.add_argument("manifest", help="JSONL manifest")
    k.add_argument("--out", required=True, help="data directory to write: wav.scp (non-WAV audio through flac, "
                   "sph2pipe or ffmpeg commands, as Kaldi recipes write them), text, utt2spk, spk2utt, segments")
    k.set_defaults(func=_export_kaldi)

    sh = sub.add_parser("shard", help="write a manifest as WebDataset tar shards (FLAC + JSON per utterance)")
    sh.add_argument("manifest")
    sh.add_argument("--out", required=True)
    sh.add_argument("--shard-size", type=_count, default=1000, help="utterances per shard")
    sh.add_argument("--seed", type=int, default=0, help="shuffle before sharding, so shards mix speakers")
    sh.add_argument("--workers", type=_count, help="threads decoding and encoding audio (default: CPUs, at most 8)")
    sh.set_defaults(func=_shard)

    tk = sub.add_parser("tokenizer", help="train a SentencePiece tokenizer")
    tk_sub = tk.add_subparsers(dest="action", required=True)
    tt = tk_sub.add_parser("train", help="train a BPE or unigram model on a manifest's normalized text")
    tt.add_argument("--manifest", required=True)
    tt.add_argument("--vocab", type=_count, required=True, help="number of pieces")
    tt.add_argument("--type", choices=["bpe", "unigram"], default="bpe")
    tt.add_argument("--out", required=True, help="where to write the .model file")
    tt.set_defaults(func=_tokenizer_train)

    lm = sub.add_parser("lm", help="word n-gram language models for beam search")
    lm_sub = lm.add_subparsers(dest="action", required=True)
    lt = lm_sub.add_parser("train", help="train a Kneser-Ney n-gram on manifests' normalized text, written as ARPA")
    lt.add_argument("--manifest", required=True, nargs="+", help="one or more JSONL manifests")
    lt.add_argument("--order", type=_count, default=3)
    lt.add_argument("--config", help="recipe whose text.* normalization to apply (default: lowercase, no punctuation)")
    lt.add_argument("--out", required=True, help="where to write the .arpa (or .arpa.gz) file")
    lt.set_defaults(func=_lm_train)
    lu = lm_sub.add_parser("tune", help="choose the LM weight and word bonus that give the lowest WER on a dev manifest")
    lu.add_argument("--model", required=True, help="asrforge checkpoint file or experiment folder")
    lu.add_argument("--manifest", required=True, help="a dev manifest (never the test set you report)")
    lu.add_argument("--lm", help="ARPA file (default: the checkpoint's own, lm.path or lm.arpa beside it)")
    lu.add_argument("--beam-size", type=_count, help="default: the recipe's decode.beam_size")
    lu.add_argument("--weights", type=float, nargs="+", help="LM weights to try (default: 0.2 0.35 0.5 0.75 1)")
    lu.add_argument("--bonuses", type=float, nargs="+", help="word bonuses to try (default: 0 1 2 3 4)")
    lu.add_argument("--closed-vocabulary", action="store_true", help="default: the recipe's lm.closed_vocabulary")
    lu.add_argument("--json", help="write every grid point's WER/CER here")
    lu.add_argument("--save", action="store_true",
                    help="store the best weight and bonus in the checkpoint's recipe (and --lm as lm.path)")
    lu.add_argument("--device", default="cpu")
    lu.set_defaults(func=_lm_tune)

    t = sub.add_parser("train", help="train a model from a YAML recipe")
    t.add_argument("config", help="recipe YAML, e.g. configs/demo_ctc.yaml")
    t.add_argument("overrides", nargs="*", help="key.sub=value overrides, e.g. data.train=train.jsonl train.max_minutes=5")
    t.add_argument("--out", required=True, help="experiment folder (best.pt, last.pt, train_log.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    t.add_argument("--overwrite", action="store_true", help="train afresh into an OUT that already holds a model")
    t.set_defaults(func=_train, parser=t, trailing="overrides")

    e = sub.add_parser("evaluate", help="WER/CER of a model on a manifest")
    e.add_argument("--model", required=True, help="checkpoint file or experiment folder, or a Whisper checkpoint")
    e.add_argument("--manifest", required=True)
    e.add_argument("--beam-size", type=_count, default=None,
                   help="default: the recipe's decode.beam_size (with its LM); Whisper: greedy. 1 = greedy")
    e.add_argument("--json", help="write wer, cer, utts, sub, del, ins, rtf here")
    e.add_argument("--report-dir", help="write per-utterance results (utterances.txt, utterances.jsonl) here")
    e.add_argument("--device", default="cpu")
    e.add_argument("--language", help="Whisper: language of the manifest (default: English for .en models, "
                   "detected per utterance otherwise)")
    e.add_argument("--tokenizer", help="Whisper: folder holding tokenizer.json, if not beside the weights")
    _add_lm_arguments(e)
    e.set_defaults(func=_evaluate)

    a = sub.add_parser("adapt", help="adapt a model to untranscribed audio (a new voice or microphone) by self-training")
    a.add_argument("--model", required=True, help="asrforge checkpoint file or experiment folder (any family; "
                   "Whisper: fine-tune with asrforge train on transcribed audio instead)")
    a.add_argument("--manifest", required=True, help="the new audio; its text fields are ignored (may be empty)")
    a.add_argument("--out", required=True, help="folder for adapted.pt and pseudo_labels.jsonl")
    a.add_argument("--keep", type=float, default=0.7, help="fraction of utterances trained on, most confident first")
    a.add_argument("--epochs", type=_count, default=3)
    a.add_argument("--lr", type=_positive, default=1e-4)
    a.add_argument("--batch-size", type=_count, default=16)
    a.add_argument("--beam-size", type=_count, default=8, help="n-best size the confidence is computed over")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--overwrite", action="store_true", help="replace an adapted.pt already in --out")
    _add_lm_arguments(a)
    a.set_defaults(func=_adapt)

    r = sub.add_parser("transcribe", help="transcribe audio files (asrforge or Whisper checkpoints)")
    r.add_argument("audio", nargs="+", help="audio files, or folders (every audio file below them; --output-dir keeps "
                   "their layout), or - for a WAV/FLAC stream on standard input (ffmpeg -i talk.mp4 -f wav - | ...)")
    r.add_argument("--model", required=True, help="asrforge checkpoint/experiment folder, or a Whisper checkpoint: "
                   "OpenAI .pt, Hugging Face folder or CTranslate2 (faster-whisper) folder")
    r.add_argument("--beam-size", type=_count, default=None, help="default: the recipe's decode.beam_size; Whisper: greedy")
    r.add_argument("--output-format", choices=["txt", "srt", "vtt", "tsv", "json", "all"], default="txt")
    r.add_argument("--output-dir", help="write <audio stem>.<format> files here instead of printing")
    r.add_argument("--device", default="cpu")
    r.add_argument("--same-speaker", action="store_true",
                   help="models trained with features.cmvn=speaker: the files are one speaker, so normalize them with "
                        "statistics pooled over all of them (without it, each file is normalized on its own)")
    r.add_argument("--max-segment-s", type=_positive, default=None,
                   help="asrforge models: a longer file is cut at its pauses (voice activity) into stretches of speech "
                        "of at most this many seconds, each decoded as an utterance (default: 20)")
    _add_lm_arguments(r)
    w = r.add_argument_group("Whisper options (as in openai-whisper)")
    w.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16", "int8"],
                   help="float16/bfloat16 need a GPU; int8 quantizes linear layers for the CPU")
    w.add_argument("--tokenizer", help="folder holding tokenizer.json, if not beside the weights")
    w.add_argument("--language", help="language code or name; default or 'auto': detect")
    w.add_argument("--task", choices=["transcribe", "translate"])
    w.add_argument("--temperature", type=float, help="first sampling temperature (default 0)")
    w.add_argument("--temperature-increment-on-fallback", type=float, default=0.2,
                   help="raise the temperature by this on a failed window, up to 1.0 (0: no fallback)")
    w.add_argument("--best-of", type=_count, help="samples per window at temperature > 0")
    w.add_argument("--patience", type=float)
    w.add_argument("--length-penalty", type=float)
    w.add_argument("--compression-ratio-threshold", type=float)
    w.add_argument("--logprob-threshold", type=float)
    w.add_argument("--no-speech-threshold", type=float)
    w.add_argument("--initial-prompt")
    w.add_argument("--condition-on-previous-text", type=_bool, help="True or False (default True)")
    w.add_argument("--suppress-tokens", help="comma-separated ids; -1: non-speech symbols (the default)")
    w.add_argument("--without-timestamps", action="store_true", default=None)
    w.add_argument("--word-timestamps", action="store_true", default=None,
                   help="align each word to the audio (cross-attention + DTW); JSON output gets segments[].words")
    w.add_argument("--batch-size", type=_count, help="batched mode: cut the audio at pauses found by Silero VAD and "
                   "decode this many 30-s chunks at once (chunks are not conditioned on each other)")
    w.add_argument("--prepend-punctuations", help="with --word-timestamps: marks joined to the following word")
    w.add_argument("--append-punctuations", help="with --word-timestamps: marks joined to the preceding word")
    r.set_defaults(func=_transcribe, parser=r, trailing="audio")

    d = sub.add_parser("demo", help="synthesize a corpus, train, evaluate on unseen voices, transcribe (about 10 min on 2 cores)")
    d.add_argument("--out", default="asrforge-demo", help="working folder (corpus, experiment, reports)")
    d.add_argument("--minutes", type=_positive, default=None, help="training budget (default: the recipe's train.max_minutes)")
    d.add_argument("--hours", type=_positive, default=None, help="synthetic training hours (default: the demo's)")
    d.add_argument("--config", default=None, help="recipe (default: configs/demo_ctc.yaml)")
    d.add_argument("--json", help="write wer, cer, utts, train_minutes here")
    d.set_defaults(func=_demo)
    return p


def _own_message(e: AsrforgeError) -> str:
    """The message itself. An error raised in a DataLoader worker comes back re-raised with the worker's
    traceback folded into its text ("Caught ConfigError in DataLoader worker process 0. Original
    Traceback ..."); its last line is the message that was raised."""
    text = str(e)
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.rstrip().splitlines()[-1]
        return last.split(": ", 1)[1] if last.startswith(f"{__package__}.") and ": " in last else last
    return text


# what to do about a file-system error on a path the user gave (an output folder that does not exist, a full disk)
FILESYSTEM_FIXES = {
    errno.ENOENT: "no such file or folder; check the path (an output file's folder must exist)",
    errno.EACCES: "permission denied; give a path you can read and write",
    errno.EPERM: "operation not permitted; give a path you can read and write",
    errno.EROFS: "the file system is read-only; write somewhere else",
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free some space or write somewhere else",
    errno.EISDIR: "it is a folder; give a file path",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file of that name is where a folder is needed; remove it or give another path",
}


def _filesystem_message(e: OSError) -> str | None:
    """One line naming the path and the fix, for the file-system errors a user causes and can fix; None for others."""
    fix = FILESYSTEM_FIXES.get(e.errno)
    if fix is None or (e.filename is None and e.errno not in (errno.ENOSPC, errno.EDQUOT)):
        return None
    return f"{e.filename}: {fix}" if e.filename is not None else fix


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """Like ``parse_args``, but the list a command ends with (train's overrides, transcribe's files) may also
    come after its options: ``train cfg.yaml --out exp data.train=t.jsonl`` (argparse alone takes the list only
    in one piece)."""
    args, extra = build_parser().parse_known_args(argv)
    if extra:
        stray = [a for a in extra if a.startswith("-") and a != "-"]
        parser = getattr(args, "parser", None)
        if stray or parser is None:
            (parser or build_parser()).error(f"unrecognized arguments: {' '.join(stray or extra)}")
        getattr(args, args.trailing).extend(extra)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        args.func(args)
    except AsrforgeError as e:
        print(f"asrforge: error: {_own_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("asrforge: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: one line for the user, the traceback on request
        if os.environ.get("ASRFORGE_DEBUG"):
            raise
        if isinstance(e, OSError) and (message := _filesystem_message(e)):
            print(f"asrforge: error: {message}", file=sys.stderr)
            return 2
        print(f"asrforge: internal error: {type(e).__name__}: {e}\n"
              "This is a bug in asrforge; rerun with ASRFORGE_DEBUG=1 for the traceback and report it.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
