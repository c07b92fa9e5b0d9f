"""The RIFF/WAVE header for 16-bit mono PCM (the CLI's ``--format wav``)."""

from __future__ import annotations

import struct

__all__ = ["wav_header"]

_STREAMING_SIZE = 0xFFFFFFFF


def wav_header(sample_rate: int, data_size: int | None) -> bytes:
    """A 44-byte header; ``data_size`` None gives the "unknown length" form for pipes."""
    if data_size is None:
        riff_size = data_length = _STREAMING_SIZE
    else:
        data_length = data_size
        riff_size = min(36 + data_size, _STREAMING_SIZE)
    channels, bits = 1, 16
    block_align = channels * bits // 8
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block_align, block_align, bits)
        + b"data"
        + struct.pack("<I", data_length)
    )
