"""HPACK encoding that remembers its last header block, for a client that sends the same request again and again.

Every stream of a pooled client sends nearly the same headers: they change
only with the signing second (``x-amz-date`` and ``authorization``). Once
those are in the connection's dynamic table, the next request encodes to
indexes into it and one never-indexed literal (the credentials), and leaves
the table as it was; so the request after that, with the same headers,
encodes to the very same bytes. hpack computes them afresh each time: a
table search per header and the Huffman code of the signature, about a
seventh of a short stream's CPU. This encoder returns the remembered block
instead, when that is provably what hpack would make: the same headers (their
never-indexed marks included), the same Huffman choice, and a table that no
encoding has changed since, nor a new size from the server's SETTINGS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from hpack import Encoder
from hpack.table import HeaderTable

__all__ = ["HeaderBlockEncoder"]


class _CountedTable(HeaderTable):
    """hpack's dynamic table, counting the changes to its entries."""

    def __init__(self) -> None:
        super().__init__()
        self.changes = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.changes += 1
        super().add(name, value)

    @HeaderTable.maxsize.setter  # type: ignore[attr-defined, untyped-decorator]
    def maxsize(self, newmax: int) -> None:
        self.changes += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


class HeaderBlockEncoder(Encoder):
    """An hpack ``Encoder`` that makes a header block once while nothing it depends on changes."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: _CountedTable = _CountedTable()
        self._key: tuple[Any, ...] | None = None
        self._block = b""
        self._changes = -1

    def __repr__(self) -> str:
        # The remembered block holds the signature: never shown.
        return f"HeaderBlockEncoder(table={len(self.header_table.dynamic_entries)} entries)"

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        items = tuple(headers)
        # A never-indexed header equals a plain one of the same name and value: its type is part of the key.
        key = (items, tuple(map(type, items)), huffman)
        table = self.header_table
        if key == self._key and table.changes == self._changes and not table.resized:
            return self._block
        before = table.changes
        block: bytes = super().encode(items, huffman)
        if table.changes == before and not table.resized:
            # Made from this table without changing it: the same headers make the same block until it changes.
            self._key, self._block, self._changes = key, block, before
        else:
            self._key = None
        return block
