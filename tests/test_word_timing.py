"""Word times estimated from a stream's text and audio durations (integrations/_word_timing.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from amazon_polly_streaming.emulator._audio import synthesize_pcm, word_starts
from amazon_polly_streaming.emulator._text import SentenceBuffer
from amazon_polly_streaming.integrations._word_timing import (
    DEFAULT_SECONDS_PER_CHARACTER,
    SpeakingRate,
    TimedWord,
    WordTimer,
    spoken_text,
)

RATE = 0.1  # seconds per character in the hand-made cases: easy arithmetic


def words_of(placed: list[TimedWord]) -> list[str]:
    return [w.word for w in placed]


def test_words_of_different_lengths_start_at_their_characters() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.add_text("I am extraordinarily tired.")
    # 2.7 s of audio for 27 characters: each word where its characters are.
    placed = timer.add_audio(2.7)
    # "tired." may go on in the next text: it waits for white space or the end.
    assert words_of(placed) == ["I", "am", "extraordinarily"]
    rest = timer.finish()
    everything = placed + rest
    assert words_of(everything) == ["I", "am", "extraordinarily", "tired."]
    starts = [round(w.start, 6) for w in everything]
    assert starts == [0.0, 0.2, 0.5, 2.1]
    assert [round(w.end, 6) for w in everything] == [0.1, 0.4, 2.0, 2.7]


def test_a_word_is_handed_out_once_the_audio_reaches_its_end() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.add_text("one two three ")
    assert timer.add_audio(0.2) == []  # "one" ends at 0.3 s
    assert words_of(timer.add_audio(0.1)) == ["one"]
    assert words_of(timer.add_audio(0.4)) == ["two"]
    assert words_of(timer.add_audio(0.6)) == ["three"]
    assert timer.finish() == []


def test_tokens_that_split_a_word_make_one_word() -> None:
    timer = WordTimer(RATE, delay=0)
    for token in ["Stream", "ing", " is", " fun", "."]:
        timer.add_text(token)
    assert words_of(timer.add_audio(5.0)) == ["Streaming", "is"]  # "fun." may go on
    assert words_of(timer.finish()) == ["fun."]


def test_spaces_and_words_joined_give_the_text_back() -> None:
    text = "Hello  there,\nfriend. How are\tyou?"
    timer = WordTimer(RATE, delay=0)
    for piece in ["Hel", "lo ", " there,\n", "friend. How", " are\tyou?"]:
        timer.add_text(piece)
    placed = timer.finish()
    assert "".join(w.space + w.word for w in placed) == text
    assert placed[0].space == ""


def test_punctuation_stays_with_its_word_and_counts_as_characters() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.add_text('"Well," she said -- "no!" ')
    placed = timer.add_audio(2.6)
    assert words_of(placed) == ['"Well,"', "she", "said", "--", '"no!"']
    assert [round(w.start, 6) for w in placed] == [0.0, 0.8, 1.2, 1.7, 2.0]


def test_ssml_marks_and_tags_are_not_spoken() -> None:
    assert spoken_text('<speak>Hi <mark name="a"/>there &amp; you</speak>', ssml=True).split() == [
        "Hi",
        "there",
        "&",
        "you",
    ]
    timer = WordTimer(RATE, delay=0)
    timer.add_text('<speak>Hello <break time="1s"/>world</speak>', ssml=True)
    placed = timer.add_audio(10.0) + timer.finish()
    assert words_of(placed) == ["Hello", "world"]
    assert "<" not in "".join(words_of(placed))
    # Plain text keeps what looks like a tag: it is spoken as written.
    plain = WordTimer(RATE, delay=0)
    plain.add_text("a <b> c")
    assert words_of(plain.finish()) == ["a", "<b>", "c"]


def test_non_ascii_text_counts_utf16_units_as_polly_bills() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.add_text("Grüße 😀 naïve café")
    assert timer.characters == 19  # the emoji is two UTF-16 code units
    placed = timer.finish()
    assert words_of(placed) == ["Grüße", "😀", "naïve", "café"]
    # No audio arrived: the exact ratio is zero, and every word starts at 0.
    assert {w.start for w in placed} == {0.0}


def test_chinese_and_japanese_characters_are_words_of_their_own() -> None:
    timer = WordTimer(RATE, delay=0)
    text = "今日は晴れ。Polly で話す、ね！ OK"
    for piece in ["今日", "は晴れ。Pol", "ly で話", "す、ね！ OK"]:
        timer.add_text(piece)
    placed = timer.add_audio(timer.characters * RATE) + timer.finish()
    assert [(w.word, w.attached) for w in placed] == [
        ("今", True),
        ("日", True),
        ("は", True),
        ("晴", True),
        ("れ。", True),  # punctuation stays with the character before it
        ("Polly", False),
        ("で", True),
        ("話", True),
        ("す、", True),
        ("ね！", True),
        ("OK", False),
    ]
    assert "".join(w.space + w.word for w in placed) == text
    assert [round(w.start, 6) for w in placed[:3]] == [0.0, 0.1, 0.2]  # one character each


def test_the_exact_ratio_places_the_rest_when_the_stream_ends() -> None:
    timer = WordTimer(0.2, delay=0)  # a prior twice too slow
    timer.add_text("aaaa bbbb cccc dddd")  # 19 characters
    assert words_of(timer.add_audio(0.9)) == ["aaaa"]  # ends at 0.8 s by the prior
    assert words_of(timer.add_audio(1.0)) == ["bbbb"]  # 1.9 s in all; the prior still rules
    rest = timer.finish()
    assert words_of(rest) == ["cccc", "dddd"]
    assert timer.seconds_per_character == pytest.approx(0.1)
    # Exact now, but never before a word already handed out ("bbbb" at 1.0 s).
    assert [round(w.start, 6) for w in rest] == [1.0, 1.5]


def test_a_slower_stream_raises_the_ratio_and_never_reorders() -> None:
    timer = WordTimer(0.05, delay=0)
    timer.add_text("ab cd ef gh ")  # 12 characters
    placed = timer.add_audio(0.15)  # prior: "ab" ends at 0.1 s
    assert words_of(placed) == ["ab"]
    placed += timer.add_audio(2.25)  # 2.4 s / 12 characters: 0.2 s a character at least
    placed += timer.finish()
    assert words_of(placed) == ["ab", "cd", "ef", "gh"]
    starts = [w.start for w in placed]
    assert starts == sorted(starts)
    assert starts[1] == pytest.approx(0.6)  # "cd" at character 3, at the new ratio


def test_words_far_ahead_of_what_played_wait_for_more_of_the_stream() -> None:
    timer = WordTimer(0.2, delay=0, lookahead=1.0)  # a prior twice too slow
    timer.add_text("aaaa bbbb cccc dddd eeee ")  # 25 characters
    # All the audio is here at once, little has played: only what plays within a second.
    assert words_of(timer.add_audio(2.5, played=0.1)) == ["aaaa", "bbbb"]  # at 0 and 1.0 s by the prior
    rest = timer.finish()  # the exact ratio for the rest: 0.1 s a character
    assert words_of(rest) == ["cccc", "dddd", "eeee"]
    assert [round(w.start, 6) for w in rest] == [1.0, 1.5, 2.0]


def test_a_stream_that_ends_early_hands_out_no_word_its_audio_did_not_reach() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.add_text("first second third fourth")
    placed = timer.add_audio(1.0)  # reset mid-stream: no finish()
    assert words_of(placed) == ["first"]
    assert timer.add_audio(0.0) == []


def test_text_after_the_end_is_refused_and_bad_input_too() -> None:
    timer = WordTimer(RATE, delay=0)
    timer.finish()
    with pytest.raises(RuntimeError):
        timer.add_text("late")
    with pytest.raises(ValueError, match="positive"):
        WordTimer(0)
    with pytest.raises(ValueError, match="negative"):
        WordTimer(RATE, lookahead=-1)
    with pytest.raises(ValueError, match="negative"):
        WordTimer(RATE, delay=0).add_audio(-1.0)


def finished(text: str, seconds: float) -> WordTimer:
    timer = WordTimer()
    timer.add_text(text)
    timer.add_audio(seconds)
    timer.finish()
    return timer


def test_speaking_rate_learns_from_finished_streams_only_long_enough_ones() -> None:
    rate = SpeakingRate()
    assert rate.seconds_per_character == DEFAULT_SECONDS_PER_CHARACTER
    rate.observe(finished("Yes.", 0.5))  # too short to say much
    assert rate.seconds_per_character == DEFAULT_SECONDS_PER_CHARACTER
    rate.observe(finished("a" * 50, 3.0))
    rate.observe(finished("b" * 50, 1.0))
    assert rate.seconds_per_character == pytest.approx(0.04)
    assert rate.timer().seconds_per_character == pytest.approx(0.04)


ANSWER = (
    "Sure. The number four bus leaves from the main square every ten minutes, "
    "and it stops right outside the museum. The last one leaves at eleven at night. "
    "Would you like the times of the return trip as well?"
)


def speak_as_the_emulator(tokens: list[str]) -> tuple[list[float], list[tuple[int, float]]]:
    """The emulator's speech of ``tokens`` (sent one TextEvent each): audio chunk
    durations, and eSpeak's own start of each word as (character, second)."""
    buffer = SentenceBuffer()
    segments: list[str] = []
    for token in tokens:
        if ready := buffer.add(token):
            segments.append(ready)
    segments.append(buffer.flush())
    chunks: list[float] = []
    truth: list[tuple[int, float]] = []
    offset_chars = 0
    offset_seconds = 0.0
    for segment in segments:
        pcm = synthesize_pcm(segment, voice_id="Joanna", language_code=None, sample_rate=16000)
        for position, seconds in word_starts(segment, voice_id="Joanna", language_code=None):
            truth.append((offset_chars + position, offset_seconds + seconds))
        for start in range(0, len(pcm), 8192):
            chunks.append(len(pcm[start : start + 8192]) / 32000)
        offset_chars += len(segment)
        offset_seconds += len(pcm) / 32000
    return chunks, truth


