"""A pipecat pipeline that speaks an LLM's reply while the LLM is still writing it.

Runs against the bundled emulator (pip install 'amazon-polly-streaming[pipecat,emulator]'):

    python examples/pipecat_agent.py

A real agent puts a transport, speech-to-text and an LLM around the same
``PollyStreamingTTSService``; against Polly, drop the emulator and the client
options, and give the service your region.
"""

from __future__ import annotations

import asyncio
import time

from pipecat.frames.frames import (
    EndFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
)
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator
from amazon_polly_streaming.integrations.pipecat import PollyStreamingTTSService

ANSWER = "Sure! The quickest way downtown is the number four bus. It leaves every ten minutes from the corner."


class Speaker(FrameProcessor):
    """Stands in for the output transport: notes when the first audio comes and how much."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0.0
        self.first_audio: float | None = None
        self.audio = bytearray()
        self.sample_rate = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TTSAudioRawFrame):
            if self.first_audio is None:
                self.first_audio = time.monotonic() - self.started
                print(f"first audio after {self.first_audio * 1000:.0f} ms, while the LLM was still writing")
            self.audio += frame.audio
            self.sample_rate = frame.sample_rate
        await self.push_frame(frame, direction)


async def fake_llm(worker: PipelineWorker, speaker: Speaker) -> None:
    """Stands in for an LLM service: a reply token by token, a word every 60 ms."""
    speaker.started = time.monotonic()
    await worker.queue_frame(LLMFullResponseStartFrame())
    for word in ANSWER.split(" "):
        await asyncio.sleep(0.06)
        await worker.queue_frame(LLMTextFrame(word + " "))
    await worker.queue_frame(LLMFullResponseEndFrame())
    await worker.queue_frame(TTSSpeakFrame("Anything else?"))
    await worker.queue_frame(EndFrame())


async def main() -> None:
    async with Emulator() as emulator:
        tts = PollyStreamingTTSService(
            voice_id="Joanna",
            region="us-east-1",
            # Only for the emulator: where it listens, its CA, its test keys.
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
        )
        speaker = Speaker()
        worker = PipelineWorker(Pipeline([tts, speaker]), params=PipelineParams(audio_out_sample_rate=24000))
        llm: list[asyncio.Task[None]] = []

        async def on_pipeline_started(worker: PipelineWorker, frame: Frame) -> None:
            llm.append(asyncio.create_task(fake_llm(worker, speaker)))

        worker.add_event_handler("on_pipeline_started", on_pipeline_started)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()
        await asyncio.gather(*llm)
        seconds = len(speaker.audio) / 2 / speaker.sample_rate
        print(f"{seconds:.1f} s of audio at {speaker.sample_rate} Hz, {len(emulator.requests)} Polly streams")


if __name__ == "__main__":
    asyncio.run(main())
