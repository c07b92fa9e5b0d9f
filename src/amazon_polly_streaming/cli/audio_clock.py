"""How many seconds of audio a stream of encoded bytes holds, counted as it arrives.

For progress reports only (the CLI's status line): raw formats are counted by
size, MP3 by frame headers, Ogg by the granule position of its pages.
"""

from __future__ import annotations

__all__ = ["AudioClock"]

# MPEG audio: bitrates (kbit/s) of layer III by version, and sample rates.
_BITRATES_V1 = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 0)
_BITRATES_V2 = (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160, 0)
_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


class AudioClock:
    """Feed encoded bytes; read ``seconds``."""

    def __init__(self, output_format: str, sample_rate: int) -> None:
        self.format = output_format
        self.sample_rate = sample_rate
        self.seconds = 0.0
        self._buffer = bytearray()
        self._samples = 0

    def feed(self, data: bytes) -> float:
        fmt = self.format
        if fmt in ("pcm", "wav"):
            self._samples += len(data) // 2
        elif fmt in ("mulaw", "alaw"):
            self._samples += len(data)
        elif fmt == "mp3":
            self._buffer += data
            self._count_mp3()
        elif fmt.startswith("ogg"):
            self._buffer += data
            self._count_ogg(48000 if fmt == "ogg_opus" else self.sample_rate)
            return self.seconds
        self.seconds = self._samples / self.sample_rate if self.sample_rate else 0.0
        return self.seconds

    def _count_mp3(self) -> None:
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= 10:
            if buf[pos : pos + 3] == b"ID3":
                tag = ((buf[pos + 6] & 0x7F) << 21) | ((buf[pos + 7] & 0x7F) << 14)
                tag |= ((buf[pos + 8] & 0x7F) << 7) | (buf[pos + 9] & 0x7F)
                if size - pos < 10 + tag:
                    break
                pos += 10 + tag
                continue
            if buf[pos] != 0xFF or buf[pos + 1] & 0xE0 != 0xE0:
                pos += 1
                continue
            version = (buf[pos + 1] >> 3) & 3
            bitrate_index = buf[pos + 2] >> 4
            rate_index = (buf[pos + 2] >> 2) & 3
            if version == 1 or rate_index == 3 or bitrate_index in (0, 15) or (buf[pos + 1] >> 1) & 3 != 1:
                pos += 1  # reserved values or not layer III: not a frame header
                continue
            rate = _RATES[version][rate_index]
            kbps = (_BITRATES_V1 if version == 3 else _BITRATES_V2)[bitrate_index]
            padding = (buf[pos + 2] >> 1) & 1
            samples = 1152 if version == 3 else 576
            length = samples // 8 * kbps * 1000 // rate + padding
            if size - pos < length:
                break
            self._samples += samples
            self.sample_rate = rate
            pos += length
        del buf[:pos]

    def _count_ogg(self, rate: int) -> None:
        buf = self._buffer
        pos = 0
        size = len(buf)
        while size - pos >= 27:
            if buf[pos : pos + 4] != b"OggS":
                found = buf.find(b"OggS", pos + 1)
                pos = found if found >= 0 else size - 3
                continue
            segments = buf[pos + 26]
            if size - pos < 27 + segments:
                break
            length = 27 + segments + sum(buf[pos + 27 : pos + 27 + segments])
            if size - pos < length:
                break
            granule = int.from_bytes(buf[pos + 6 : pos + 14], "little", signed=True)
            if granule > 0:
                self.seconds = granule / rate
            pos += length
        del buf[:pos]
