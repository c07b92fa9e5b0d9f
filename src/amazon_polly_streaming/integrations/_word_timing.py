"""When each word of a Polly stream starts in its audio: an estimate from durations (sans-IO).

Polly's streaming API sends no speech marks: ``StartSpeechSynthesisStream``'s
event stream carries only ``AudioEvent`` and ``StreamClosedEvent`` (botocore
``polly/2016-06-10/service-2.json``, ``StartSpeechSynthesisStreamActionStream``),
and speech marks exist only for ``SynthesizeSpeech``. So the voice-agent
integrations estimate word times from what they do know:

- the text of the stream, as it was sent (SSML tags are not spoken);
- how much audio has arrived, which is exact for PCM at a known rate;
- the stream's own ratio of audio seconds to characters: a word that starts at
  character ``c`` starts at about ``c * seconds_per_character``.

The ratio is the prior (a voice's measured rate, see :class:`SpeakingRate`)
until the stream shows it is slower: ``audio / characters sent`` can only
under-estimate the true ratio (the audio so far speaks at most the text sent),
so when it exceeds the prior it replaces it. When the stream ends, the ratio is
exact for the whole text and places the words not placed yet.

A word is handed out once the audio that arrived reaches its estimated end, so
callers learn of words in order, never ahead of the audio that speaks them;
and, when the caller says how much has played, not long before it plays: Polly
sends audio faster than it plays, so a word handed out later is placed with
more of the stream's audio known, or with the exact ratio once it ended.
Characters are counted in UTF-16 code units, as Polly bills them.

Shared by the pipecat and LiveKit integrations; it imports neither (nor
asyncio, nor time): text and durations in, word times out.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DELAY",
    "DEFAULT_LOOKAHEAD",
    "DEFAULT_SECONDS_PER_CHARACTER",
    "SpeakingRate",
    "TimedWord",
    "WordTimer",
]

#: The ratio of a voice's first stream: seconds of speech per character of
#: text with its spaces and punctuation. 0.065 is 15.4 characters a second,
#: about 155 words a minute, a common pace of synthetic English speech
#: (eSpeak NG's default voice: 0.057). Later streams start from the ratio
#: measured on the voice's earlier ones (:class:`SpeakingRate`).
DEFAULT_SECONDS_PER_CHARACTER = 0.065

#: Streams shorter than this say little about a voice's rate (one word and
#: its silence), so :class:`SpeakingRate` ignores them.
_MIN_CHARACTERS_TO_LEARN = 20

#: Each word is timed this long after its estimated start. A voice's pace
#: varies within an answer (slower on some phrases, pauses after sentences),
#: so a word placed at the answer's average pace can fall up to about a
#: quarter of a second before it really starts (measured on eSpeak NG speech
#: of a 10 s answer: at most 0.27 s). The delay keeps the estimate behind the
#: audio: a word reaches the context after it started, not before.
DEFAULT_DELAY = 0.3

#: Words are handed out at most this many seconds before they play (when the
#: caller says how much has played): early enough for a caller whose audio
#: queue runs ahead, late enough that most words of a long answer wait for
#: the stream's end and its exact ratio.
DEFAULT_LOOKAHEAD = 2.0

_TAG = re.compile(r"<[^>]*>")


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A word of the text, as written (no surrounding white space), and its estimated time.

    ``start`` and ``end`` are seconds from the start of the stream's audio;
    ``space`` is the white space before the word in the text (so that the
    spaces and words joined give the text back, as LiveKit's transcript wants).
    ``attached`` marks a character of a script written without spaces
    (Chinese, Japanese), which is a word of its own with the punctuation after
    it: it joins its neighbours with no space.
    """

    word: str
    start: float
    end: float
    space: str = ""
    attached: bool = False


def _units(text: str) -> int:
    """Length in UTF-16 code units, as Polly counts billed characters."""
    return len(text) if text.isascii() else len(text) + sum(1 for c in text if c > "\uffff")


def _written_without_spaces(char: str) -> bool:
    """Han, hiragana and katakana: each character is a word of its own."""
    code = ord(char)
    return (
        0x3040 <= code <= 0x30FF  # hiragana, katakana
        or 0x3400 <= code <= 0x4DBF  # CJK unified ideographs extension A
        or 0x4E00 <= code <= 0x9FFF  # CJK unified ideographs
        or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
        or 0xFF66 <= code <= 0xFF9F  # half-width katakana
        or 0x20000 <= code <= 0x3FFFF  # the supplementary ideographic planes
    )


def spoken_text(text: str, *, ssml: bool) -> str:
    """The text that is spoken: SSML without its tags (marks, breaks) and with entities resolved."""
    if not ssml:
        return text
    return html.unescape(_TAG.sub(" ", text))


