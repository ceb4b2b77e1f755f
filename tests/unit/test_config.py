"""Unit tests for stream.config.Config: one typed object fed by a mapping, the environment or
the CLI."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from stream.config import Config

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
OPTIONAL_STRINGS = [name for name, f in FIELDS.items() if f.default is None]
REQUIRED_STRINGS = [name for name, f in FIELDS.items() if isinstance(f.default, str)]
BOOLS = [name for name, f in FIELDS.items() if isinstance(f.default, bool)]
INTS = [
    name
    for name, f in FIELDS.items()
    if isinstance(f.default, int) and not isinstance(f.default, bool)
]
FLOATS = [name for name, f in FIELDS.items() if isinstance(f.default, float)]


def test_field_groups_cover_every_field() -> None:
    groups = [OPTIONAL_STRINGS, REQUIRED_STRINGS, BOOLS, INTS, FLOATS]
    assert sorted(n for g in groups for n in g) == sorted(FIELDS)
    assert {"model", "served_model_name", "chat_template"} <= set(OPTIONAL_STRINGS)
    assert {"ctx_size", "port", "slots", "stream_buffer"} <= set(INTS)
    assert "heartbeat_interval" in FLOATS
    assert "strict_model_names" in BOOLS


def test_defaults() -> None:
    config = Config()
    assert config.model is None
    assert config.port == 8000
    assert config.ctx_size == 0
    assert config.heartbeat_interval == 15.0
    assert config.strict_model_names is False
    assert config.stream_buffer == 64
    assert config.max_body_size == 8 * 1024 * 1024
    assert Config.from_mapping({}) == config


def test_config_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().port = 1  # type: ignore[misc]


# --- from_mapping -------------------------------------------------------------------------------


def test_from_mapping_converts_each_type() -> None:
    config = Config.from_mapping(
        {
            "model": "/models/a.gguf",
            "port": "9000",
            "gpu_layers": "-1",
            "heartbeat_interval": "0.5",
            "strict_model_names": "yes",
            "log_level": "debug",
        }
    )
    assert config.model == "/models/a.gguf"
    assert config.port == 9000
    assert config.gpu_layers == -1
    assert config.heartbeat_interval == 0.5
    assert isinstance(config.heartbeat_interval, float)
    assert config.strict_model_names is True
    assert config.log_level == "debug"


@pytest.mark.parametrize("name", INTS)
def test_every_int_field_converts(name: str) -> None:
    value = getattr(Config.from_mapping({name: "123"}), name)
    assert value == 123
    assert type(value) is int


@pytest.mark.parametrize("name", FLOATS)
def test_every_float_field_converts(name: str) -> None:
    value = getattr(Config.from_mapping({name: "2"}), name)
    assert value == 2.0
    assert type(value) is float


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        ("On", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_bool_words(word: str, expected: bool) -> None:
    assert Config.from_mapping({"strict_model_names": word}).strict_model_names is expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("strict_model_names", "maybe"),
        ("strict_model_names", ""),
        ("strict_model_names", "2"),
        ("port", "eighty"),
        ("port", "80.5"),
        ("port", ""),
        ("ctx_size", "2k"),
        ("heartbeat_interval", "soon"),
        ("heartbeat_interval", ""),
    ],
)
def test_invalid_values_name_the_field(name: str, raw: str) -> None:
    with pytest.raises(ValueError, match=f"invalid value for {name}: {raw!r}"):
        Config.from_mapping({name: raw})


@pytest.mark.parametrize("name", OPTIONAL_STRINGS)
def test_empty_optional_string_is_none(name: str) -> None:
    value = "hermes" if name == "tool_format" else "x"  # a family name is checked
    assert getattr(Config.from_mapping({name: ""}), name) is None
    assert getattr(Config.from_mapping({name: value}), name) == value


@pytest.mark.parametrize("name", REQUIRED_STRINGS)
def test_empty_required_string_never_becomes_none(name: str) -> None:
    # ``host`` and ``log_level`` are typed ``str``; an empty value must be refused or ignored.
    outcome: object
    try:
        outcome = getattr(Config.from_mapping({name: ""}), name)
    except ValueError as exc:
        outcome = exc
    assert isinstance(outcome, str | ValueError), f"{name} became {outcome!r}"


def test_from_mapping_ignores_unknown_keys() -> None:
    assert Config.from_mapping({"colour": "blue", "PORT": "1"}) == Config()


# --- from_env -----------------------------------------------------------------------------------


def test_from_env_reads_the_sluice_prefix() -> None:
    config = Config.from_env(
        {
            "SLUICE_CTX_SIZE": "2048",
            "SLUICE_STRICT_MODEL_NAMES": "true",
            "SLUICE_HEARTBEAT_INTERVAL": "2.5",
            "SLUICE_SERVED_MODEL_NAME": "",
            "SLUICE_CHAT_TEMPLATE": "chatml",
            "CTX_SIZE": "1",
            "PORT": "1",
            "XSLUICE_PORT": "1",
            "sluice_port": "1",
        }
    )
    assert config == dataclasses.replace(
        Config(),
        ctx_size=2048,
        strict_model_names=True,
        heartbeat_interval=2.5,
        chat_template="chatml",
    )


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PORT", "8123")
    monkeypatch.setenv("SLUICE_MODEL", "owner/repo:Q4_K_M")
    config = Config.from_env()
    assert config.port == 8123
    assert config.model == "owner/repo:Q4_K_M"


def test_from_env_invalid_value() -> None:
    with pytest.raises(ValueError, match="slots"):
        Config.from_env({"SLUICE_SLOTS": "four"})


def test_from_args_reports_a_bad_variable_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        Config.from_args([], {"SLUICE_SLOTS": "four"})
    assert caught.value.code == 2
    assert capsys.readouterr().err == "sluice: error: invalid value for slots: 'four'\n"


def test_a_flag_overrides_a_bad_variable() -> None:
    config = Config.from_args(["--slots", "2"], {"SLUICE_SLOTS": "four", "SLUICE_PORT": "9"})
    assert (config.slots, config.port) == (2, 9)


# --- from_args ----------------------------------------------------------------------------------


def test_from_args_flags() -> None:
    config = Config.from_args(
        ["--ctx-size", "2048", "--strict-model-names", "--heartbeat-interval", "0.25"], {}
    )
    assert config == dataclasses.replace(
        Config(), ctx_size=2048, strict_model_names=True, heartbeat_interval=0.25
    )


def test_from_args_without_flags_is_the_default() -> None:
    assert Config.from_args([], {}) == Config()


def test_from_args_equals_form_and_strings() -> None:
    config = Config.from_args(
        ["--model=/m/a.gguf", "--host", "::1", "--served-model-name", "tiny", "--log-level=debug"],
        {},
    )
    assert (config.model, config.host, config.served_model_name, config.log_level) == (
        "/m/a.gguf",
        "::1",
        "tiny",
        "debug",
    )


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_every_field_has_a_flag(name: str) -> None:
    flag = "--" + name.replace("_", "-")
    sample: dict[str, tuple[list[str], Any]] = {
        **{n: (["7"], 7) for n in INTS},
        **{n: (["0.5"], 0.5) for n in FLOATS},
        **{n: ([], True) for n in BOOLS},
        **{n: (["abc"], "abc") for n in OPTIONAL_STRINGS + REQUIRED_STRINGS},
        "tool_format": (["llama3"], "llama3"),  # a family name is checked
        "reasoning_format": (["none"], "none"),  # one of two values
    }
    args, expected = sample[name]
    assert getattr(Config.from_args([flag, *args], {}), name) == expected


def test_an_unknown_tool_format_exits_2_listing_the_families(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        Config.from_args(["--tool-format", "klingon"], {})
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "klingon" in err
    assert all(name in err for name in ("hermes", "llama3", "mistral", "qwen3-coder", "harmony"))
    with pytest.raises(SystemExit) as exited:
        Config.from_args([], {"SLUICE_TOOL_FORMAT": "klingon"})
    assert exited.value.code == 2


def test_reasoning_format_is_auto_or_none() -> None:
    assert Config().reasoning_format == "auto"
    assert Config.from_mapping({"reasoning_format": "none"}).reasoning_format == "none"
    with pytest.raises(ValueError, match="reasoning_format"):
        Config.from_mapping({"reasoning_format": "raw"})


def test_cli_overrides_env_and_env_fills_the_rest() -> None:
    env = {
        "SLUICE_CTX_SIZE": "1024",
        "SLUICE_PORT": "9000",
        "SLUICE_MODEL": "env.gguf",
        "SLUICE_STRICT_MODEL_NAMES": "yes",
    }
    config = Config.from_args(["--ctx-size", "2048", "--model", "cli.gguf"], env)
    assert config.ctx_size == 2048
    assert config.model == "cli.gguf"
    assert config.port == 9000
    assert config.strict_model_names is True


def test_cli_empty_optional_string_is_none() -> None:
    config = Config.from_args(["--chat-template", ""], {"SLUICE_CHAT_TEMPLATE": "chatml"})
    assert config.chat_template is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ctx-size", "big"], "invalid value for ctx_size: 'big'"),
        (["--port", "80.5"], "invalid value for port: '80.5'"),
        (["--heartbeat-interval", "soon"], "invalid value for heartbeat_interval: 'soon'"),
        (["--port"], "expected one argument"),
        (["--strict-model-names", "yes"], "unrecognized arguments"),
        (["--ctx_size", "1"], "unrecognized arguments"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["model.gguf"], "unrecognized arguments"),
    ],
)
def test_invalid_cli_exits_with_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        Config.from_args(argv, {})
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: sluice")
    assert message in err


def test_help_lists_the_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        Config.from_args(["--help"], {})
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in out


# --- values that reach llama.cpp ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "bad", "good"),
    [
        ("slots", 0, 1),
        ("slots", 257, 256),
        ("batch_size", 0, 1),
        ("batch_size", -5, 65536),  # -5 crashed llama.cpp (segmentation fault)
        ("batch_size", 65537, 512),
        ("ctx_size", -1, 0),
        ("kv_size", -1, 0),
        ("kv_size", 2**32 + 512, 2**31 - 1),  # would wrap to 512 cells in llama.cpp
        ("prefill_chunk", 0, 1),
        ("threads", -1, 0),
        ("threads", 513, 512),
        ("max_queue", -1, 0),
    ],
)
def test_values_llama_cpp_cannot_take_are_refused(name: str, bad: int, good: int) -> None:
    assert getattr(Config.from_mapping({name: str(good)}), name) == good
    with pytest.raises(ValueError, match=f"{name} must be .*, not {bad}"):
        Config.from_mapping({name: str(bad)})
    with pytest.raises(ValueError, match=name):
        Config.from_env({f"SLUICE_{name.upper()}": str(bad)})


def test_a_refused_value_on_the_command_line_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as caught:
        Config.from_args(["--slots", "0"], {})
    assert caught.value.code == 2
    assert "sluice: error: slots must be 1 to 256, not 0" in capsys.readouterr().err
