"""The latest values of a computation by key, per process and thread-safe: the one LRU that
the sentence encoder, the knowledge base's passage vectors and the tool-output screen use."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Remembered(Generic[K, V]):
    """At most ``size`` values; the least lately used is forgotten first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def known(self, keys: Iterable[K]) -> dict[K, V]:
        """The remembered values of ``keys`` (those it has), each now the latest used."""
        with self._lock:
            found = {k: self._values[k] for k in keys if k in self._values}
            for k in found:
                self._values.move_to_end(k)
        return found

    def keep(self, items: Iterable[tuple[K, V]]) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._values.update(items)
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def __len__(self) -> int:
        return len(self._values)
