"""The phrase cache's keys and stored values: sans-IO, no asyncio, no clock.

A key is a hash of everything that changes the audio, so that no text ever
appears in a Redis key and two requests that could sound different never
share an entry. A stored value carries its own format, sample rate, length
and checksum: a damaged or truncated value read back is refused here (and
the caller treats it as a miss), never replayed as audio.
"""

from __future__ import annotations

import hashlib
import struct
import zlib

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from ._wire.request import SynthesisParams

__all__ = ["DamagedEntry", "Entry", "decode_entry", "encode_entry", "phrase_key"]

#: Bumped whenever the key's inputs or the value's layout change: entries of
#: an older layout then simply miss.
_KEY_PERSON = b"polly-phrase-v1"
#: magic, format length, sample rate, audio length, CRC-32 (then format, audio).
_HEAD = struct.Struct(">4sBIQI")
_MAGIC = b"PSC\x01"


class DamagedEntry(ValueError):
    """A stored value that is not a whole entry for its key: a miss, to be deleted."""


class Entry:
    """The whole audio of one finished stream, with what it was made as."""

    __slots__ = ("audio", "output_format", "sample_rate")

    def __init__(self, audio: bytes, output_format: str, sample_rate: str) -> None:
        self.audio = audio
        self.output_format = output_format
        self.sample_rate = sample_rate

    def __repr__(self) -> str:
        return f"<Entry {self.output_format}/{self.sample_rate} {len(self.audio)} bytes>"


def phrase_key(
    params: SynthesisParams,
    text: str,
    *,
    text_type: str | None,
    flush: bool,
    region: str,
    namespace: str,
) -> str:
    """The hex key of one whole-text request: everything that changes its audio, hashed.

    Each field is length-prefixed, so no two different requests can run into
    the same byte string. ``language_code`` None (the voice decides) and a
    given code are different keys: for a bilingual voice they sound different.
    """
    digest = hashlib.blake2b(digest_size=20, person=_KEY_PERSON)
    fields = (
        namespace,
        region,
        params.voice_id,
        params.engine,
        params.language_code or "",
        params.output_format,
        params.sample_rate,
        ",".join(params.lexicon_names),
        text_type or "text",
        "flush" if flush else "",
        text,
    )
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")
        digest.update(len(data).to_bytes(4, "big"))
        digest.update(data)
    return digest.hexdigest()


def encode_entry(key: str, entry: Entry) -> bytes:
    """The bytes stored for ``entry`` under ``key`` (the key is in the checksum, not in the value)."""
    fmt = entry.output_format.encode("ascii")
    audio = entry.audio
    rate = int(entry.sample_rate)
    crc = _checksum(key, fmt, rate, audio)
    return b"".join((_HEAD.pack(_MAGIC, len(fmt), rate, len(audio), crc), fmt, audio))


def decode_entry(key: str, blob: bytes, params: SynthesisParams) -> Entry:
    """The entry stored as ``blob`` under ``key``; ``DamagedEntry`` unless it is whole and fits ``params``."""
    size = _HEAD.size
    if len(blob) < size:
        raise DamagedEntry(f"{len(blob)} bytes, shorter than an entry's header")
    magic, fmt_len, rate, audio_len, crc = _HEAD.unpack_from(blob)
    if magic != _MAGIC:
        raise DamagedEntry("not an entry of this layout")
    if len(blob) != size + fmt_len + audio_len:
        raise DamagedEntry(f"{len(blob)} bytes where the header says {size + fmt_len + audio_len}")
    fmt = blob[size : size + fmt_len]
    audio = blob[size + fmt_len :]
    if _checksum(key, fmt, rate, audio) != crc:
        raise DamagedEntry("checksum mismatch")
    output_format = fmt.decode("ascii", "replace")
    if output_format != params.output_format or str(rate) != params.sample_rate:
        # Only a hash collision or a value copied under another key gets here.
        raise DamagedEntry(f"{output_format} at {rate} Hz, not what the key asks for")
    return Entry(audio, output_format, params.sample_rate)


def _checksum(key: str, fmt: bytes, rate: int, audio: bytes) -> int:
    # CRC-32 finds accidental damage (a cut-off write, a flipped bit) at
    # gigabytes a second; the key is in it so that a value copied under
    # another key does not pass either. Anyone who can write to the cache
    # can write any audio, so a cryptographic hash would buy nothing.
    crc = zlib.crc32(key.encode("ascii"))
    crc = zlib.crc32(fmt, crc)
    crc = zlib.crc32(rate.to_bytes(4, "big"), crc)
    return zlib.crc32(audio, crc)
