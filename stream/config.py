"""The one typed configuration of a Sluice server, from flags, ``SLUICE_*`` variables or a mapping.

Every field has a CLI flag (``--ctx-size``) and an environment variable (``SLUICE_CTX_SIZE``)
that fill the same value; flags win. Units are in the names or the help (seconds, bytes,
tokens).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from model.families import family_by_name

__all__ = ["KIB", "MIB", "SECONDS", "Config"]

_DESCRIPTION = (
    "Sluice: serve a local GGUF model to OpenAI clients. Every option can also be set as a "
    "SLUICE_* environment variable (--ctx-size = SLUICE_CTX_SIZE); flags win."
)

SECONDS = 1.0
KIB = 1024
MIB = 1024 * KIB


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    """Every setting; CLI flags ``--ctx-size`` and env ``SLUICE_CTX_SIZE`` fill the same field."""

    model: str | None = _opt(
        None,
        "GGUF path, 'owner/repo[:QUANT]' on the Hugging Face Hub, "
        "or nothing for the embedded SmolLM2-135M-Instruct",
    )
    model_file: str | None = _opt(None, "file name or quant pattern inside a Hub repo")
    embedding_model: str | None = _opt(
        None,
        "model for /v1/embeddings, as --model takes it (default: the served model's weights); "
        "loaded at the first embedding request",
    )
    host: str = _opt("0.0.0.0", "address to listen on")
    port: int = _opt(8000, "port to listen on")
    ctx_size: int = _opt(0, "context per sequence in tokens (0: the model's, at most the pool)")
    gpu_layers: int = _opt(-1, "layers to offload to the GPU (-1: all)")
    threads: int = _opt(0, "CPU threads for llama.cpp (0: all cores)")
    slots: int = _opt(16, "sequences generated at once (a scheduling limit, not memory)")
    kv_size: int = _opt(0, "KV cache cells shared by all sequences (0: 8192 or --ctx-size)")
    kv_per_slot: bool = _opt(
        False, "each slot its own KV share: greedy output independent of the batch"
    )
    batch_size: int = _opt(512, "tokens per decode step")
    prefill_chunk: int = _opt(128, "prompt tokens read per step while others decode")
    max_queue: int = _opt(64, "requests allowed to wait for a slot")
    request_timeout: float = _opt(600 * SECONDS, "default deadline of a request, queue included")
    max_request_timeout: float = _opt(3600 * SECONDS, "longest deadline a request may ask for")
    stall_timeout: float = _opt(30 * SECONDS, "seconds a client may read nothing before drop")
    heartbeat_interval: float = _opt(15 * SECONDS, "seconds of silence before an SSE comment")
    served_model_name: str | None = _opt(None, "model id shown to clients (default: file name)")
    strict_model_names: bool = _opt(False, "answer 404 for a 'model' other than the served one")
    chat_template: str | None = _opt(None, "'chatml', 'plain', a Jinja file or inline template")
    tool_format: str | None = _opt(
        None, "model family read for reasoning and tool calls (default: from the chat template)"
    )
    reasoning_budget: int = _opt(-1, "default thinking budget in tokens (-1: unlimited)")
    reasoning_format: str = _opt(
        "auto", "'auto': reasoning goes to reasoning_content; 'none': it stays in content"
    )
    max_body_size: int = _opt(8 * MIB, "largest request body accepted, in bytes")
    body_timeout: float = _opt(30 * SECONDS, "seconds a request body may take to arrive (408)")
    max_connections: int = _opt(
        4096, "open connections served at once; more are refused with a 503 and closed"
    )
    send_buffer: int = _opt(64 * KIB, "socket send buffer per connection, bytes (0: kernel's)")
    stream_buffer: int = _opt(64, "events buffered per stream before its sequence pauses")
    resumable_default: bool = _opt(
        False, "streams are resumable (Last-Event-ID) unless a request says otherwise"
    )
    resume_window: float = _opt(
        60 * SECONDS, "seconds a resumable stream generates with no reader, and is kept after"
    )
    resume_buffer: int = _opt(1 * MIB, "bytes of events kept per resumable stream")
    resume_buffer_total: int = _opt(64 * MIB, "bytes of events kept for all resumable streams")
    websocket_requests: int = _opt(8, "requests one WebSocket may run at once")
    max_messages: int = _opt(1024, "most messages one chat request may carry")
    max_tokens_limit: int = _opt(0, "largest max_tokens a request may ask for (0: the context)")
    api_keys: str | None = _opt(None, "comma-separated API keys accepted as Bearer tokens")
    api_key_file: str | None = _opt(None, "file with one accepted API key per line")
    cors_origins: str | None = _opt(None, "comma-separated origins allowed by CORS, or '*'")
    certfile: str | None = _opt(None, "TLS certificate (PEM); HTTP/2 is offered by ALPN")
    keyfile: str | None = _opt(None, "TLS private key (PEM)")
    shutdown_grace: float = _opt(30 * SECONDS, "seconds in-flight streams get after SIGTERM")
    log_level: str = _opt("info", "debug, info, warning or error")
    log_json: bool = _opt(False, "write log lines as JSON objects")
    responses_store_size: int = _opt(
        1024, "stored /v1/responses kept, least recent evicted (0: off)"
    )
    responses_store_bytes: int = _opt(64 * MIB, "bytes of stored /v1/responses (0: off)")
    responses_ttl: float = _opt(3600 * SECONDS, "seconds a stored /v1/responses lives (0: off)")

    def __post_init__(self) -> None:
        # Values llama.cpp aborts, crashes or misbehaves on are start-up errors instead.
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                bound = f"at least {low}" if high is None else f"{low} to {high}"
                raise ValueError(f"{name} must be {bound}, not {value}")
        if self.reasoning_format not in ("auto", "none"):
            raise ValueError(
                f"reasoning_format must be 'auto' or 'none', not {self.reasoning_format!r}"
            )
        if self.tool_format is not None:
            family_by_name(self.tool_format)  # FamilyError (a ValueError) lists the names

    @classmethod
    def from_mapping(cls, values: Mapping[str, str]) -> Config:
        """Build from strings, e.g. ``os.environ`` with the ``SLUICE_`` prefix stripped."""
        kwargs: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = values.get(f.name)
            if raw is not None:
                kwargs[f.name] = _convert(f.name, f.default, raw)
        return cls(**kwargs)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Config:
        prefix = "SLUICE_"
        return cls.from_mapping(
            {k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)}
        )

    @classmethod
    def from_args(cls, argv: Sequence[str], environ: Mapping[str, str] = os.environ) -> Config:
        """Flags over ``SLUICE_*`` variables. A bad value of either exits with status 2 and
        a ``sluice: error:`` line (argparse's usage line first for a flag)."""
        parser = argparse.ArgumentParser(prog="sluice", description=_DESCRIPTION)
        for f in dataclasses.fields(cls):
            flag = "--" + f.name.replace("_", "-")
            if f.default is False:
                parser.add_argument(
                    flag, action="store_true", default=None, help=f.metadata["help"]
                )
            else:
                parser.add_argument(flag, metavar=f.name.upper(), help=f.metadata["help"])
        given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
        # A flag wins over its variable, even over a malformed one.
        unset = {f"SLUICE_{name.upper()}" for name in given}
        try:
            base = cls.from_env({k: v for k, v in environ.items() if k not in unset})
        except ValueError as exc:
            parser.exit(2, f"{parser.prog}: error: {exc}\n")
        try:
            return cls._merge(base, given)
        except ValueError as exc:
            parser.error(str(exc))

    @classmethod
    def _merge(cls, base: Config, given: Mapping[str, Any]) -> Config:
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        changes: dict[str, Any] = {
            k: v if isinstance(v, bool) else _convert(k, defaults[k], v) for k, v in given.items()
        }
        return dataclasses.replace(base, **changes)


#: (field, lowest, highest or None): llama.cpp takes at most 256 sequences and 512 threads;
#: ``ctx_size`` beyond what the model was trained for is refused when it loads.
_RANGES: tuple[tuple[str, int, int | None], ...] = (
    ("ctx_size", 0, None),
    ("slots", 1, 256),
    # llama.cpp keeps the cache size in 32 bits (a larger value would wrap around).
    ("kv_size", 0, 2**31 - 1),
    ("batch_size", 1, 65536),
    ("prefill_chunk", 1, None),
    ("threads", 0, 512),
    ("max_queue", 0, None),
    ("max_connections", 1, None),
    ("responses_store_size", 0, None),
    ("responses_store_bytes", 0, None),
    ("responses_ttl", 0, None),
    ("reasoning_budget", -1, None),
    ("resume_window", 0, None),
    ("resume_buffer", 1, None),
    ("resume_buffer_total", 1, None),
    ("websocket_requests", 1, 1024),
)


def _convert(name: str, default: Any, raw: str) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes", "on"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"invalid value for {name}: {raw!r}") from None
    # An empty value unsets an optional setting; a required one keeps the string.
    return raw if default is not None else raw or None
