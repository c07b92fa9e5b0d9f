"""HPACK encoding for a client that sends nearly the same request again and again.

Every stream of a pooled client sends nearly the same headers: only
``x-amz-date`` and ``authorization`` change, with the signing second. hpack
would index the new date into the connection's dynamic table each second,
so that the first two requests of every second on every connection were
encoded afresh (a table search per header, and the Huffman code of the
signature in Python: about 160 us a connection-second, a tenth of a stream's
CPU with 256 connections busy). This encoder instead

* sends the headers that change per request as literals no table remembers:
  ``NeverIndexedHeaderTuple`` (credentials, RFC 7541 6.2.3) and
  ``UnindexedHeaderTuple`` (a date, 6.2.2), named by the static table or by a
  literal name and with a plain (not Huffman-coded) value, so their bytes
  depend on nothing but the header, and they come after all the others;
* encodes the others with hpack, into and from the dynamic table, and
  remembers the result while the table is unchanged (no encoding added to
  it, no new size from the server's SETTINGS); and
* returns the whole block it made last when the request is the same.

After its first request a connection's table no longer changes, so a new
second costs the literals only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from hpack import Encoder, HeaderTuple, NeverIndexedHeaderTuple
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

__all__ = ["HeaderBlockEncoder", "UnindexedHeaderTuple"]


class UnindexedHeaderTuple(HeaderTuple):
    """A header whose value changes from request to request: sent as a literal without indexing.

    Unlike ``NeverIndexedHeaderTuple`` it says nothing of sensitivity, only
    that no table should keep it. h2 passes the type on to the encoder.
    """

    __slots__ = ()

    indexable = False


#: The static table's first index of each name (RFC 7541 appendix A).
_STATIC_NAMES: dict[bytes, int] = {}
for _index, (_name, _) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_NAMES.setdefault(_name, _index)


def _string(data: bytes) -> bytes:
    """An HPACK string literal, not Huffman-coded (5.2)."""
    return bytes(encode_integer(len(data), 7)) + data


def literal(header: Any) -> bytes:
    """The representation of ``header`` that involves no table (6.2.2 or 6.2.3): the same on any connection."""
    name, value = header
    flag = 0x10 if isinstance(header, NeverIndexedHeaderTuple) else 0x00
    index = _STATIC_NAMES.get(name)
    if index is None:
        return bytes((flag,)) + _string(name) + _string(value)
    head = encode_integer(index, 4)
    head[0] |= flag
    return bytes(head) + _string(value)


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


class _Memo:
    """The last block made from a table, the key of its headers, and the table's change count it is valid for."""

    __slots__ = ("block", "changes", "key")

    def __init__(self) -> None:
        self.key: tuple[Any, ...] | None = None
        self.block = b""
        self.changes = -1


class HeaderBlockEncoder(Encoder):
    """An hpack ``Encoder`` that keeps per-request headers out of the table and makes a block once while it may."""

    def __init__(self) -> None:
        super().__init__()
        self.header_table: _CountedTable = _CountedTable()
        self._whole = _Memo()  # the last whole block
        self._indexed = _Memo()  # the last block of the headers that go through the table

    def __repr__(self) -> str:
        # The remembered blocks hold the signature: never shown.
        return f"HeaderBlockEncoder(table={len(self.header_table.dynamic_entries)} entries)"

    def encode(self, headers: Iterable[Any], huffman: bool = True) -> bytes:
        return self._remembered(self._whole, tuple(headers), huffman, self._whole_block)

    def _whole_block(self, items: tuple[Any, ...], huffman: bool) -> bytes:
        indexed: list[Any] = []
        literals: list[Any] = []
        for header in items:
            (indexed if getattr(header, "indexable", True) else literals).append(header)
        block = self._remembered(self._indexed, tuple(indexed), huffman, super().encode)
        return block + b"".join(map(literal, literals)) if literals else block

    def _remembered(
        self, memo: _Memo, items: tuple[Any, ...], huffman: bool, make: Callable[[tuple[Any, ...], bool], bytes]
    ) -> bytes:
        """``make(items, huffman)``, or the block it made last for the same items while the table is unchanged.

        The key holds the items' types too: a never-indexed header equals a
        plain one of the same name and value. A block is remembered only if
        making it left the table as it was (no entry added, no new size).
        """
        key = (items, tuple(map(type, items)), huffman)
        table = self.header_table
        if key == memo.key and table.changes == memo.changes and not table.resized:
            return memo.block
        before = table.changes
        block = make(items, huffman)
        if table.changes == before and not table.resized:
            memo.key, memo.block, memo.changes = key, block, before
        else:
            memo.key = None
        return block
