"""Uploads: capped while they arrive, copied to a temporary file of the server's own, decoded, removed.

The cap is counted on the bytes as they arrive (:class:`UploadLimit`, an ASGI middleware), so an upload over
``--max-upload-mb`` is refused without being held whole anywhere. Starlette spools the form's file part to an
anonymous temporary file past 1 MB; :func:`read_upload` copies it under the server's temporary folder (the
client's file name gives only its extension, never a path) for the audio reader, and removes that copy in every
case, also when decoding fails.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from asrforge_runtime.audio import load_audio
from asrforge.errors import AudioError
from asrforge.serve.errors import ApiError

FORM_OVERHEAD = 64 * 1024       # room for the form's other fields and part headers, past the file itself
DRAIN_FACTOR = 4                # an oversized body is read (and dropped) up to this many times the cap, so the
                                # client gets the 413 instead of a reset connection; past it the connection closes


FIX = "send a whole recording in WAV, FLAC, MP3, Ogg/Vorbis or Opus"


class UploadTooLarge(Exception):
    pass


def too_large(max_bytes: int) -> ApiError:
    return ApiError(413, f"the upload is larger than this server's limit of {max_bytes / 2**20:g} MB; send a shorter "
                         f"or more compressed file (FLAC, Opus, MP3), or start the server with a larger --max-upload-mb",
                    "file", "file_too_large")


class UploadLimit:
    """ASGI middleware: a request body under ``prefix`` past ``max_bytes`` (+ form overhead) raises
    :class:`UploadTooLarge` from ``receive``, where the form is being read."""

    def __init__(self, app, max_bytes: int, prefix: str = "/v1/audio/"):
        self.app = app
        self.max_bytes = max_bytes
        self.prefix = prefix

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            return await self.app(scope, receive, send)
        limit = self.max_bytes + FORM_OVERHEAD
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    while message.get("more_body") and received < DRAIN_FACTOR * limit:
                        message = await receive()
                        received += len(message.get("body", b""))
                    raise UploadTooLarge()
            return message

        await self.app(scope, limited, send)


def _suffix(filename: str | None) -> str:
    """The client's extension, if it is a plain one (it helps no decoder, but names the copy honestly)."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ""


def read_upload(upload, folder: Path) -> np.ndarray:
    """A Starlette ``UploadFile`` -> 16 kHz mono float32 ``(N,)``, or :class:`ApiError` 400 saying what is wrong
    with the file (blocking: run it off the event loop)."""
    name = upload.filename or "the upload"
    fd, path = tempfile.mkstemp(suffix=_suffix(upload.filename), dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            upload.file.seek(0)
            shutil.copyfileobj(upload.file, out, 1 << 20)
        try:
            wave = load_audio(path)
        except AudioError as e:
            # what is wrong, in the reader's words, with the client's file name; the fix is the client's to make
            problem = str(e).split("; ")[0].replace(f"audio file {path}", f"the file {name!r}").replace(path, repr(name))
            raise ApiError(400, f"{problem}; {FIX}", "file", "invalid_file") from None
        except (MemoryError, ValueError) as e:
            raise ApiError(400, f"the file {name!r} cannot be decoded as audio ({e}); {FIX}", "file", "invalid_file") from None
    finally:
        Path(path).unlink(missing_ok=True)
    if wave.size == 0:
        raise ApiError(400, f"the file {name!r} holds no audio samples; {FIX}", "file", "invalid_file")
    return wave
