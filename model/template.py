"""Chat templates: the Jinja programs that turn OpenAI-style messages into one prompt string.

The template comes from the GGUF metadata, an override (builtin name, file path or inline Jinja),
or the builtin ``plain``. Rendering matches Hugging Face ``apply_chat_template`` so its templates
work unchanged: an immutable sandbox, ``trim_blocks`` and ``lstrip_blocks``, ``loopcontrols``, a
``{% generation %}`` tag that renders its body, ``raise_exception(msg)``, ``strftime_now(fmt)``,
a ``tojson`` that escapes neither HTML nor non-ASCII, and the variables ``messages``,
``add_generation_prompt``, ``bos_token``, ``eos_token`` and ``tools``.

``plain``, the documented generic format for base models without a template: the system text
bare, then ``User: <text>`` / ``Assistant: <text>`` turns (any other role as ``Role: <text>``),
all separated by one blank line, ending in ``Assistant:`` when a generation prompt is asked for;
its stop string ``"\\nUser:"`` keeps the model from writing the user's next turn. Missing or null
content renders as empty. Builtins ignore ``tools`` and never emit ``bos_token`` (the tokenizer
adds BOS when the model's metadata asks for it).

Deviation: ``tools`` is always defined, ``None`` when the request has none, because that is what
``transformers`` passes and what templates are tested with.

Errors::

    TemplateError            cannot compile, or cannot render this conversation (the client's
     |                       data does not fit it: a missing key, None + str, ...)
     +- TemplateRejection    the template refused the conversation itself (raise_exception)
     +- TemplateFailure      the template broke, whatever the data: unbounded recursion, a
                             sandbox violation, any other exception (the server's fault)
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final, NoReturn

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension, loopcontrols
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import LoadError

__all__ = [
    "ChatTemplate",
    "TemplateError",
    "TemplateFailure",
    "TemplateRejection",
    "load_chat_template",
]

_CHATML: Final = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message.role + '\\n' + (message.content or '') + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
_PLAIN: Final = (
    "{% for message in messages %}"
    "{% if not loop.first %}{{ '\\n\\n' }}{% endif %}"
    "{% if message.role == 'system' %}{{ message.content or '' }}"
    "{% else %}{{ message.role | capitalize }}: {{ message.content or '' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{% if messages %}{{ '\\n\\n' }}{% endif %}Assistant:{% endif %}"
)
# Errors about the data a template was given; jinja2.SecurityError, also a jinja2.TemplateError,
# is not one of them.
_DATA_ERRORS: Final = (
    jinja2.UndefinedError,
    TypeError,
    ValueError,
    LookupError,
    ArithmeticError,
)
_BUILTINS: Final[Mapping[str, tuple[str, tuple[str, ...]]]] = {
    "chatml": (_CHATML, ("<|im_end|>",)),
    "plain": (_PLAIN, ("\nUser:",)),
}


class TemplateError(LoadError):
    """The chat template cannot be compiled or rendered (then client-facing); says why."""


class TemplateRejection(TemplateError):
    """The template refused the conversation with ``raise_exception``; its message."""


class TemplateFailure(TemplateError):
    """The template itself failed while rendering (not the conversation's fault); says how."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="chat_template_failed")


class _GenerationTag(Extension):
    # transformers' AssistantTracker marks assistant spans for training masks; inference only
    # needs the body, but without the tag such templates would not even compile.
    tags = {"generation"}  # noqa: RUF012 - Extension declares it a plain set

    def parse(self, parser: Parser) -> list[nodes.Node]:
        next(parser.stream)
        return parser.parse_statements(("name:endgeneration",), drop_needle=True)


def _raise_exception(message: str) -> NoReturn:
    raise TemplateRejection(message)


def _tojson(value: Any, indent: int | None = None, **options: Any) -> str:
    # Jinja's own tojson HTML-escapes <, >, & and ', which would corrupt tool schemas in prompts.
    # Templates pass generators too (``messages | map(...)``): written as lists.
    options = {"ensure_ascii": False, "default": _listed, **options}
    return json.dumps(value, indent=indent, **options)


def _listed(value: Any) -> Any:
    if isinstance(value, Iterator):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class ChatTemplate:
    """A compiled chat template: ``source``, ``name`` (``gguf``, ``chatml``, ``plain``,
    ``file:<path>``, ``inline``) and ``stop``, the extra stop strings it implies.

    :raises TemplateError: the source does not compile.
    """

    __slots__ = ("_bos_token", "_eos_token", "_template", "name", "source", "stop")

    def __init__(
        self,
        source: str,
        *,
        name: str,
        stop: tuple[str, ...] = (),
        bos_token: str = "",
        eos_token: str = "",
    ) -> None:
        self.source = source
        self.name = name
        self.stop = stop
        self._bos_token = bos_token
        self._eos_token = eos_token
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols, _GenerationTag]
        )
        env.filters["tojson"] = _tojson
        env.globals["raise_exception"] = _raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        try:
            self._template = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(
                f"chat template {name!r} does not compile (line {exc.lineno}): {exc.message}"
            ) from exc

    def render(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: Sequence[Mapping[str, Any]] | None = None,
        variables: Mapping[str, Any] | None = None,
    ) -> str:
        """Render ``messages`` (string or ``None`` content) into a prompt; ``variables``: more
        template variables (a request's ``chat_template_kwargs``, e.g. ``enable_thinking``),
        which never replace the ones named here.

        :raises TemplateRejection: the template refused them (``raise_exception``).
        :raises TemplateError: their data does not fit the template (a missing key, an
            undefined value, None + str); the message is fit for the client.
        :raises TemplateFailure: the template broke: recursion too deep, a sandbox violation,
            any other exception.
        """
        context = {
            **(variables or {}),
            "messages": list(messages),
            "add_generation_prompt": add_generation_prompt,
            "bos_token": self._bos_token,
            "eos_token": self._eos_token,
            "tools": None if tools is None else list(tools),
        }
        try:
            return self._template.render(context)
        except TemplateError:
            raise
        # Templates are code from the model file running on client data: failures about the
        # data (None + str, a missing index) are rejected input, not server bugs.
        except _DATA_ERRORS as exc:
            raise TemplateError(
                f"chat template {self.name!r} cannot render these messages: {exc}"
            ) from exc
        # Anything else is the template's own defect (a recursive macro, a sandbox violation):
        # no conversation would fix it.
        except Exception as exc:
            raise TemplateFailure(
                f"chat template {self.name!r} failed: {type(exc).__name__}: {exc}"
            ) from exc


