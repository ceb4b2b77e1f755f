"""A typed, narrow skin over llama-cpp-python's low-level (ctypes) API.

Only this module and the engine touch llama.cpp. Importing ``llama_cpp`` loads the native
library, so callers import this module on the loading thread, not at service start-up.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import numpy.typing as npt

from .errors import LoadError

__all__ = [
    "Batch",
    "EmbeddingContext",
    "LlamaContext",
    "LlamaModel",
    "ModelLoadError",
    "SpecialToken",
    "gpu_offload_supported",
]

_log = logging.getLogger("sluice.llama")

# ggml's log levels (ggml.h) -> logging levels; CONT continues the previous message.
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5


class _LogState:
    level = logging.INFO


@llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
def _log_callback(level: int, text: bytes, _user_data: ctypes.c_void_p) -> None:
    # llama.cpp is chatty while loading; route it through logging so the service's log
    # level decides, instead of llama-cpp-python's default of printing everything.
    if level != _CONT:
        _LogState.level = _LEVELS.get(level, logging.DEBUG)
    message = text.decode("utf-8", "replace").rstrip()
    if message:
        _log.log(_LogState.level, "%s", message)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()


class ModelLoadError(LoadError):
    """llama.cpp could not load the model or create a context; the message says which."""


@dataclass(frozen=True, slots=True)
class SpecialToken:
    """A token llama.cpp finds by its text before tokenizing the rest (``llama-vocab.cpp``,
    ``tokenizer_st_partition``).

    ``control``: a control or unknown token, found only when tokenizing with
    ``parse_special``; otherwise a user-defined token, found always. ``lstrip`` / ``rstrip``:
    whitespace before / after it is dropped.
    """

    id: int
    text: str
    control: bool
    lstrip: bool
    rstrip: bool


# A token's attributes (llama.h, enum llama_token_attr).
_FOUND_BY_TEXT = (
    llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
    | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN
)
_ONLY_WITH_PARSE_SPECIAL = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN


# Pooling types (llama.h, enum llama_pooling_type).
_POOL_UNSPECIFIED = llama_cpp.LLAMA_POOLING_TYPE_UNSPECIFIED
_POOL_NONE = llama_cpp.LLAMA_POOLING_TYPE_NONE
_POOL_MEAN = llama_cpp.LLAMA_POOLING_TYPE_MEAN
_POOL_RANK = llama_cpp.LLAMA_POOLING_TYPE_RANK


def gpu_offload_supported() -> bool:
    return bool(llama_cpp.llama_supports_gpu_offload())


class LlamaModel:
    """Loaded weights and vocabulary; safe to read from several threads."""

    def __init__(self, path: Path, *, n_gpu_layers: int = -1, vocab_only: bool = False) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = vocab_only
        # -1 means "all layers"; llama.cpp takes any number larger than the layer count.
        params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
        ptr = llama_cpp.llama_model_load_from_file(os.fsencode(path), params)
        if not ptr:
            raise ModelLoadError(f"llama.cpp could not load {path} (see the log above)")
        self.path = path
        self._ptr: Any = ptr
        self.vocab: Any = llama_cpp.llama_model_get_vocab(ptr)
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self.vocab))
        self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(ptr))
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self.add_eos = bool(llama_cpp.llama_vocab_get_add_eos(self.vocab))
        self.bos = int(llama_cpp.llama_vocab_bos(self.vocab))
        self.eos = int(llama_cpp.llama_vocab_eos(self.vocab))
        self._piece_buf = ctypes.create_string_buffer(256)
        #: Pieces already asked for (special=False): the hot path is then a dict lookup,
        #: not a ctypes call and a copy. Bounded by the vocabulary.
        self._pieces: dict[int, bytes] = {}

    @property
    def ptr(self) -> Any:
        return self._ptr

    def close(self) -> None:
        if self._ptr:
            llama_cpp.llama_model_free(self._ptr)
            self._ptr = None

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = llama_cpp.llama_model_meta_val_str(self._ptr, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            llama_cpp.llama_model_meta_val_str(self._ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    @property
    def chat_template(self) -> str | None:
        raw = llama_cpp.llama_model_chat_template(self._ptr, None)
        return raw.decode("utf-8", "replace") if raw else None

    def token_text(self, token: int) -> str:
        """The token as written in the vocabulary (special tokens included)."""
        if token < 0:
            return ""
        return self.piece(token, special=True).decode("utf-8", "replace")

    def special_tokens(self) -> list[SpecialToken]:
        """The vocabulary's control, user-defined and unknown tokens, in id order.

        Texts that are not UTF-8 are left out: no ``str`` can contain them.
        """
        found: list[SpecialToken] = []
        for token in range(self.n_vocab):
            attr = int(llama_cpp.llama_vocab_get_attr(self.vocab, token))
            if not attr & _FOUND_BY_TEXT:
                continue
            try:
                text = (llama_cpp.llama_vocab_get_text(self.vocab, token) or b"").decode("utf-8")
            except UnicodeDecodeError:
                continue
            if text:
                found.append(
                    SpecialToken(
                        token,
                        text,
                        control=bool(attr & _ONLY_WITH_PARSE_SPECIAL),
                        lstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP),
                        rstrip=bool(attr & llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP),
                    )
                )
        return found

    def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[int]:
        data = text.encode("utf-8")
        capacity = len(data) + 8
        tokens = (llama_cpp.llama_token * capacity)()
        n = llama_cpp.llama_tokenize(
            self.vocab, data, len(data), tokens, capacity, add_special, parse_special
        )
        if n < 0:  # capacity too small: -n is the size needed
            capacity = -n
            tokens = (llama_cpp.llama_token * capacity)()
            n = llama_cpp.llama_tokenize(
                self.vocab, data, len(data), tokens, capacity, add_special, parse_special
            )
        return list(tokens[:n])

    def piece(self, token: int, *, special: bool = False) -> bytes:
        """Raw bytes of one token; may be part of a multi-byte UTF-8 character.

        Not thread-safe (shared buffer): the engine thread is the only caller on the hot path.
        """
        if not special:
            found = self._pieces.get(token)
            if found is None:
                found = self._pieces[token] = self._read_piece(token, special=False)
            return found
        return self._read_piece(token, special=True)

    def _read_piece(self, token: int, *, special: bool) -> bytes:
        buf = self._piece_buf
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        if n < 0:
            bigger = ctypes.create_string_buffer(-n)
            n = llama_cpp.llama_token_to_piece(self.vocab, token, bigger, -n, 0, special)
            return bigger.raw[:n]
        return buf.raw[:n]

    def longest_piece(self) -> int:
        """Bytes in the longest text any token stands for (special ones included): no token
        covers more of a prompt, so a text of n characters is at least n / this many tokens."""
        buf = ctypes.create_string_buffer(256)
        longest = 1
        for token in range(self.n_vocab):
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            longest = max(longest, -n if n < 0 else n)
        return longest

    def pieces(self, tokens: Sequence[int], *, special: bool) -> list[bytes]:
        """Raw bytes of each token (``special``: control tokens as their text, else empty).

        Thread-safe (a buffer per call), for request threads; ids must be in the vocabulary.
        """
        buf = ctypes.create_string_buffer(256)
        found = []
        for token in tokens:
            n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                bigger = ctypes.create_string_buffer(-n)
                n = llama_cpp.llama_token_to_piece(self.vocab, token, bigger, -n, 0, special)
                found.append(bigger.raw[:n])
            else:
                found.append(buf.raw[:n])
        return found

    def text_of(self, tokens: Sequence[int], *, special: bool = False) -> str:
        """The text of ``tokens`` (special ones as written when ``special``); unlike
        :meth:`piece`, safe on any thread (its own buffer)."""
        return b"".join(self.pieces(tokens, special=special)).decode("utf-8", "replace")

    def is_eog(self, token: int) -> bool:
        return bool(llama_cpp.llama_vocab_is_eog(self.vocab, token))


class LlamaContext:
    """One llama.cpp context: one KV cache of ``n_ctx`` cells that every sequence id (slot)
    draws from (or, ``per_slot``, a fixed share of them each). Owned by the engine thread."""

    def __init__(
        self,
        model: LlamaModel,
        *,
        n_ctx: int,
        n_seq: int,
        n_batch: int,
        n_threads: int,
        per_slot: bool = False,
    ) -> None:
        params = llama_cpp.llama_context_default_params()
        # One unified KV cache: any sequence may take up to all of it, and the engine shares
        # the cells out (model/kv_pool.py). Choices forked from one prompt share its cells.
        # ``per_slot``: each sequence id its own stream of n_ctx / n_seq cells instead, so a
        # sequence's attention never depends on where other sequences' cells lie.
        params.n_ctx = n_ctx
        params.n_seq_max = n_seq
        params.kv_unified = not per_slot
        params.n_batch = n_batch
        params.n_ubatch = min(n_batch, 512)
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ModelLoadError(
                f"llama.cpp could not create a context of {n_ctx} KV cells for {n_seq} "
                "sequences (out of memory? try a smaller --kv-size)"
            )
        self._ptr: Any = ptr
        self._n_vocab = model.n_vocab
        self.memory: Any = llama_cpp.llama_get_memory(ptr)
        #: Cells in the KV cache (llama.cpp rounds the request up to a multiple of 256).
        self.n_ctx = int(llama_cpp.llama_n_ctx(ptr))

    @property
    def ptr(self) -> Any:
        return self._ptr

    def decode(self, batch: Batch) -> int:
        return int(llama_cpp.llama_decode(self._ptr, batch.raw))

    def logits(self, rows: int) -> npt.NDArray[np.float32]:
        """The last decode's logits, one row of ``n_vocab`` per batch position that asked
        for them, in batch order: a view, valid until the next decode."""
        data = llama_cpp.llama_get_logits(self._ptr)
        return np.ctypeslib.as_array(data, shape=(rows, self._n_vocab))

    def forget(self, seq_id: int, start: int = -1) -> None:
        """Drop a sequence's KV cells from position ``start`` on (all of them by default)."""
        llama_cpp.llama_memory_seq_rm(self.memory, seq_id, start, -1)

    def copy(self, source: int, target: int) -> None:
        """Make sequence ``target``'s KV a copy of ``source``'s (across KV streams too)."""
        llama_cpp.llama_memory_seq_cp(self.memory, source, target, -1, -1)

    def close(self) -> None:
        if self._ptr:
            llama_cpp.llama_free(self._ptr)
            self._ptr = None


