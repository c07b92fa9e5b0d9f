"""The generative voices that Polly's bidirectional streaming API accepts.

One table serves three readers: ``polly-stream voices``, the emulator's request
checks, and documentation. It is data, not a live query: AWS adds voices over
time, so the client itself never rejects a voice id it does not know (the
service is the authority); only the emulator does.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["VOICES", "Voice", "find_voice", "voices_for_language"]


class Voice(NamedTuple):
    voice_id: str
    language_code: str
    gender: str
    # Bilingual voices also speak these languages (the request's
    # ``x-amzn-LanguageCode`` picks one).
    additional_language_codes: tuple[str, ...] = ()

    @property
    def language_codes(self) -> tuple[str, ...]:
        return (self.language_code, *self.additional_language_codes)


VOICES: tuple[Voice, ...] = (
    Voice("Danielle", "en-US", "Female"),
    Voice("Joanna", "en-US", "Female"),
    Voice("Ruth", "en-US", "Female"),
    Voice("Salli", "en-US", "Female"),
    Voice("Matthew", "en-US", "Male"),
    Voice("Stephen", "en-US", "Male"),
    Voice("Amy", "en-GB", "Female"),
    Voice("Olivia", "en-AU", "Female"),
    Voice("Kajal", "en-IN", "Female", ("hi-IN",)),
    Voice("Ayanda", "en-ZA", "Female"),
    Voice("Lea", "fr-FR", "Female"),
    Voice("Remi", "fr-FR", "Male"),
    Voice("Gabrielle", "fr-CA", "Female"),
    Voice("Liam", "fr-CA", "Male"),
    Voice("Vicki", "de-DE", "Female"),
    Voice("Daniel", "de-DE", "Male"),
    Voice("Hannah", "de-AT", "Female"),
    Voice("Lucia", "es-ES", "Female"),
    Voice("Sergio", "es-ES", "Male"),
    Voice("Mia", "es-MX", "Female"),
    Voice("Andres", "es-MX", "Male"),
    Voice("Lupe", "es-US", "Female"),
    Voice("Pedro", "es-US", "Male"),
    Voice("Bianca", "it-IT", "Female"),
    Voice("Adriano", "it-IT", "Male"),
    Voice("Camila", "pt-BR", "Female"),
    Voice("Ines", "pt-PT", "Female"),
    Voice("Laura", "nl-NL", "Female"),
    Voice("Ida", "nb-NO", "Female"),
    Voice("Seoyeon", "ko-KR", "Female"),
    Voice("Takumi", "ja-JP", "Male"),
)

_BY_ID = {voice.voice_id: voice for voice in VOICES}


def find_voice(voice_id: str) -> Voice | None:
    """The voice with this id (case-sensitive, as the service is), or None."""
    return _BY_ID.get(voice_id)


def voices_for_language(language_code: str | None) -> list[Voice]:
    """Voices that speak ``language_code`` (all voices when it is None)."""
    if language_code is None:
        return list(VOICES)
    return [v for v in VOICES if language_code in v.language_codes]