def positions(words: list[TimedWord], text: str) -> list[int]:
    """Where each word starts in ``text``."""
    found, at = [], 0
    for word in words:
        at = text.index(word.word, at)
        found.append(at)
        at += len(word.word)
    return found


def lag_in_characters(placed: list[TimedWord], truth: dict[int, float], text: str, moment: float) -> int:
    """Characters between what had started playing at ``moment`` and what the estimate holds.

    Positive: the estimate holds less than was heard; negative: it holds a word
    that had not started. eSpeak reports no start for a few short words; those
    count as heard with the word before them.
    """
    heard = held = 0
    started = True
    for word, position in zip(placed, positions(placed, text), strict=True):
        end = position + len(word.word)
        started = truth[position] <= moment if position in truth else started
        if started:
            heard = end
        if word.start <= moment:
            held = end
    return heard - held


def timer_of(tokens: list[str], chunks: list[float]) -> WordTimer:
    timer = WordTimer()
    for token in tokens:
        timer.add_text(token)
    timer.add_audio(sum(chunks))
    timer.finish()
    return timer


def estimate(tokens: list[str], chunks: list[float], rate: SpeakingRate, speed: float | None) -> list[TimedWord]:
    """The words as a stream would time them, its audio arriving ``speed`` times
    faster than it plays (None: all of it before anything played)."""
    timer = rate.timer()
    for token in tokens:
        timer.add_text(token)
    placed: list[TimedWord] = []
    arrived = 0.0
    for seconds in chunks:
        played = None if speed is None else arrived / speed  # playing since the first chunk came
        placed += timer.add_audio(seconds, played=played)
        arrived += seconds
    return placed + timer.finish()


