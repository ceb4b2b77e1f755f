"""stream.plan.Limits.check_text_size: text that cannot fit is refused by its length alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import pytest

from stream.errors import InvalidRequest
from stream.plan import Limits, Model


@dataclass
class Sized:
    ctx_size: int = 100
    longest_token: int = 8


def model(**fields: Any) -> Model:
    return cast(Model, Sized(**fields))


def test_text_that_may_fit_passes() -> None:
    # 799 characters may be as few as 99 tokens of 8 bytes: it may fit, so it is tokenized.
    Limits().check_text_size(model(), 799, param="messages")


@pytest.mark.parametrize("chars", [800, 10**7])
def test_text_that_cannot_fit_is_context_length_exceeded(chars: int) -> None:
    with pytest.raises(InvalidRequest) as caught:
        Limits().check_text_size(model(), chars, param="prompt")
    error = caught.value
    assert (error.status, error.param, error.code) == (400, "prompt", "context_length_exceeded")
    assert f"at least {chars // 8} tokens" in error.message
    assert "100 tokens" in error.message
