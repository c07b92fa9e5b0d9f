"""The emulator's audio as players read it: the duration of its MP3 stream."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from support import collect, serve

pytestmark = pytest.mark.timeout(120)

TEXT = (
    "The quick brown fox jumps over the lazy dog, and then it runs far away. "
    "A streamed MP3 carries no frame count, so its duration is read from its bitrate."
)


def _ffprobe_seconds(audio: bytes) -> float:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.mp3"
        path.write_bytes(audio)
        out = subprocess.run(
            ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    return float(json.loads(out.stdout)["format"]["duration"])


@pytest.mark.parametrize("rate", ["24000", "8000", "48000"])
async def test_mp3_duration_reads_right(rate: str) -> None:
    # Before: libsndfile's variable bitrate began with an 8 kbit/s frame and no Xing/Info frame was
    # sent, so soundfile and players read 48.7 s for 4.6 s of speech.
    soundfile = pytest.importorskip("soundfile")
    async with serve() as (_, client):
        pcm = await collect(client, text=TEXT, output_format="pcm", sample_rate="16000")
        mp3 = await collect(client, text=TEXT, output_format="mp3", sample_rate=rate)
    truth = len(pcm) / 2 / 16000
    assert truth > 5.0
    info = soundfile.info(io.BytesIO(mp3))
    assert info.samplerate == int(rate)
    assert abs(info.duration - truth) / truth < 0.05, (info.duration, truth)
    data, samplerate = soundfile.read(io.BytesIO(mp3))
    assert abs(len(data) / samplerate - truth) / truth < 0.05
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not installed (Debian: apt-get install ffmpeg); soundfile checked")
    seconds = _ffprobe_seconds(mp3)
    assert abs(seconds - truth) / truth < 0.05, (seconds, truth)
