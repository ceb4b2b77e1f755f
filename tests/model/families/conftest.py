from __future__ import annotations

import pytest

from tests.model.families.templates import ChatTemplates, fetch_chat_templates


@pytest.fixture(scope="session")
def chat_templates() -> ChatTemplates:
    """llama.cpp's collection of real chat templates (see templates.py)."""
    return fetch_chat_templates()