def load_chat_template(
    gguf_template: str | None,
    *,
    override: str | None = None,
    bos_token: str = "",
    eos_token: str = "",
) -> ChatTemplate:
    """Choose and compile the chat template.

    :param override: ``None`` for ``gguf_template`` (or builtin ``plain`` when that is missing),
        else a builtin name (``chatml``, ``plain``), a template file's path, or inline Jinja.
    :raises TemplateError: an unknown override, an unreadable file, or a template that does not
        compile.
    """
    source, name, stop = _resolve(gguf_template, override)
    return ChatTemplate(source, name=name, stop=stop, bos_token=bos_token, eos_token=eos_token)


def _resolve(gguf_template: str | None, override: str | None) -> tuple[str, str, tuple[str, ...]]:
    if override is None:
        if gguf_template and gguf_template.strip():
            return gguf_template, "gguf", ()
        override = "plain"
    if override in _BUILTINS:
        return _BUILTINS[override][0], override, _BUILTINS[override][1]
    # Checked before the file system: a long inline template is no path, and is_file() on it
    # raises ENAMETOOLONG rather than returning False.
    if "{%" in override or "{{" in override:
        return override, "inline", ()
    path = Path(override).expanduser()
    try:
        source = path.read_text(encoding="utf-8") if path.is_file() else None
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"cannot read chat template file {str(path)!r}: {exc}") from exc
    if source is None:
        choices = ", ".join(map(repr, _BUILTINS))
        raise TemplateError(
            f"unknown chat template {override!r}: expected one of {choices}, a path to an"
            " existing template file, or an inline Jinja template (containing '{{' or '{%')"
        )
    return source, f"file:{path}", ()
