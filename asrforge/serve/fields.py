"""The multipart form of ``/v1/audio/transcriptions`` and ``/v1/audio/translations``, checked field by field.

OpenAI's fields: ``file``, ``model``, ``language``, ``prompt``, ``response_format``, ``temperature``,
``timestamp_granularities[]`` (the official client's bracketed name; the plain name is taken too), ``stream``,
and ``chunking_strategy`` (only ``auto``: long audio is always cut at pauses here). asrforge's own, documented in
docs/serving.md: ``beam_size``, ``best_of``, ``patience``, ``length_penalty``, and with
``response_format=diarized_json`` (OpenAI's speaker format; transcriptions only) ``num_speakers``,
``min_speakers``, ``max_speakers``. Every error names the field and what it may hold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from asrforge.serve.errors import bad_request

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json", "diarized_json")
GRANULARITIES = ("segment", "word")
OPENAI_FIELDS = ("file", "model", "language", "prompt", "response_format", "temperature", "timestamp_granularities[]",
                 "timestamp_granularities", "stream", "chunking_strategy")
OWN_FIELDS = ("beam_size", "best_of", "patience", "length_penalty")
SPEAKER_FIELDS = ("num_speakers", "min_speakers", "max_speakers")      # with diarized_json
TRANSLATION_FIELDS = tuple(f for f in OPENAI_FIELDS if f not in ("language", "timestamp_granularities[]",
                                                                 "timestamp_granularities")) + OWN_FIELDS


@dataclass
class AudioRequest:
    """One request's choices, checked; ``upload`` is the form's file (a Starlette ``UploadFile``)."""

    task: str                                   # "transcribe" or "translate"
    model: str
    upload: object
    response_format: str = "json"
    language: str | None = None
    prompt: str | None = None
    temperature: float = 0.0
    granularities: tuple[str, ...] = ()
    stream: bool = False
    own: dict = field(default_factory=dict)     # beam_size, ... as the recognizer takes them
    speakers: dict = field(default_factory=dict)    # num_speakers, ... as DiarizeOptions takes them

    @property
    def diarize(self) -> bool:
        return self.response_format == "diarized_json"

    def diarize_options(self):
        """The speaker fields as :class:`DiarizeOptions` (the count found between 1 and 8 where none is given)."""
        from asrforge.inference.diarization import DiarizeOptions

        return DiarizeOptions(**self.speakers)

    def options(self) -> dict:
        """The keyword options of ``Recognizer.transcribe`` this request asks for (what it leaves out is left out,
        so a model that cannot take an option is only refused it when the request names it)."""
        opts = dict(self.own)
        if self.task == "translate":
            opts["task"] = "translate"
        if self.language is not None:
            opts["language"] = self.language
        if self.prompt:
            opts["initial_prompt"] = self.prompt
        if self.temperature:
            # sampling from the temperature asked, and the usual fallback above it to 1.0
            steps = int(round((1.0 - self.temperature) / 0.2))
            opts["temperature"] = tuple(round(min(1.0, self.temperature + 0.2 * i), 4) for i in range(steps + 1))
        if "word" in self.granularities:
            opts["word_timestamps"] = True
        return opts


def _one(form, name: str) -> str | None:
    values = form.getlist(name)
    if len(values) > 1:
        raise bad_request(f"{name} was given {len(values)} times; give it once", name)
    if not values:
        return None
    if not isinstance(values[0], str):
        raise bad_request(f"{name} must be a form field, not a file", name)
    return values[0].strip()


def _number(form, name: str, kind, low: float, high: float):
    text = _one(form, name)
    if text is None or text == "":
        return None
    try:
        value = kind(text)
    except ValueError:
        raise bad_request(f"{name} must be a{'n integer' if kind is int else ' number'} from {low:g} to {high:g}; "
                          f"got {text!r}", name) from None
    if not (low <= value <= high) or (isinstance(value, float) and math.isnan(value)):
        raise bad_request(f"{name} must be from {low:g} to {high:g}; got {text}", name)
    return value


def _boolean(form, name: str) -> bool:
    text = _one(form, name)
    if text is None or text == "":
        return False
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise bad_request(f"{name} must be true or false; got {text!r}", name)


def parse_form(form, task: str) -> AudioRequest:
    """A parsed multipart form -> :class:`AudioRequest`, or :class:`ApiError` 400 naming the field at fault."""
    allowed = OPENAI_FIELDS + OWN_FIELDS + SPEAKER_FIELDS if task == "transcribe" else TRANSLATION_FIELDS
    unknown = sorted(set(form.keys()) - set(allowed))
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; this endpoint takes {', '.join(allowed)}",
                          unknown[0], "unknown_parameter")
    uploads = form.getlist("file")
    if not uploads:
        raise bad_request("file is missing: send the audio as the multipart field 'file'", "file", "missing_field")
    if len(uploads) > 1 or isinstance(uploads[0], str):
        raise bad_request("file must be one uploaded file (multipart/form-data with a filename)", "file")
    model = _one(form, "model")
    if not model:
        raise bad_request("model is missing: name one of the models GET /v1/models lists", "model", "missing_field")
    response_format = _one(form, "response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise bad_request(f"response_format {response_format!r} is not one of {', '.join(RESPONSE_FORMATS)}",
                          "response_format")
    if response_format == "diarized_json" and task != "transcribe":
        raise bad_request("response_format diarized_json is for transcriptions (/v1/audio/transcriptions); a "
                          "translation answers json, text, srt, vtt or verbose_json", "response_format")
    granularities: list[str] = []
    for name in ("timestamp_granularities[]", "timestamp_granularities"):
        for value in form.getlist(name):
            for g in str(value).replace(",", " ").split():
                if g not in GRANULARITIES:
                    raise bad_request(f"{name} holds {g!r}; it takes {' and '.join(GRANULARITIES)}", name)
                if g not in granularities:
                    granularities.append(g)
            if granularities and response_format != "verbose_json":
                raise bad_request(f"{name} needs response_format verbose_json (timestamps are only in that format's "
                                  f"segments and words); got {response_format}", name)
    chunking = _one(form, "chunking_strategy")
    if chunking not in (None, "", "auto"):
        raise bad_request("chunking_strategy: only 'auto' is offered (long audio is cut at its pauses)",
                          "chunking_strategy")
    own = {}
    for name, kind, low, high in (("beam_size", int, 1, 64), ("best_of", int, 1, 64), ("patience", float, 0.0, 100.0),
                                  ("length_penalty", float, 0.0, 10.0)):
        value = _number(form, name, kind, low, high)
        if value is not None:
            own[name] = value
    speakers = {name: value for name in SPEAKER_FIELDS if (value := _number(form, name, int, 1, 32)) is not None}
    if speakers and response_format != "diarized_json":
        raise bad_request(f"{next(iter(speakers))} goes with response_format diarized_json (the format with speakers); "
                          f"got {response_format}", next(iter(speakers)))
    if "num_speakers" in speakers and len(speakers) > 1:
        raise bad_request("num_speakers fixes the count; leave out min_speakers and max_speakers", "num_speakers")
    if speakers.get("min_speakers", 1) > speakers.get("max_speakers", 32):
        raise bad_request(f"min_speakers ({speakers['min_speakers']}) is above max_speakers "
                          f"({speakers['max_speakers']})", "min_speakers")
    temperature = _number(form, "temperature", float, 0.0, 1.0)
    return AudioRequest(task=task, model=model, upload=uploads[0], response_format=response_format,
                        language=(_one(form, "language") or None) if task == "transcribe" else None,
                        prompt=_one(form, "prompt") or None, temperature=temperature or 0.0,
                        granularities=tuple(granularities), stream=_boolean(form, "stream"), own=own,
                        speakers=speakers)