class WordTimer:
    """One stream's word times: feed it the text sent and the audio received.

    ``add_text`` with each piece of text as it is sent; ``add_audio`` with the
    seconds of each audio chunk as it arrives, which returns the words whose
    estimated end the audio has now reached; ``finish`` when the audio ended
    normally, which places the remaining words at the stream's exact ratio. A
    stream that ends early (reset, failed, interrupted) just stops: words its
    audio did not reach are never handed out.
    """

    def __init__(
        self,
        seconds_per_character: float = DEFAULT_SECONDS_PER_CHARACTER,
        *,
        delay: float = DEFAULT_DELAY,
        lookahead: float = DEFAULT_LOOKAHEAD,
    ) -> None:
        if not seconds_per_character > 0:
            raise ValueError("seconds_per_character must be positive")
        if delay < 0 or lookahead < 0:
            raise ValueError("delay and lookahead cannot be negative")
        self._prior = seconds_per_character
        self._delay = delay
        self._lookahead = lookahead
        self._characters = 0  # UTF-16 units of spoken text so far
        self._audio = 0.0
        #: Complete words: (word, first unit, unit after it, white space before, attached).
        self._words: list[tuple[str, int, int, str, bool]] = []
        self._next = 0  # index into _words of the first word not handed out
        #: A word that the next text may continue, as in _words (its end unknown).
        self._partial: tuple[str, int, str, bool] = ("", 0, "", False)
        self._space = ""  # white space since the last word
        self._last_start = 0.0
        self._finished = False

    @property
    def characters(self) -> int:
        """Spoken characters sent so far (UTF-16 code units; SSML tags excluded)."""
        return self._characters

    @property
    def audio_seconds(self) -> float:
        return self._audio

    @property
    def seconds_per_character(self) -> float:
        """The ratio now used: exact once finished, else the prior or the audio's lower bound."""
        if self._characters == 0:
            return self._prior
        measured = self._audio / self._characters
        return measured if self._finished else max(self._prior, measured)

    def add_text(self, text: str, *, ssml: bool = False) -> None:
        """Text as it is sent to Polly (a token, a sentence, an SSML document)."""
        if self._finished:
            raise RuntimeError("text after the end of the stream")
        position = self._characters
        partial, start, before, attached = self._partial
        space = self._space
        for char in spoken_text(text, ssml=ssml):
            if char.isspace():
                if partial:
                    self._words.append((partial, start, position, before, attached))
                    partial = ""
                space += char
                position += _units(char)
                continue
            unspaced = _written_without_spaces(char)
            # A character of a script without spaces stands alone, and ends
            # the word before it; punctuation stays with the character before.
            if partial and (unspaced or attached) and not (attached and unicodedata.category(char)[0] == "P"):
                self._words.append((partial, start, position, before, attached))
                partial = ""
            if not partial:
                start, before, space, attached = position, space, "", unspaced
            partial += char
            position += _units(char)
        self._characters = position
        self._partial = (partial, start, before, attached)
        self._space = space

    def add_audio(self, seconds: float, *, played: float | None = None) -> list[TimedWord]:
        """``seconds`` more audio arrived; the words it reaches, in order.

        ``played``: how many seconds of the stream's audio have played (or
        been handed to the player) by now, if the caller knows; words that
        play more than the lookahead after that wait for later audio.
        """
        if seconds < 0:
            raise ValueError("seconds of audio cannot be negative")
        self._audio += seconds
        horizon = None if played is None else played + self._lookahead
        return self._place(self.seconds_per_character, reached=self._audio, horizon=horizon)

    def finish(self) -> list[TimedWord]:
        """The stream ended normally: every remaining word, at the stream's exact ratio."""
        partial, start, before, attached = self._partial
        if partial:
            self._words.append((partial, start, self._characters, before, attached))
            self._partial = ("", 0, "", False)
        self._finished = True
        return self._place(self.seconds_per_character, reached=None, horizon=None)

    def _place(self, ratio: float, *, reached: float | None, horizon: float | None) -> list[TimedWord]:
        placed: list[TimedWord] = []
        words = self._words
        while self._next < len(words):
            word, first, after, space, attached = words[self._next]
            end = after * ratio
            if reached is not None and end > reached:
                break
            # Never earlier than a word already handed out: a ratio that grew
            # (the stream proved slower) must not reorder the words.
            start = max(first * ratio + self._delay, self._last_start)
            if horizon is not None and start > horizon:
                break
            placed.append(TimedWord(word, start, max(end + self._delay, start), space, attached))
            self._last_start = start
            self._next += 1
        return placed


class SpeakingRate:
    """A voice's seconds of audio per character, learned from its completed streams.

    The prior of the next stream's :class:`WordTimer`: a voice's pace (pauses
    included) varies little from one answer to the next, so a turn after the
    first starts from the ratio its voice showed before.
    """

    def __init__(self, prior: float = DEFAULT_SECONDS_PER_CHARACTER) -> None:
        self._prior = prior
        self._audio = 0.0
        self._characters = 0

    @property
    def seconds_per_character(self) -> float:
        return self._audio / self._characters if self._characters else self._prior

    def observe(self, timer: WordTimer) -> None:
        """A stream's timer, after its audio ended normally: all its text was spoken."""
        if timer.characters >= _MIN_CHARACTERS_TO_LEARN and timer.audio_seconds > 0:
            self._audio += timer.audio_seconds
            self._characters += timer.characters

    def timer(self) -> WordTimer:
        """A :class:`WordTimer` for the next stream of this voice."""
        return WordTimer(self.seconds_per_character)
