"""The ``polly-stream`` command and its helpers: arguments, stdin, output files, WAV, the audio clock.

A user of the public API (the client, the voices, the emulator); nothing below the command line imports it.
"""

from .command import main

__all__ = ["main"]