@pytest.mark.parametrize("speed", [None, 2.0], ids=["audio all at once", "audio at twice real time"])
@pytest.mark.parametrize("learned", [False, True], ids=["first answer", "voice pace learned"])
def test_on_espeak_speech_the_estimate_is_late_never_early_by_under_40_characters(
    learned: bool, speed: float | None
) -> None:
    tokens = [piece if i == 0 else " " + piece for i, piece in enumerate(ANSWER.split(" "))]
    chunks, truth = speak_as_the_emulator(tokens)
    rate = SpeakingRate()
    if learned:  # an earlier answer of the same voice
        rate.observe(timer_of(tokens, chunks))
    placed = estimate(tokens, chunks, rate, speed)
    assert " ".join(words_of(placed)) == ANSWER
    starts = dict(truth)
    # Every 50 ms of the speech, a barge-in then would leave this far behind.
    lags = [lag_in_characters(placed, starts, ANSWER, n * 0.05) for n in range(int(sum(chunks) / 0.05) + 1)]
    print(f"lag in characters: min {min(lags)}, max {max(lags)}, mean {sum(lags) / len(lags):.1f}")
    assert min(lags) >= 0, "a word in the estimate had not started"
    # A voice's first answer is placed at the default pace until enough of
    # its audio is known (eSpeak speaks 12% faster than it): it falls behind as
    # the answer goes on. After one answer, the voice's own pace places every word.
    assert max(lags) <= (50 if not learned else 20)


def test_the_estimate_imports_no_framework_and_no_io() -> None:
    code = (
        "import sys, amazon_polly_streaming.integrations._word_timing; "
        "banned = ('pipecat', 'livekit', 'loguru', 'asyncio', 'socket'); "
        "loaded = [m for m in sys.modules if m.split('.')[0] in banned]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
