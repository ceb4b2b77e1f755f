"""The model families' real chat templates, fetched at test time and cached outside the repo.

llama.cpp keeps the templates of many model families under ``models/templates/``, and the
llama-cpp-python source distribution carries that folder. The sdist of the installed version is
downloaded once with pip and the ``.jinja`` files extracted to
``$XDG_CACHE_HOME/sluice/chat-templates/llama-cpp-python-<version>/`` (override the directory
with ``SLUICE_CHAT_TEMPLATES``). These files are other projects' data: never commit them.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest

from model.template import ChatTemplate

_TEMPLATES_DIR = "/vendor/llama.cpp/models/templates/"


def _cache() -> Path:
    override = os.environ.get("SLUICE_CHAT_TEMPLATES")
    if override:
        return Path(override).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser()
    version = importlib.metadata.version("llama_cpp_python")
    return base / "sluice" / "chat-templates" / f"llama-cpp-python-{version}"


class ChatTemplates:
    """The cached templates, by file name (``Qwen-Qwen3-0.6B.jinja``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def source(self, name: str) -> str:
        return (self.folder / name).read_text(encoding="utf-8")

    def template(self, name: str, *, bos: str = "", eos: str = "") -> ChatTemplate:
        return ChatTemplate(self.source(name), name=name, bos_token=bos, eos_token=eos)

    def names(self) -> list[str]:
        return sorted(path.name for path in self.folder.glob("*.jinja"))


def fetch_chat_templates() -> ChatTemplates:
    """The templates, downloading them first when the cache is empty; skips the test when
    that fails and nothing is cached (the reason says so)."""
    cache = _cache()
    if any(cache.glob("*.jinja")):
        return ChatTemplates(cache)
    version = importlib.metadata.version("llama_cpp_python")
    with tempfile.TemporaryDirectory(prefix="sluice-templates-") as tmp:
        download = [
            sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:",
            "--no-deps", f"llama-cpp-python=={version}", "--dest", tmp,
        ]  # fmt: skip
        try:
            subprocess.run(download, check=True, capture_output=True, timeout=900)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            stderr = getattr(exc, "stderr", b"") or b""
            pytest.skip(
                f"the families' chat templates come from the llama-cpp-python {version} sdist,"
                f" which could not be downloaded (network unreachable?), and {cache} holds no"
                f" cached copy: {stderr.decode(errors='replace').strip()[-300:]}"
            )
        archive = next(Path(tmp).glob("*.tar.gz"))
        staging = Path(tmp) / "templates"
        staging.mkdir()
        with tarfile.open(archive) as sdist:
            for member in sdist.getmembers():
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and _TEMPLATES_DIR in member.name and name.endswith(".jinja"):
                    data = sdist.extractfile(member)
                    assert data is not None
                    (staging / name).write_bytes(data.read())
        cache.parent.mkdir(parents=True, exist_ok=True)
        try:
            staging.rename(cache)
        except OSError:  # another run filled the cache meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    return ChatTemplates(cache)
