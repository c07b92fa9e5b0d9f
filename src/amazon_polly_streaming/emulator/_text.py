"""How the emulator turns arriving text into synthesis segments, and what it bills."""

from __future__ import annotations

import re

__all__ = ["SentenceBuffer", "billed_characters", "ssml_text"]

# A natural boundary: sentence or clause punctuation followed by white space,
# or a line break.
_BOUNDARY = re.compile(r"[.!?;:](?=\s)|\n")
_TAG = re.compile(r"<[^>]*>")


class SentenceBuffer:
    """Buffers plain text until a natural boundary (or a flush) completes a segment."""

    def __init__(self) -> None:
        self._text = ""

    def add(self, text: str) -> str:
        """Append ``text``; return the completed part (maybe ""), keep the rest."""
        self._text += text
        boundaries = [match.end() for match in _BOUNDARY.finditer(self._text)]
        if not boundaries:
            return ""
        cut = boundaries[-1]
        ready, self._text = self._text[:cut], self._text[cut:]
        return ready

    def flush(self) -> str:
        """Everything buffered, now."""
        ready, self._text = self._text, ""
        return ready

    def __bool__(self) -> bool:
        return bool(self._text.strip())


def ssml_text(document: str) -> str:
    """The spoken text of an SSML document (tags removed)."""
    return _TAG.sub("", document)


def billed_characters(text: str, *, ssml: bool) -> int:
    """Characters Polly bills: all of plain text, the text content of SSML."""
    return len(ssml_text(text) if ssml else text)
