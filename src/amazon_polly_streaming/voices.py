"""The generative voices that Polly's bidirectional streaming API accepts.

One table serves three readers: ``polly-stream voices``, the emulator's request
checks, and documentation. It is data, not a live query: AWS adds voices over
time, so the client itself never rejects a voice id it does not know (the
service is the authority); only the emulator does.

Source: the Amazon Polly Developer Guide, read 2026-12-01: "Generative voices"
(https://docs.aws.amazon.com/polly/latest/dg/generative-voices.html, "Amazon
Polly currently offers 43 voices in a generative variant"), "Available voices"
(available-voices.html, its "Generative voice" column: Lisa nl-BE, Laura
nl-NL, Olivia en-AU, Amy and Brian en-GB, Kajal en-IN, Niamh en-IE and Aria
en-NZ are generative; Emma, Arthur, Nicole, Russell, Aditi and Raveena are
not), and its document history of 2026-03-19 ("ten additional generative
voices: Brian, Aria, Jasmine, Tiffany, Ambre, Florian, Sabrina, Lennart,
Beatrice, Lorenzo"). Every id is in the service model's ``VoiceId`` enum and
every language in its ``LanguageCode`` enum (botocore 1.44.8,
``botocore/data/polly/2016-06-10/service-2.json``); ``tests/test_emulator_requests.py``
checks both.
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
    Voice("Olivia", "en-AU", "Female"),
    Voice("Amy", "en-GB", "Female"),
    Voice("Brian", "en-GB", "Male"),
    Voice("Kajal", "en-IN", "Female", ("hi-IN",)),
    Voice("Niamh", "en-IE", "Female"),
    Voice("Aria", "en-NZ", "Female"),
    Voice("Jasmine", "en-SG", "Female"),
    Voice("Ayanda", "en-ZA", "Female"),
    Voice("Danielle", "en-US", "Female"),
    Voice("Joanna", "en-US", "Female"),
    Voice("Ruth", "en-US", "Female"),
    Voice("Salli", "en-US", "Female"),
    Voice("Tiffany", "en-US", "Female"),
    Voice("Matthew", "en-US", "Male"),
    Voice("Stephen", "en-US", "Male"),
    Voice("Lea", "fr-FR", "Female"),
    Voice("Ambre", "fr-FR", "Female"),
    Voice("Remi", "fr-FR", "Male"),
    Voice("Florian", "fr-FR", "Male"),
    Voice("Gabrielle", "fr-CA", "Female"),
    Voice("Liam", "fr-CA", "Male"),
    Voice("Vicki", "de-DE", "Female"),
    Voice("Daniel", "de-DE", "Male"),
    Voice("Lennart", "de-DE", "Male"),
    Voice("Hannah", "de-AT", "Female"),
    Voice("Sabrina", "de-CH", "Female"),
    Voice("Lucia", "es-ES", "Female"),
    Voice("Sergio", "es-ES", "Male"),
    Voice("Mia", "es-MX", "Female"),
    Voice("Andres", "es-MX", "Male"),
    Voice("Lupe", "es-US", "Female"),
    Voice("Pedro", "es-US", "Male"),
    Voice("Bianca", "it-IT", "Female"),
    Voice("Beatrice", "it-IT", "Female"),
    Voice("Adriano", "it-IT", "Male"),
    Voice("Lorenzo", "it-IT", "Male"),
    Voice("Camila", "pt-BR", "Female"),
    Voice("Ines", "pt-PT", "Female"),
    Voice("Laura", "nl-NL", "Female"),
    Voice("Lisa", "nl-BE", "Female"),
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
