"""A LiveKit agent speaking through Polly's bidirectional streaming, barge-in included.

Runs against the bundled emulator, with no LiveKit server: the agent's speaker is a
small AudioOutput that keeps the frames (in a room, LiveKit plays them).

    pip install 'amazon-polly-streaming[livekit,emulator]'
    python examples/livekit_agent.py

Against Polly, drop the emulator: ``TTS(voice_id="Joanna", region="us-east-1")``, and
let ``session.start(agent, room=ctx.room)`` publish the audio.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

from amazon_polly_streaming.emulator import DEFAULT_CREDENTIALS, Emulator
from amazon_polly_streaming.integrations.livekit import TTS

ANSWER = "Sure! The quickest way downtown is the number four bus. It leaves every ten minutes from the corner."


async def fake_llm(text: str) -> AsyncIterator[str]:
    """Stands in for a model's token stream: a word every 60 ms."""
    for word in text.split(" "):
        await asyncio.sleep(0.06)
        yield word + " "


class Speaker(AudioOutput):
    """Counts what the agent would play; a room's audio track does this for real."""

    def __init__(self) -> None:
        super().__init__(label="speaker", capabilities=AudioOutputCapabilities(pause=False))
        self.seconds = 0.0
        self.first_audio = asyncio.Event()
        self._segment = 0.0

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        self.seconds += frame.duration
        self._segment += frame.duration
        self.first_audio.set()

    def flush(self) -> None:
        super().flush()
        self._played(interrupted=False)

    def clear_buffer(self) -> None:
        self._played(interrupted=True)

    def _played(self, *, interrupted: bool) -> None:
        if self._segment:
            played, self._segment = self._segment, 0.0
            self.on_playback_finished(playback_position=played, interrupted=interrupted)


async def main() -> None:
    async with Emulator() as emulator:
        polly = TTS(
            voice_id="Joanna",
            region="us-east-1",
            endpoint_url=emulator.endpoint_url,
            verify=emulator.ca_file,
            credentials=next(iter(DEFAULT_CREDENTIALS.items())),
        )
        session: AgentSession[None] = AgentSession(tts=polly)
        speaker = Speaker()
        session.output.audio = speaker
        await session.start(Agent(instructions="You give directions."))  # prewarms a connection

        started = time.monotonic()
        reply = session.say(fake_llm(ANSWER))
        await speaker.first_audio.wait()
        print(f"first audio after {(time.monotonic() - started) * 1000:.0f} ms, while the model was still talking")
        await reply.wait_for_playout()
        print(f"{speaker.seconds:.1f} s of audio")

        speaker.first_audio.clear()
        reply = session.say(fake_llm("Let me tell you the whole history of the number four bus, from the start."))
        await speaker.first_audio.wait()
        reply.interrupt()  # the user spoke: barge-in resets the Polly stream at once
        await reply.wait_for_playout()
        print(f"interrupted: {reply.interrupted}")

        await session.say("Sorry, go ahead.").wait_for_playout()
        connections = {request.connection_id for request in emulator.requests}
        print(f"{len(emulator.requests)} Polly streams on {len(connections)} connection(s)")
        await session.aclose()
        await polly.aclose()


if __name__ == "__main__":
    asyncio.run(main())
