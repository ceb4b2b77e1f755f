"""The pure unit tests need no llama.cpp: they pass with ``llama_cpp`` unimportable.

Model-side tests that drive llama.cpp live in ``tests/model`` (with the embedded-model
fixtures in its conftest); end-to-end tests in ``tests/e2e``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Runs pytest on tests/unit (but this file) with ``import llama_cpp`` failing, and checks
# afterwards that nothing loaded it by another route.
_BLOCKED_RUN = """
import sys
sys.modules["llama_cpp"] = None  # any import of it, or of a submodule, raises ImportError
import pytest
code = pytest.main(sys.argv[1:])
loaded = [name for name, module in sys.modules.items() if name.startswith("llama_cpp") and module]
print("llama_cpp modules loaded:", loaded)
sys.exit(code or (3 if loaded else 0))
"""


def test_unit_tests_pass_without_llama_cpp() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _BLOCKED_RUN,
            "-q",
            "-x",
            "-p",
            "no:cacheprovider",
            "tests/unit",
            "--deselect",
            "tests/unit/test_without_llama.py::test_unit_tests_pass_without_llama_cpp",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
    assert "llama_cpp modules loaded: []" in result.stdout


def test_importing_the_service_loads_no_llama_cpp() -> None:
    # The app is built (routes, registry, metrics) without touching the native library.
    code = (
        "import sys; import service; service.create_app(); "
        "print(sorted(m for m in sys.modules if m.startswith('llama_cpp')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
