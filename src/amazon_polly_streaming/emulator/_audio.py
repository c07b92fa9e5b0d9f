"""Real speech for the emulator: eSpeak NG through ctypes, resampling, streaming encoders.

Emulator-only (numpy, soundfile, espeakng-loader). eSpeak is a fast formant
synthesizer: a sentence takes a few milliseconds, so the emulator can afford
real speech in every test. It is not thread-safe, hence the module lock.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import espeakng_loader
import numpy as np
import soundfile

from ..voices import find_voice

__all__ = ["SUPPORTED_FORMATS", "StreamEncoder", "synthesize_pcm", "tone_pcm", "word_starts"]

SUPPORTED_FORMATS = frozenset({"pcm", "mp3", "ogg_vorbis", "ogg_opus", "mulaw", "alaw"})

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_CHARS_UTF8 = 1
_SSML = 0x10
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _EspeakEvent(ctypes.Structure):
    """``espeak_EVENT`` of eSpeak NG's speak_lib.h."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character position in the input
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds into the synthesized speech
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),  # a union of int, const char * and char[8]
    ]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_EspeakEvent))


class _Espeak:
    """The process-wide eSpeak NG instance (initialised on first use)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._lib: Any = None
        self.rate = 22050
        self._chunks: list[bytes] = []
        #: Word events of the last synthesis: (0-based character, milliseconds).
        self.words: list[tuple[int, int]] = []
        self._voice: bytes | None = None
        # Kept on the instance: ctypes must not collect a callback C still holds.
        self._callback = _CALLBACK(self._collect)

    def _collect(self, samples: Any, count: int, events: Any) -> int:
        if samples and count > 0:
            self._chunks.append(ctypes.string_at(samples, count * 2))
        if events:
            index = 0
            while (event := events[index]).type != _EVENT_LIST_TERMINATED:
                if event.type == _EVENT_WORD:
                    self.words.append((event.text_position - 1, event.audio_position))
                index += 1
        return 0

    def _load(self) -> Any:
        if self._lib is None:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            lib.espeak_Initialize.restype = ctypes.c_int
            rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), 0)
            if rate <= 0:
                raise RuntimeError("eSpeak NG failed to initialise")
            lib.espeak_SetSynthCallback(self._callback)
            self.rate = rate
            self._lib = lib
        return self._lib

    def speak(self, text: str, voice: bytes, ssml: bool) -> bytes:
        """Native-rate s16le PCM of ``text`` (caller holds ``lock``)."""
        lib = self._load()
        if voice != self._voice:
            # "de-ch+f3", else the language alone ("de+f3"), else American English.
            name, _, variant = voice.partition(b"+")
            fallback = name.partition(b"-")[0] + b"+" + variant
            for candidate in (voice, fallback, b"en-us+" + variant):
                if lib.espeak_SetVoiceByName(candidate) == 0:
                    break
            self._voice = voice
        data = text.encode("utf-8") + b"\0"
        self._chunks = []
        self.words = []
        lib.espeak_Synth(data, len(data), 0, 0, 0, _CHARS_UTF8 | (_SSML if ssml else 0), None, None)
        lib.espeak_Synchronize()
        pcm = b"".join(self._chunks)
        self._chunks = []
        return pcm


_ESPEAK = _Espeak()


def _espeak_voice(voice_id: str, language_code: str | None) -> bytes:
    voice = find_voice(voice_id)
    language = language_code or (voice.language_code if voice else "en-US")
    if voice is not None and language not in voice.language_codes:
        language = voice.language_code
    # eSpeak names languages in lower case ("en-us", "fr-fr"); the variant
    # gives the voice its gender.
    variant = "+f3" if voice is not None and voice.gender == "Female" else "+m3"
    return (language.lower() + variant).encode("ascii")


def resample(samples: np.ndarray[Any, np.dtype[np.int16]], source_rate: int, target_rate: int) -> bytes:
    """Resample s16 mono with linear interpolation after a moving-average low-pass."""
    if source_rate == target_rate or samples.size == 0:
        return bytes(samples.astype("<i2").tobytes())
    signal = samples.astype(np.float32)
    if target_rate < source_rate:
        # Averaging over the decimation ratio removes most of what would alias.
        width = max(1, round(source_rate / target_rate))
        if width > 1:
            signal = np.convolve(signal, np.full(width, 1.0 / width, dtype=np.float32), mode="same")
    count = int(samples.size * target_rate / source_rate)
    positions = np.arange(count, dtype=np.float64) * (source_rate / target_rate)
    out = np.interp(positions, np.arange(samples.size), signal)
    return bytes(np.clip(np.rint(out), -32768, 32767).astype("<i2").tobytes())


def synthesize_pcm(
    text: str,
    *,
    voice_id: str,
    language_code: str | None,
    sample_rate: int,
    ssml: bool = False,
) -> bytes:
    """Speech for ``text`` as s16le mono PCM at ``sample_rate`` (blocking; thread-safe)."""
    if not text.strip():
        return b""
    voice = _espeak_voice(voice_id, language_code)
    with _ESPEAK.lock:
        pcm = _ESPEAK.speak(text, voice, ssml)
        native = _ESPEAK.rate
    return resample(np.frombuffer(pcm, dtype="<i2"), native, sample_rate)


def word_starts(text: str, *, voice_id: str, language_code: str | None) -> list[tuple[int, float]]:
    """Where each word of ``text`` starts in :func:`synthesize_pcm`'s speech of it.

    (character index in ``text``, seconds), from eSpeak's own word events: the
    ground truth that tests of word timing compare estimates with.
    """
    if not text.strip():
        return []
    voice = _espeak_voice(voice_id, language_code)
    with _ESPEAK.lock:
        _ESPEAK.speak(text, voice, False)
        words = list(_ESPEAK.words)
    return [(position, milliseconds / 1000) for position, milliseconds in words]


_TONES: dict[int, bytes] = {}


def tone_pcm(n_samples: int, sample_rate: int) -> bytes:
    """``n_samples`` of a 440 Hz tone, from a cached one-second buffer."""
    second = _TONES.get(sample_rate)
    if second is None:
        t = np.arange(sample_rate, dtype=np.float64) / sample_rate
        second = _TONES[sample_rate] = (np.sin(2 * np.pi * 440 * t) * 6000).astype("<i2").tobytes()
    size = n_samples * 2
    if size <= len(second):
        return second[:size]
    repeats, rest = divmod(size, len(second))
    return second * repeats + second[:rest]


# ------------------------------------------------------------------------- encoding


def _g711(pcm: bytes, law: str) -> bytes:
    """G.711 mu-law or A-law of s16le PCM."""
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int32)
    sign = x < 0
    magnitude = np.minimum(np.abs(x), 32635)
    if law == "mulaw":
        biased = magnitude + 0x84
        exponent = np.floor(np.log2(biased)).astype(np.int32) - 7
        mantissa = (biased >> (exponent + 3)) & 0x0F
        code = ~((sign.astype(np.int32) << 7) | (exponent << 4) | mantissa) & 0xFF
    else:
        big = magnitude >= 256
        exponent = np.where(big, np.floor(np.log2(np.maximum(magnitude, 1))).astype(np.int32) - 7, 0)
        mantissa = np.where(big, (magnitude >> (exponent + 3)) & 0x0F, (magnitude >> 4) & 0x0F)
        code = (((~sign).astype(np.int32) << 7) | (exponent << 4) | mantissa) ^ 0x55
    return bytes(code.astype(np.uint8).tobytes())


def _is_tag_placeholder(data: bytes) -> bool:
    """LAME's reserved Xing/Info frame: a frame header, then zeros until the tag is written on close."""
    return len(data) > 4 and data[0] == 0xFF and data[1] & 0xE0 == 0xE0 and not any(data[4:])


