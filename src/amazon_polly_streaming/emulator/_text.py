"""How the emulator reads arriving text: SSML, billing, and buffering into synthesis segments."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree

from .._wire.request import utf16_length

__all__ = ["SentenceBuffer", "billed_characters", "ssml_text"]

# A natural boundary: sentence or clause punctuation followed by white space,
# or a line break.
_BOUNDARY = re.compile(r"[.!?;:](?=\s)|\n")
_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


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
    """The spoken text of an SSML document; ``ValueError`` when it is not one.

    Polly's SSML guide: a document is well-formed XML whose root element is
    ``<speak>``, and it must be whole within one TextEvent. Document type
    declarations are refused before parsing (no entity expansion).
    """
    if _DECLARATION.search(document):
        raise ValueError("SSML must not contain a document type or entity declaration")
    try:
        root = ElementTree.fromstring(document)  # noqa: S314 - declarations are refused above: nothing expands
    except ElementTree.ParseError as exc:
        raise ValueError(f"Invalid SSML request: {exc}") from None
    if root.tag.rpartition("}")[2] != "speak":
        raise ValueError("Invalid SSML request: the root element must be <speak>")
    return "".join(root.itertext())


def billed_characters(text: str, *, ssml: bool) -> int:
    """Characters Polly bills: all of plain text, the text content of SSML (tags are not billed).

    Counted in UTF-16 code units, as the service counts characters.
    """
    return utf16_length(ssml_text(text) if ssml else text)
