"""A Kaldi ``wav.scp`` entry -> the audio file it reads and the channel, without running a shell.

Kaldi recipes seldom list plain paths. LibriSpeech's writes ``flac -c -d -s X.flac |``, WSJ's and TED-LIUM's
``sph2pipe -f wav -p X.sph |``, Switchboard's ``sph2pipe -f wav -p -c 1 X.sph |`` (one side of a call), others
``sox X.mp3 -t wav -r 16000 - |`` or ``ffmpeg -i X -f wav - |``. Such a command only decodes, picks a channel
and resamples, which loading does itself, so the file it names is read directly through libsndfile. A
command that changes the audio in other ways (speed perturbation, gain, trimming, a chain of several
commands) cannot be honoured that way: :class:`UnsupportedEntry` says which part, so the importer reports it.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Callable


class UnsupportedEntry(ValueError):
    """The entry's audio cannot be read without running its command; the message says why."""


@dataclass(frozen=True)
class WavSource:
    path: str
    channel: int | None = None     # 0-based; None: all channels (averaged when loaded)


def parse_wav_scp_entry(entry: str) -> WavSource:
    """``"flac -c -d -s /a/b.flac |"`` -> ``WavSource("/a/b.flac")``; plain paths pass through."""
    entry = entry.strip()
    if not entry.endswith("|"):
        if re.search(r"\.ark:\d+$", entry):
            raise UnsupportedEntry("audio stored inside a Kaldi archive (.ark:offset) is not supported; "
                                   "write the recordings out as files (e.g. wav-copy ark:... into a folder)")
        return WavSource(entry)
    command = entry[:-1].strip()
    try:
        argv = shlex.split(command)
    except ValueError as e:
        raise UnsupportedEntry(f"command does not parse ({e})") from None
    if "|" in argv or not argv:
        raise UnsupportedEntry("a chain of several commands (speed perturbation, effects) is not supported: "
                               "only a single decoding command (flac, sph2pipe, sox, ffmpeg, cat) is read")
    program = argv[0].rsplit("/", 1)[-1]
    reader = _READERS.get(program)
    if reader is None:
        raise UnsupportedEntry(f"command {program!r} is not supported: only flac, sph2pipe, sox, ffmpeg and cat "
                               "commands that decode a file are read; convert the audio to files")
    return reader(argv[1:])


def _one_input(files: list[str], program: str) -> str:
    if len(files) != 1 or files[0] == "-":
        raise UnsupportedEntry(f"{program} command does not read exactly one named file (reads {files or 'stdin'})")
    return files[0]


def _flac(args: list[str]) -> WavSource:
    decode, files = False, []
    for a in args:
        if a in ("--decode", "--stdout", "--silent", "--force", "--decode-through-errors"):
            decode |= a == "--decode"
        elif re.fullmatch(r"-[cdsfF]+", a):          # -c -d -s, or clustered: -cds
            decode |= "d" in a
        elif a.startswith("-") and a != "-":
            raise UnsupportedEntry(f"flac option {a} is not supported (only -c -d -s -f -F)")
        else:
            files.append(a)
    if not decode:
        raise UnsupportedEntry("flac command does not decode (-d)")
    return WavSource(_one_input(files, "flac"))


def _sph2pipe(args: list[str]) -> WavSource:
    files, channel, it = [], None, iter(args)
    for a in it:
        if a == "-f":
            next(it, None)                               # output format: wav, raw, ...: any is decoded the same
        elif a in ("-p", "-u", "-a"):                    # sample coding conversions, done by libsndfile too
            pass
        elif a == "-c":
            value = next(it, "")
            if value not in ("1", "2"):
                raise UnsupportedEntry(f"sph2pipe -c {value}: expected channel 1 or 2")
            channel = int(value) - 1
        elif a.startswith("-"):
            raise UnsupportedEntry(f"sph2pipe option {a} is not supported (only -f, -p, -u, -a, -c)")
        else:
            files.append(a)
    if len(files) > 2 or (len(files) == 2 and files[1] != "-"):
        raise UnsupportedEntry("sph2pipe command writes to a file, not to the pipe")
    return WavSource(_one_input(files[:1], "sph2pipe"), channel)


