"""An LRU bounded in bytes: ``cachetools.LRUCache(maxsize, getsizeof=len)`` in a few lines.

Sans-IO and thread-safe: a cache may be shared by clients on several event
loops (the sync helper runs a loop per call), and each step here is a few
dictionary operations under a lock that is never held across an await.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from ._cache_entry import Entry

__all__ = ["ENTRY_OVERHEAD", "ByteLRU"]

#: What one entry costs beyond its audio (the key's str, the Entry, the
#: ordered dict's node, the format string), measured with tracemalloc on
#: CPython 3.11-3.13 and rounded up: counted, so that ``max_bytes`` bounds the
#: memory really held, even for many tiny phrases.
ENTRY_OVERHEAD = 400


class ByteLRU:
    """Entries by key, least recently used first out, their audio summing to at most ``max_bytes``."""

    __slots__ = ("_entries", "_lock", "bytes", "evictions", "max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def size_of(entry: Entry) -> int:
        return len(entry.audio) + ENTRY_OVERHEAD

    def get(self, key: str) -> Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: Entry) -> bool:
        """Keep ``entry`` (the most recently used now), evicting the least recently used to fit.

        Returns False, keeping nothing, for an entry larger than the whole bound.
        """
        size = self.size_of(entry)
        if size > self.max_bytes:
            return False
        with self._lock:
            entries = self._entries
            old = entries.pop(key, None)
            if old is not None:
                self.bytes -= self.size_of(old)
            while entries and self.bytes + size > self.max_bytes:
                _, evicted = entries.popitem(last=False)
                self.bytes -= self.size_of(evicted)
                self.evictions += 1
            entries[key] = entry
            self.bytes += size
        return True

    def discard(self, key: str) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= self.size_of(old)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.bytes = 0