class EmbeddingContext:
    """A llama.cpp context computing pooled embeddings: the model's pooling type, or mean
    pooling when it has none. Sequences share its ``n_ctx`` cells (a unified KV cache) and
    each decode reads whole sequences (``n_ubatch`` = ``n_ctx``); the cache is cleared after
    every batch. Owned by one thread.
    """

    def __init__(self, model: LlamaModel, *, n_ctx: int, n_seq: int, n_threads: int) -> None:
        self.n_embd = int(llama_cpp.llama_model_n_embd_out(model.ptr))
        self._ptr: Any = self._create(model, n_ctx, n_seq, n_threads, _POOL_UNSPECIFIED)
        self.pooling = int(llama_cpp.llama_pooling_type(self._ptr))
        if self.pooling == _POOL_NONE:  # a generative model: mean of its last hidden states
            llama_cpp.llama_free(self._ptr)
            self._ptr = self._create(model, n_ctx, n_seq, n_threads, _POOL_MEAN)
            self.pooling = _POOL_MEAN
        elif self.pooling == _POOL_RANK:
            self.close()
            raise ModelLoadError(f"{model.path} is a reranking model: it gives scores, not vectors")
        self.memory: Any = llama_cpp.llama_get_memory(self._ptr)
        self.n_ctx = int(llama_cpp.llama_n_ctx(self._ptr))
        self.n_seq = n_seq

    @staticmethod
    def _create(model: LlamaModel, n_ctx: int, n_seq: int, n_threads: int, pooling: int) -> Any:
        params = llama_cpp.llama_context_default_params()
        params.embeddings = True
        params.pooling_type = pooling
        params.n_ctx = n_ctx
        params.n_batch = n_ctx
        params.n_ubatch = n_ctx
        params.n_seq_max = n_seq
        params.kv_unified = True
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.no_perf = True
        ptr = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ptr:
            raise ModelLoadError(f"llama.cpp could not create an embedding context of {n_ctx}")
        return ptr

    def embed(self, batch: Batch, n_seq: int) -> list[list[float]]:
        """Decode ``batch`` (sequence ids 0 to ``n_seq`` - 1, each from position 0) and return
        each sequence's pooled vector, not normalized. :raises RuntimeError: decode failed."""
        try:
            status = int(llama_cpp.llama_decode(self._ptr, batch.raw))
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} computing embeddings")
            vectors = []
            for seq in range(n_seq):
                pointer = llama_cpp.llama_get_embeddings_seq(self._ptr, seq)
                if not pointer:
                    raise RuntimeError(f"llama.cpp gave no embedding for sequence {seq}")
                vectors.append(pointer[: self.n_embd])
            return vectors
        finally:
            llama_cpp.llama_memory_clear(self.memory, True)

    def close(self) -> None:
        if self._ptr:
            llama_cpp.llama_free(self._ptr)
            self._ptr = None


class Batch:
    """A reusable ``llama_batch`` of at most ``capacity`` tokens, one sequence id each."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.raw: Any = llama_cpp.llama_batch_init(capacity, 0, 1)
        self.n = 0

    def clear(self) -> None:
        self.n = 0
        self.raw.n_tokens = 0

    def add(self, token: int, pos: int, seq_id: int, logits: bool) -> int:
        """Append one token; returns its index, which is where its logits land."""
        i = self.n
        raw = self.raw
        raw.token[i] = token
        raw.pos[i] = pos
        raw.n_seq_id[i] = 1
        raw.seq_id[i][0] = seq_id
        raw.logits[i] = logits
        self.n = i + 1
        raw.n_tokens = self.n
        return i

    def close(self) -> None:
        if self.raw is not None:
            llama_cpp.llama_batch_free(self.raw)
            self.raw = None
