"""The route table: which handler answers which path and method.

A path template is a literal path, or a prefix ending in one ``{name}`` parameter that takes
the rest of the path (``/v1/models/{id}``). A template is also the metrics label of every
path it matches, so labels never carry raw ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope

from .errors import APIError

__all__ = ["OTHER", "ErrorBody", "Handler", "Request", "Route", "RouteTable"]

#: The label of paths no route matches.
OTHER = "other"


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as a handler sees it: read, authorized and content-type checked."""

    scope: Scope
    receive: Receive
    #: The whole body (empty for methods without one).
    body: bytes = b""
    #: The template's parameter, when it has one (``{"id": ...}``).
    params: Mapping[str, str] = field(default_factory=dict)


#: Answers a request with the ASGI response to send; raises ``stream.errors.APIError`` or
#: ``model.errors.ModelError`` for an error answer.
Handler = Callable[[Request], Awaitable[ASGIApp]]

#: An error's JSON body in a route's API shape (OpenAI's by default).
ErrorBody = Callable[[APIError], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Route:
    """The handlers of one path template, by method."""

    methods: Mapping[str, Handler]
    #: Answered without an API key: orchestrators and scrapers probe it.
    public: bool = False
    #: How this route's errors read (an API with its own error shape sets it).
    error_body: ErrorBody = APIError.body


class RouteTable:
    """Routes by path template (see the module notes)."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
        self._exact = {path: route for path, route in routes.items() if "{" not in path}
        self._prefixed: list[tuple[str, str, str, Route]] = []
        for template, route in routes.items():
            if "{" in template:
                prefix, _, rest = template.partition("{")
                if not rest.endswith("}") or "{" in rest:
                    raise ValueError(f"{template!r}: one parameter, at the end, is supported")
                self._prefixed.append((template, prefix, rest[:-1], route))

    def find(self, path: str) -> tuple[str, Route, dict[str, str]] | None:
        """The template, route and parameters for ``path``; None when no route matches."""
        route = self._exact.get(path)
        if route is not None:
            return path, route, {}
        for template, prefix, name, candidate in self._prefixed:
            if path.startswith(prefix):
                return template, candidate, {name: path[len(prefix) :]}
        return None

    def label(self, path: str) -> str:
        """The template ``path`` falls under, or :data:`OTHER` (the metrics label)."""
        found = self.find(path)
        return OTHER if found is None else found[0]