_SOX_FORMAT_WITH_VALUE = {"-t", "--type", "-r", "--rate", "-b", "--bits", "-e", "--encoding", "-c", "--channels",
                          "-C", "--compression"}
_SOX_FLAGS = {"-q", "--no-show-progress", "-G", "--guard", "-R", "-D", "--no-dither", "-S", "--show-progress",
              "--norm", "-L", "-B", "-x", "-s", "-u", "-2", "-1"}


def _sox(args: list[str]) -> WavSource:
    files, it = [], iter(args)
    for a in it:
        if len(files) == 2:                              # after the output: effects
            return _sox_effects([a, *it], files)
        if a in _SOX_FORMAT_WITH_VALUE:
            next(it, None)
        elif a in _SOX_FLAGS or re.fullmatch(r"-V\d?", a) or re.fullmatch(r"--(type|rate|bits|encoding|channels)=.*", a):
            pass
        elif a.startswith("-") and a != "-":
            raise UnsupportedEntry(f"sox option {a} is not supported")
        else:
            files.append(a)
    return _sox_effects([], files)


def _sox_effects(effects: list[str], files: list[str]) -> WavSource:
    if len(files) != 2 or files[1] != "-":
        raise UnsupportedEntry("sox command does not read one file and write to the pipe ('sox IN [options] -')")
    channel, it = None, iter(effects)
    for name in it:
        if name == "remix":
            value = next(it, "")
            if not value.isdigit() or int(value) < 1:
                raise UnsupportedEntry(f"sox remix {value}: only one input channel (remix 1, remix 2, ...) is supported")
            channel = int(value) - 1
        elif name == "rate":                             # loading resamples anyway; skip its quality flags
            for value in it:
                if not value.startswith("-"):
                    break
        elif name == "channels":
            if next(it, "") != "1":
                raise UnsupportedEntry("sox channels: only 'channels 1' (averaging) is supported")
        else:
            raise UnsupportedEntry(f"sox effect {name!r} changes the audio and is not supported "
                                   "(only remix N, rate and channels 1)")
    return WavSource(_one_input(files[:1], "sox"), channel)


_FFMPEG_WITH_VALUE = {"-loglevel", "-v", "-f", "-ar", "-ac", "-acodec", "-c:a", "-codec:a", "-sample_fmt",
                      "-threads", "-ab", "-b:a"}      # bit rates: ESPnet's recipes pass "-ab 16" for PCM output
_FFMPEG_FLAGS = {"-hide_banner", "-nostdin", "-y", "-nostats", "-vn"}


def _ffmpeg(args: list[str]) -> WavSource:
    files, outputs, it = [], [], iter(args)
    for a in it:
        if a == "-i":
            files.append(next(it, "-"))
        elif a in _FFMPEG_WITH_VALUE:
            next(it, None)
        elif a in _FFMPEG_FLAGS:
            pass
        elif a.startswith("-") and a not in ("-", "pipe:", "pipe:1"):
            raise UnsupportedEntry(f"ffmpeg option {a} is not supported (filters, seeking and trimming change the audio)")
        else:
            outputs.append(a)
    if outputs not in (["-"], ["pipe:"], ["pipe:1"]):
        raise UnsupportedEntry("ffmpeg command does not write to the pipe")
    return WavSource(_one_input(files, "ffmpeg"))


def _cat(args: list[str]) -> WavSource:
    return WavSource(_one_input(args, "cat"))


_READERS: dict[str, Callable[[list[str]], WavSource]] = {
    "flac": _flac, "sph2pipe": _sph2pipe, "sox": _sox, "ffmpeg": _ffmpeg, "cat": _cat,
}
