"""Special tokens from a chat template's markup only, never from client text.

llama.cpp tokenizes in two steps (``llama-vocab.cpp``, ``tokenizer_st_partition``): it cuts the
text at every occurrence of a special token's text, longest texts first (control and unknown
tokens only with ``parse_special``; user-defined tokens always), then tokenizes each fragment
between them on its own. A rendered chat prompt mixes the template's markup with client strings,
so tokenizing it whole with ``parse_special`` would turn ``<|im_start|>`` typed in a message into
the control token. OpenAI's API never lets message text form special tokens; neither does this.

:class:`SpecialTokens` keeps client text apart without wrapping it in markers, which templates
would trim, slice, compare and split:

- :meth:`SpecialTokens.shield` rewrites a client string before rendering. Every character of
  every control-token text in it becomes a *shadow*, a lone UTF-16 surrogate (which no valid
  text, token or template contains); so does its first (last) character when the string begins
  (ends) with something that could complete a control-token text with the template text beside
  it (``im_start`` between a template's ``<|`` and ``|>``). Each shadow is one character, so the
  string keeps its length and a template's ``trim``, ``split``, slicing and comparisons see what
  they saw before, except on those characters. No control-token text can run through a shadow.
- :meth:`SpecialTokens.tokenize` cuts the rendered prompt exactly as llama.cpp would; every
  special token it finds there is the template's. It restores the shadowed characters of each
  fragment and tokenizes it without ``parse_special``, so client text becomes the tokens of its
  characters, in context with the template text around it.

Deviations, deliberate: user-defined tokens (``<think>``, ``<tool_call>`` in many vocabularies)
are found in client text too, as llama.cpp and Hugging Face tokenizers find them without
``parse_special``; a client string with a lone surrogate is refused (it is not text, and would
pass for a shadow); a template that builds control-token text out of client text by itself
(upper-casing it, say) is not guarded against.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from .llama import LlamaModel, ModelLoadError, SpecialToken

__all__ = ["ClientTextError", "SpecialTokens", "require_unicode"]

# Lone surrogates: Python strings may hold them, valid UTF-8 cannot, so neither can a token's
# text, a template read from a file or GGUF, or a client string that passed shield().
_SHADOW_BASE: Final = 0xD800
_SHADOW_COUNT: Final = 0x800
# What llama.cpp's lstrip/rstrip attributes drop: C isspace() in the "C" locale.
_C_SPACE: Final = " \t\n\v\f\r"


class ClientTextError(ValueError):
    """A client string holds a lone UTF-16 surrogate (``"\\ud83d"`` in JSON): not text."""


def require_unicode(text: str) -> None:
    """:raises ClientTextError: ``text`` holds a lone surrogate."""
    if not text.isascii():  # quick, and then there is none
        try:
            text.encode()
        except UnicodeEncodeError as exc:
            raise ClientTextError(
                f"lone UTF-16 surrogate \\u{ord(text[exc.start]):04x} (a string must be"
                " valid Unicode)"
            ) from None


class SpecialTokens:
    """The special tokens of ``model``'s vocabulary, and how client text stays clear of them.

    :raises ModelLoadError: the control tokens' texts use more than 2048 distinct characters.
    """

    def __init__(self, model: LlamaModel) -> None:
        self._model = model
        specials = model.special_tokens()
        # llama.cpp's order: longest text in bytes first.
        self._ordered = sorted(specials, key=lambda t: -len(t.text.encode()))
        control = sorted({t.text for t in specials if t.control})
        alphabet = sorted({c for text in control for c in text})
        if len(alphabet) > _SHADOW_COUNT:
            raise ModelLoadError(
                f"the control tokens' texts use {len(alphabet)} distinct characters; "
                f"at most {_SHADOW_COUNT} can be kept out of client text"
            )
        shadows = [chr(_SHADOW_BASE + i) for i in range(len(alphabet))]
        self._shadow = str.maketrans(dict(zip(alphabet, shadows, strict=True)))
        self._unshadow = str.maketrans(dict(zip(shadows, alphabet, strict=True)))
        self._pattern = re.compile(_trie_pattern(control)) if control else None
        # A quick look for a character some control token's text starts with, before the scan.
        self._first = frozenset(text[0] for text in control)
        # Edges of a client string that template text beside it could complete into a control
        # token: a proper suffix of one at its start, a proper prefix at its end, or the whole
        # string inside one (the joins cannot match: their NUL would be in the client string,
        # and then shadowing a character too many is harmless).
        self._suffixes = frozenset(text[k:] for text in control for k in range(1, len(text)))
        self._prefixes = frozenset(text[:k] for text in control for k in range(1, len(text)))
        self._tails = "\0".join(text[1:] for text in control)
        self._heads = "\0".join(text[:-1] for text in control)
        self._longest = max(map(len, control), default=0)

    def shield(self, text: str) -> tuple[str, bool]:
        """``text`` with control-token texts and dangerous edges shadowed; whether it changed.

        :raises ClientTextError: ``text`` holds a lone surrogate.
        """
        require_unicode(text)
        shielded, n = text, 0
        if self._pattern is not None and any(c in text for c in self._first):
            shielded, n = self._pattern.subn(self._shadow_match, text)
        if shielded and self._completes_at_start(shielded):
            shielded = shielded[0].translate(self._shadow) + shielded[1:]
            n += 1
        if shielded and self._completes_at_end(shielded):
            shielded = shielded[:-1] + shielded[-1].translate(self._shadow)
            n += 1
        return shielded, n > 0

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Tokenize a prompt rendered from shielded client strings: special tokens where its
        own text spells them, shadowed characters restored and tokenized as plain text.

        ``add_special`` adds BOS / EOS as the vocabulary asks, as ``llama_tokenize`` does.
        """
        model = self._model
        tokens = [model.bos] if add_special and model.add_bos else []
        for piece in self._partition(text):
            if isinstance(piece, int):
                tokens.append(piece)
            else:
                plain = piece.translate(self._unshadow)
                tokens += model.tokenize(plain, add_special=False, parse_special=False)
        if add_special and model.add_eos:
            tokens.append(model.eos)
        return tokens

    def _shadow_match(self, match: re.Match[str]) -> str:
        return match.group().translate(self._shadow)

    def _completes_at_start(self, text: str) -> bool:
        if len(text) < self._longest and text in self._tails:
            return True
        longest = min(len(text), self._longest - 1)
        return any(text[:n] in self._suffixes for n in range(1, longest + 1))

    def _completes_at_end(self, text: str) -> bool:
        if len(text) < self._longest and text in self._heads:
            return True
        longest = min(len(text), self._longest - 1)
        return any(text[-n:] in self._prefixes for n in range(1, longest + 1))

    def _partition(self, text: str) -> list[str | int]:
        # tokenizer_st_partition: for each special token, longest first, cut every remaining
        # text fragment at each of its occurrences, left to right.
        pieces: list[str | int] = [text] if text else []
        for special in self._ordered:
            if special.text in text:
                pieces = _cut(pieces, special)
        return pieces


