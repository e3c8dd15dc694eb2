"""A map of integers to integers in flat arrays, for the very wide.

A directory of 500,000 entries costs a Python dict of names or stats a few
hundred bytes an entry: hundreds of MiB for something an attacker makes in
a minute. Where a walk must remember something of every entry of one
directory (which names a manifest lists, where each line is, which inodes
it saw), it keeps 64-bit keys (hashes of what it would have kept) and
64-bit values in two arrays with open addressing: 32 bytes an entry at
most. A key is the `hash()` of what it stands for; two things can share one
(one chance in 2**64 a pair), so callers treat a hit as "probably", and
check where it matters.
"""

from __future__ import annotations

from array import array

# Marks a free slot; a key equal to it is stored as EMPTY + 1.
EMPTY = -(2**63)


class IntTable:
    """A map of int keys to int values in two arrays (see module docstring)."""

    def __init__(self, expected: int = 8) -> None:
        size = 16
        while size < expected * 2:
            size *= 2
        self._keys = array("q", [EMPTY]) * size
        self._values = array("q", [0]) * size
        self._used = 0

    def __len__(self) -> int:
        return self._used

    def _slot(self, key: int) -> int:
        """The slot holding `key`, or the free slot where it would go."""
        keys = self._keys
        mask = len(keys) - 1
        slot = key & mask
        while True:
            found = keys[slot]
            if found in (key, EMPTY):
                return slot
            slot = (slot + 1) & mask

    @staticmethod
    def _key(key: int) -> int:
        key = ((key + 2**63) % 2**64) - 2**63  # any int into 64 bits
        return EMPTY + 1 if key == EMPTY else key

    def get(self, key: int) -> int | None:
        slot = self._slot(self._key(key))
        return None if self._keys[slot] == EMPTY else self._values[slot]

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def set(self, key: int, value: int) -> None:
        key = self._key(key)
        slot = self._slot(key)
        if self._keys[slot] == EMPTY:
            self._keys[slot] = key
            self._used += 1
            if self._used * 2 > len(self._keys):
                self._values[slot] = value
                self._grow()
                return
        self._values[slot] = value

    def add(self, key: int, amount: int = 1) -> int:
        """Add `amount` to the value of `key` (0 when absent); return it."""
        value = (self.get(key) or 0) + amount
        self.set(key, value)
        return value

    def reserve(self, entries: int) -> None:
        """Make room for `entries` entries in all at once (growing step by
        step holds the old arrays beside the new ones each time)."""
        size = len(self._keys)
        while size < entries * 2:
            size *= 2
        if size > len(self._keys):
            self._grow(size)

    def _grow(self, size: int = 0) -> None:
        keys, values = self._keys, self._values
        size = size or len(keys) * 2
        self._keys = array("q", [EMPTY]) * size
        self._values = array("q", [0]) * size
        for key, value in zip(keys, values, strict=True):
            if key != EMPTY:
                slot = self._slot(key)
                self._keys[slot] = key
                self._values[slot] = value
