from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import RunningServer, running_server


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def server() -> Iterator[RunningServer]:
    """The service as `scripts/serve` runs it, on a free port (shared by most tests)."""
    with running_server() as running:
        yield running