def _cut(pieces: Sequence[str | int], special: SpecialToken) -> list[str | int]:
    out: list[str | int] = []
    needle = special.text
    for piece in pieces:
        if isinstance(piece, int):
            out.append(piece)
            continue
        start = 0
        while (at := piece.find(needle, start)) >= 0:
            left = piece[start:at]
            if special.lstrip:
                left = left.rstrip(_C_SPACE)
            if left:
                out.append(left)
            out.append(special.id)
            start = at + len(needle)
            if special.rstrip:
                while start < len(piece) and piece[start] in _C_SPACE:
                    start += 1
        if start < len(piece):
            out.append(piece[start:])
    return out


_Trie = dict[str, "_Trie"]


def _trie_pattern(texts: Sequence[str]) -> str:
    """A regular expression for any of ``texts``, longest first, that follows one branch per
    character instead of trying every text at every position."""
    trie: _Trie = {}
    for text in texts:
        node = trie
        for char in text:
            node = node.setdefault(char, {})
        node[""] = {}  # a text ends here

    def pattern(node: _Trie) -> str:
        branches = [re.escape(c) + pattern(child) for c, child in sorted(node.items()) if c]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"
        # Greedy: a text ending here matches only when no longer one goes on from here.
        return f"(?:{body})?" if "" in node else body

    return pattern(trie)