class _AppendOnlySink:
    """A file object for libsndfile that hands out bytes as they are appended.

    libsndfile writes MP3 with a placeholder Xing/Info frame that it rewrites
    on close (at bitrates whose frames can hold it), and Ogg headers it never
    revisits. A stream cannot take back bytes it sent, so rewrites of
    already-sent bytes are dropped, and for MP3 the placeholder frame is never
    sent: its frame count would read as zero.
    """

    def __init__(self, drop_tag_frame: bool) -> None:
        self._drop_tag = drop_tag_frame
        self._pos = 0
        self._end = 0
        self._out: list[bytes] = []

    def write(self, data: Any) -> int:
        size = len(data)
        if self._pos >= self._end:
            chunk = bytes(data)
            if not (self._drop_tag and self._pos == 0 and _is_tag_placeholder(chunk)):
                self._out.append(chunk)
            self._end = self._pos + size
        self._pos += size
        return size

    def seek(self, offset: int, whence: int = 0) -> int:
        base = 0 if whence == 0 else self._pos if whence == 1 else self._end
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        return b""

    def take(self) -> bytes:
        out = b"".join(self._out)
        self._out = []
        return out


_SOUNDFILE_FORMATS = {
    "mp3": ("MP3", "MPEG_LAYER_III"),
    "ogg_vorbis": ("OGG", "VORBIS"),
    "ogg_opus": ("OGG", "OPUS"),
}
#: A streamed MP3 has no Xing/Info frame (its frame count is known only at the
#: end), so players, libsndfile and ffprobe take its duration from its size
#: and the bitrate of the first frame. libsndfile's default is variable
#: bitrate, whose first (quiet) frame is 8 kbit/s at 24 kHz: 4.6 s of speech
#: then read as 48.7 s. At a constant bitrate every frame has the same one
#: and that estimate is exact. Level 0.75 is a speech bitrate: 48 kbit/s at
#: 22.05 and 24 kHz, 24 kbit/s at 8 kHz. (libsndfile applies the bitrate mode
#: only together with a compression level.)
_MP3_OPTIONS: dict[str, Any] = {"bitrate_mode": "CONSTANT", "compression_level": 0.75}


class StreamEncoder:
    """Encodes PCM as it arrives; the concatenated output is one valid stream."""

    def __init__(self, output_format: str, sample_rate: int) -> None:
        if output_format not in SUPPORTED_FORMATS:
            raise ValueError(f"unsupported format {output_format!r}")
        self.format = output_format
        self.sample_rate = sample_rate
        self._sink: _AppendOnlySink | None = None
        self._file: soundfile.SoundFile | None = None
        if output_format in _SOUNDFILE_FORMATS:
            container, subtype = _SOUNDFILE_FORMATS[output_format]
            self._sink = _AppendOnlySink(drop_tag_frame=output_format == "mp3")
            self._file = soundfile.SoundFile(
                self._sink,
                mode="w",
                samplerate=sample_rate,
                channels=1,
                format=container,
                subtype=subtype,
                **(_MP3_OPTIONS if output_format == "mp3" else {}),
            )

    def encode(self, pcm: bytes) -> bytes:
        if self.format == "pcm":
            return pcm
        if self.format in ("mulaw", "alaw"):
            return _g711(pcm, self.format)
        assert self._file is not None
        assert self._sink is not None
        if pcm:
            self._file.buffer_write(pcm, dtype="int16")
        return self._sink.take()

    def finish(self) -> bytes:
        if self._file is None or self._sink is None:
            return b""
        self._file.close()
        self._file = None
        return self._sink.take()
