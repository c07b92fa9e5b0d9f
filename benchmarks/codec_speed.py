"""Workload 7: the sans-IO codec alone, no sockets (run by ``run.py`` in a fresh process).

* decode: a response body of 8 KiB AudioEvents (the emulator's chunk size),
  fed in 16 KiB pieces as HTTP/2 DATA frames deliver it, through the
  ``ResponseParser`` the client uses (event-stream framing, both CRCs, header
  decoding, audio out) and through the bare ``EventStreamDecoder``;
* encode: signed envelopes around a TextEvent of a typical LLM sentence
  (inner message, ``:date``, chained HMAC-SHA256 ``:chunk-signature``).

MB/s count audio payload bytes out (decode) and envelope bytes out (encode);
each figure is the median of several timed repetitions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable


def _rate(work: Callable[[], int], seconds: float, repetitions: int) -> float:
    """Median MB/s of ``work`` (returns bytes processed) over ``repetitions`` slices of ``seconds``."""
    work()  # warm-up
    rates = []
    for _ in range(repetitions):
        done = 0
        started = time.perf_counter()
        while True:
            done += work()
            elapsed = time.perf_counter() - started
            if elapsed >= seconds / repetitions:
                break
        rates.append(done / 1e6 / elapsed)
    return statistics.median(rates)


def measure(seconds: float, repetitions: int = 5) -> dict[str, float]:
    from amazon_polly_streaming._wire.event_signer import EventSigner
    from amazon_polly_streaming._wire.eventstream import EventStreamDecoder, encode_headers, encode_message
    from amazon_polly_streaming._wire.request import text_event
    from amazon_polly_streaming._wire.response import ResponseParser

    audio_headers = encode_headers(
        ((":message-type", "event"), (":event-type", "AudioEvent"), (":content-type", "application/octet-stream"))
    )
    frame = encode_message(audio_headers, bytes(range(256)) * 32)  # 8 KiB of audio
    body = frame * 128  # 1 MiB of audio
    pieces = [body[i : i + 16384] for i in range(0, len(body), 16384)]
    audio_per_body = 8192 * 128

    def decode_parser() -> int:
        parser = ResponseParser()
        parser.receive_headers([(b":status", b"200"), (b"content-type", b"application/vnd.amazon.eventstream")])
        audio = 0
        for piece in pieces:
            for item in parser.receive_data(piece):
                if type(item) is bytes:
                    audio += len(item)
        assert audio == audio_per_body
        return audio

    def decode_bare() -> int:
        decoder = EventStreamDecoder()
        audio = 0
        for piece in pieces:
            for message in decoder.feed(piece):
                audio += len(message.payload)
        return audio

    now = int(time.time() * 1000)
    # The key's scope must name the day of the signing time, as in a real request.
    scope = time.strftime("%Y%m%d", time.gmtime(now // 1000)) + "/us-east-1/polly/aws4_request"
    signer = EventSigner(bytes(range(32)), scope, bytes(32), key_for=lambda day: bytes(range(32)))
    event = text_event(
        "Sure! The next train to the airport leaves at 10:42 from platform 3, and it takes about 25 minutes."
    )

    def encode() -> int:
        size = 0
        for _ in range(200):
            size += len(signer.sign(event, now))
        return size

    per_slice = seconds / 3
    envelope = len(signer.sign(event, now))
    encode_rate = _rate(encode, per_slice, repetitions)
    return {
        "decode_audio_mb_s": _rate(decode_parser, per_slice, repetitions),
        "decode_bare_decoder_mb_s": _rate(decode_bare, per_slice, repetitions),
        "encode_envelopes_mb_s": encode_rate,
        "envelope_bytes": envelope,
        "encode_envelopes_per_s": encode_rate * 1e6 / envelope,
    }


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__)
    options.add_argument("--seconds", type=float, default=3.0, help="total measuring time")
    args = options.parse_args()
    sys.stdout.write(json.dumps(measure(args.seconds)) + "\n")


if __name__ == "__main__":
    main()
