"""eSpeak NG through ctypes, from the ``espeakng-loader`` wheel (library and voice data inside it;
nothing to install system-wide).

eSpeak keeps global state, so there is one engine per process; the corpus builder runs one
per worker process.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from asrforge.errors import AsrforgeError

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM = {"rate": 1, "volume": 2, "pitch": 3, "range": 4}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine:
    """``synthesize(text, voice, rate, pitch, pitch_range) -> int16 (N,)`` at ``self.sample_rate``."""

    _instance: "EspeakEngine | None" = None

    @classmethod
    def get(cls) -> "EspeakEngine":
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def __init__(self):
        try:
            import espeakng_loader
        except ImportError:
            raise AsrforgeError("the synthetic corpus needs the espeakng-loader package: pip install espeakng-loader") from None
        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.libc = ctypes.CDLL(None)   # breath/noise sources draw from the C library's rand()
        self.lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                          ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        self.data_path = Path(espeakng_loader.get_data_path())
        rate = self.lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_path).encode(), 0)
        if rate <= 0:
            raise AsrforgeError("eSpeak NG failed to initialize from the espeakng-loader data folder; reinstall espeakng-loader")
        self.sample_rate = int(rate)
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, num_samples, events) -> int:
        if num_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        return 0

    def seed(self, value: int) -> None:
        """Seed both random sources eSpeak uses; unseeded, breathy voices differ from run to run."""
        self.lib.espeak_ng_SetRandSeed(int(value))
        self.libc.srand(int(value) & 0x7FFFFFFF)

    def has_voice(self, voice: str) -> bool:
        """``"en-us+m3"``: the language must load, and the variant must exist (eSpeak would silently ignore it)."""
        language, _, variant = voice.partition("+")
        if variant and not (self.data_path / "voices" / "!v" / variant).is_file():
            return False
        return self.lib.espeak_SetVoiceByName(language.encode()) == 0

    def synthesize(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise AsrforgeError(f"eSpeak NG has no voice {voice!r}")
        for name, value in (("rate", rate), ("pitch", pitch), ("range", pitch_range)):
            self.lib.espeak_SetParameter(_PARAM[name], int(value), 0)
        self._chunks = []
        data = text.encode("utf-8") + b"\0"
        self.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
