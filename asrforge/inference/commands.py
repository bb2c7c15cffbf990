"""What `asrforge evaluate` and `asrforge transcribe` do, beyond argument parsing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from asrforge.audio.io import AUDIO_SUFFIXES, decode_audio_bytes
from asrforge.data.dataset import BadItem, SpeechDataset
from asrforge.data.manifest import read_manifest
from asrforge.decoding.searches import uses_word_bonus
from asrforge.errors import AsrforgeError
from asrforge.inference.evaluate import RECORDING_S, Evaluation, evaluate_dataset
from asrforge.inference.transcriber import Transcriber
from asrforge.progress import progress_bar


def print_evaluation(ev: Evaluation, title: str) -> None:
    s = ev.summary()
    print(f"\n{title}")
    print(ev.report.table())
    print(f"WER {100 * s['wer']:.2f}%  (S={s['sub']} D={s['del']} I={s['ins']} over {s['words']} words)   "
          f"CER {100 * s['cer']:.2f}%   utterances {s['utts']}   RTF {s['rtf']:.4f}")
    if ev.long_form:
        print(f"  {ev.long_form} recording(s) longer than {RECORDING_S:g} s were decoded as `asrforge transcribe` "
              "decodes them: cut at their pauses, the pieces' texts joined")
    conf = ev.report.confusions(5)
    for kind in ("substitutions", "deletions", "insertions"):
        if conf[kind]:
            print(f"  top {kind}: " + ", ".join(f"{k} ({n})" for k, n in conf[kind]))
    if ev.bad:
        print(f"  skipped {len(ev.bad)} unusable item(s), not scored:")
        for b in ev.bad[:5]:
            print(f"    {b.id}: {b.reason}")


def search_description(transcriber: Transcriber, beam_size: int) -> str:
    """How an asrforge model decodes at this beam: ``greedy``, or ``beam 8, 2-gram LM weight 0.5 bonus 1, ...``."""
    if beam_size <= 1:
        return "greedy"
    lm = transcriber.lm
    if lm is None:
        return f"beam {beam_size}"
    bonus = (f" bonus {lm.word_bonus:g}" if uses_word_bonus(transcriber.model, transcriber.search_options(beam_size))
             else ", no word bonus in attention search")
    return (f"beam {beam_size}, {lm.lm.order}-gram LM weight {lm.weight:g}{bonus}"
            + (", closed vocabulary" if lm.closed_vocabulary else ""))


def evaluate_manifest(transcriber: Transcriber, manifest: str | Path, beam_size: int, progress: bool = True) -> Evaluation:
    utts, bad_lines = read_manifest(manifest)
    if not utts:
        raise AsrforgeError(f"manifest {manifest} has no readable line ({len(bad_lines)} bad); check its format")
    dataset = SpeechDataset(utts, transcriber.features, None, transcriber.normalizer, progress=progress)
    ev = evaluate_dataset(transcriber, dataset, beam_size, progress=progress)
    ev.bad = [BadItem(s.item, s.reason) for s in bad_lines] + ev.bad
    return ev


def evaluate_whisper_manifest(model: str, manifest: str | Path, beam_size: int, device: str = "cpu",
                              language: str | None = None, tokenizer: str | None = None) -> Evaluation:
    """Score a Whisper checkpoint on a manifest: each utterance is one window, so longer ones are skipped."""
    from asrforge.inference.whisper import WhisperPipeline
    from asrforge.inference.whisper_evaluate import MAX_SECONDS, evaluate_whisper, whisper_dataset

    pipe = WhisperPipeline.load(model, device, tokenizer_folder=tokenizer)
    if language is not None and pipe.tokenizer.multilingual:
        language = pipe.tokenizer.language_code(language)
    utts, bad_lines = read_manifest(manifest)
    if not utts:
        raise AsrforgeError(f"manifest {manifest} has no readable line ({len(bad_lines)} bad); check its format")
    long = [BadItem(u.id, f"longer than {MAX_SECONDS:.0f} s; Whisper is scored one window per utterance: cut it "
                          "into segments (offset/duration) or use `asrforge transcribe`") for u in utts if u.duration > MAX_SECONDS]
    utts = [u for u in utts if u.duration <= MAX_SECONDS]
    ev = evaluate_whisper(pipe.model, pipe.tokenizer, whisper_dataset(utts, pipe.model), language, beam_size=beam_size)
    ev.bad = [BadItem(s.item, s.reason) for s in bad_lines] + long + ev.bad
    return ev


def evaluate_command(model: str, manifest: str, beam_size: int | None, json_path: str | None, report_dir: str | None,
                     device: str = "cpu", language: str | None = None, tokenizer: str | None = None,
                     lm_options: dict | None = None) -> dict:
    """``beam_size`` None: the search the model's recipe decodes with (``decode.beam_size``); greedy for Whisper.
    ``lm_options``: keyword arguments of :meth:`Transcriber.from_checkpoint` (``lm``, ``lm_weight``, ``word_bonus``,
    ``closed_vocabulary``)."""
    from asrforge.inference.api import is_whisper_checkpoint, check_lm_options

    if is_whisper_checkpoint(Path(model)):
        check_lm_options(lm_options)
        beam_size = beam_size or 1
        search = "greedy" if beam_size <= 1 else f"beam {beam_size}"
        ev = evaluate_whisper_manifest(model, manifest, beam_size, device, language, tokenizer)
    else:
        if language or tokenizer:
            raise AsrforgeError("--language and --tokenizer apply to Whisper checkpoints; this is an asrforge checkpoint")
        transcriber = Transcriber.from_checkpoint(model, device, **(lm_options or {}))
        beam_size = beam_size or transcriber.recipe.decode.beam_size
        if transcriber.lm is not None and beam_size <= 1:
            print("asrforge: the n-gram LM is used by beam search only; this greedy run ignores it "
                  "(--beam-size 8 to use it, --no-lm to silence this)", file=sys.stderr)
        search = search_description(transcriber, beam_size)
        ev = evaluate_manifest(transcriber, manifest, beam_size)
    ev.require_scored(manifest)
    print_evaluation(ev, f"{manifest} ({search})")
    summary = {**ev.summary(), "beam_size": beam_size, "model": str(model), "manifest": str(manifest)}
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(summary, indent=1))
    if report_dir:
        d = Path(report_dir)
        d.mkdir(parents=True, exist_ok=True)
        ev.report.write_utterances(d / "utterances.txt")
        ev.report.write_jsonl(d / "utterances.jsonl")
        (d / "summary.txt").write_text(ev.report.table() + "\n")
        print(f"per-utterance results in {d}/utterances.txt")
    return summary


STDIN = "-"


def audio_inputs(paths: list[str]) -> list[tuple[str, str]]:
    """Command-line inputs -> ``(audio file, output name)``: a file is itself, named by its stem; a folder is
    every audio file below it, sorted, named by its path inside the folder (so results mirror its layout);
    ``-`` is an audio stream on standard input, named ``stdin``."""
    if paths.count(STDIN) > 1:
        raise AsrforgeError("- (standard input) can be given once")
    inputs = []
    for given in paths:
        if given == STDIN:
            inputs.append((STDIN, "stdin"))
            continue
        folder = Path(given)
        if not folder.is_dir():
            inputs.append((given, folder.stem))
            continue
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        if not files:
            raise AsrforgeError(f"folder {folder} holds no audio files ({', '.join(sorted(AUDIO_SUFFIXES))})")
        inputs += [(str(p), p.relative_to(folder).with_suffix("").as_posix()) for p in files]
    return inputs


def transcribe_command(audio: list[str], model: str, output_format: str, output_dir: str | None, device: str = "cpu",
                       dtype: str = "float32", tokenizer: str | None = None, same_speaker: bool = False,
                       lm_options: dict | None = None, **options) -> int:
    """Transcribe each file with an asrforge or Whisper model; a bad file is reported and skipped, the rest
    still run. ``options`` go to ``transcribe`` (None values are left at the model's defaults). Returns failures.
    ``same_speaker``: the files are one speaker, so a model trained with speaker CMVN pools statistics over them.
    ``lm_options``: see :func:`evaluate_command`."""
    from asrforge.inference.api import AsrforgeModel, load_model
    from asrforge.inference.writers import write_result

    inputs = audio_inputs(audio)
    names: dict[str, str] = {}
    for path, name in inputs:
        if output_dir and names.setdefault(name, path) != path:
            raise AsrforgeError(f"{names[name]} and {path} would both be written as {Path(output_dir) / name}.*; "
                                "give their common folder instead (its layout is kept) or transcribe them apart")
    if not output_dir and output_format == "all":
        raise AsrforgeError("--output-format all writes five files per recording (txt, srt, vtt, tsv, json); "
                            "give --output-dir, or choose one format to print")
    if not output_dir and len(inputs) > 1 and output_format in ("srt", "vtt", "tsv"):
        # printed one after another, the documents could not be told apart (each starts again at cue 1)
        raise AsrforgeError(f"--output-format {output_format} prints one document per recording; for "
                            f"{len(inputs)} recordings give --output-dir (one .{output_format} file each), or use "
                            "txt or json, which name each file")
    audio = [path for path, _ in inputs]
    recognizer = load_model(model, device, dtype, tokenizer, lm_options)
    options = {k: v for k, v in options.items() if v is not None}
    recognizer.check_options(options)       # a wrong option fails once, before any file
    if same_speaker:
        if not (isinstance(recognizer, AsrforgeModel) and recognizer.transcriber.recipe.features.cmvn == "speaker"):
            raise AsrforgeError(f"--same-speaker applies to models trained with features.cmvn=speaker; {model} "
                                "normalizes each file on its own, so leave the flag out")
        options["speaker_stats"] = recognizer.transcriber.pooled_speaker_stats(audio)
    elif isinstance(recognizer, AsrforgeModel) and recognizer.transcriber.recipe.features.cmvn == "speaker":
        print(f"asrforge: {model} was trained with speaker CMVN; each file is normalized on its own, which costs "
              "accuracy (on FSDD, 17 % WER became 56 %). Give 20 or more files of one speaker with --same-speaker.",
              file=sys.stderr)
    failures, written = 0, 0
    # many files into a folder: one bar over the files instead of a line per file written
    many = bool(output_dir) and len(inputs) > 1
    bar = progress_bar(total=len(inputs), desc="transcribing", unit="file", disable=not many)
    for path, name in inputs:
        try:
            source = decode_audio_bytes(sys.stdin.buffer.read()) if path == STDIN else path
            result = recognizer.transcribe(source, progress=len(audio) == 1 and sys.stderr.isatty(), **options)
        except AsrforgeError as e:
            bar.write(f"asrforge: skipped {path}: {e}", file=sys.stderr)
            failures += 1
            bar.update()
            continue
        if output_dir:
            for file in write_result(result, name, output_dir, output_format):
                written += 1
                if not many:
                    print(f"wrote {file}", file=sys.stderr)
        elif output_format == "json":
            print(json.dumps({"file": path, **result}, ensure_ascii=False))
        elif output_format == "txt":
            text = result["text"].strip()
            print(f"{path}\t{text}" if len(audio) > 1 else text)
        else:
            from asrforge.inference.writers import WRITERS
            print(WRITERS[output_format](result), end="")
        bar.update()
    bar.close()
    if many:
        print(f"wrote {written} file(s) for {len(inputs) - failures} of {len(inputs)} recordings to {output_dir}"
              + (f"; {failures} skipped (above)" if failures else ""), file=sys.stderr)
    if failures == len(audio):
        raise AsrforgeError(f"none of the {len(audio)} file(s) could be transcribed")
    return failures
