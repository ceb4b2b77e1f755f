"""Incremental detokenization: token ids in, complete UTF-8 text out.

A token's bytes may end in the middle of a character (byte-fallback vocabularies split emoji and
CJK across tokens) or be invalid UTF-8 on their own. Python's incremental UTF-8 decoder holds back
exactly the bytes that can still become a valid character and replaces the rest with U+FFFD at
once, which is the behaviour wanted here.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable

__all__ = ["Detokenizer"]


class Detokenizer:
    """Turn a stream of token ids into text without splitting a multi-byte character.

    :param piece: returns a token's raw bytes.
    """

    __slots__ = ("_decode", "_decoder", "_piece")

    def __init__(self, piece: Callable[[int], bytes]) -> None:
        self._piece = piece
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decode = self._decoder.decode

    def push(self, token: int) -> str:
        """Return the text completed by ``token`` (possibly empty while a character is split)."""
        return self._decode(self._piece(token))

    def flush(self, *, cut: bool = False) -> str:
        """Return the held bytes at the end of the stream; an incomplete character is U+FFFD.

        With ``cut`` (generation stopped by a length limit, not by the model) an incomplete
        last character is dropped instead: the model was interrupted, it did not err.
        """
        if cut:
            self._decoder.reset()
            return ""
        return self._decode(b"", True)
