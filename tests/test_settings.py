"""Settings: defaults, TOML file, environment and command-line precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailhandler.cli.settings import settings_markdown
from mailhandler.settings import (
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
)
from support import cli_environment, run_cli


def test_defaults_work_on_a_laptop(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("BCCTRACK_CONFIG", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.data_dir == tmp_path / "bcctrack"
    assert settings.database_url == f"sqlite:///{tmp_path / 'bcctrack' / 'bcctrack.db'}"
    assert (settings.intake_host, settings.intake_port) == ("127.0.0.1", 2525)
    assert settings.intake_domain == "localhost"
    assert settings.outbound == "file"
    assert settings.outbox_dir == tmp_path / "bcctrack" / "outbox"
    assert settings.sender_address == "updates@localhost"


def test_file_then_environment_then_options(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "bcctrack.toml"
    config.write_text(
        'intake_port = 2600\nintake_domain = "from-file.example"\n'
        'outbound = "smtp://relay.example:25"\nmax_message_size = 1000\n'
    )
    monkeypatch.setenv("BCCTRACK_CONFIG", str(config))
    monkeypatch.setenv("BCCTRACK_INTAKE_PORT", "2700")
    monkeypatch.setenv("BCCTRACK_INTAKE_DOMAIN", "from-env.example")
    settings = load_settings(intake_port=2800, intake_host=None)
    assert settings.intake_port == 2800
    assert settings.intake_domain == "from-env.example"
    assert settings.outbound == "smtp://relay.example:25"
    assert settings.max_message_size == 1000
    assert settings.intake_host == "127.0.0.1"


def test_config_option_replaces_environment_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "a.toml").write_text("intake_port = 1111\n")
    (tmp_path / "b.toml").write_text("intake_port = 2222\n")
    monkeypatch.setenv("BCCTRACK_CONFIG", str(tmp_path / "a.toml"))
    assert load_settings(tmp_path / "b.toml").intake_port == 2222


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("intake_port = 70000\n", "intake_port = 70000 in .*: must be at most"),
        ('outbound = "relay.example"\n', "outbound = 'relay.example' in .*: use"),
        ("unknown_setting = 1\n", "unknown setting 'unknown_setting' in "),
        ("intake_port = [\n", "invalid TOML in config file .*bcctrack.toml"),
        ('log_level = "LOUD"\n', "log_level = 'LOUD' in .*: use DEBUG"),
    ],
)
def test_invalid_file_rejected_with_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str, message: str
) -> None:
    config = tmp_path / "bcctrack.toml"
    config.write_text(content)
    monkeypatch.setenv("BCCTRACK_CONFIG", str(config))
    with pytest.raises(SettingsError, match=message):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "WEB_PORT",
            "abc",
            "invalid setting BCCTRACK_WEB_PORT='abc': expected an integer",
        ),
        (
            "WEB_PORT",
            "-1",
            "invalid setting BCCTRACK_WEB_PORT='-1': must be at least 0",
        ),
        (
            "REQUIRE_TLS",
            "maybe",
            "BCCTRACK_REQUIRE_TLS='maybe': expected true or false",
        ),
        ("OUTBOUND", "relay", "BCCTRACK_OUTBOUND='relay': use 'file' or 'smtp://"),
    ],
)
def test_invalid_variable_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"BCCTRACK_{variable}", value)
    with pytest.raises(SettingsError) as raised:
        load_settings()
    assert message in str(raised.value)
    assert "pydantic" not in str(raised.value)
    assert "\n" not in str(raised.value)


def test_invalid_settings_one_line_each(tmp_path: Path) -> None:
    config = tmp_path / "bcctrack.toml"
    config.write_text('intake_port = "x"\nweb_port = 1\n')
    environment = cli_environment(
        tmp_path, config=str(config), web_port="abc", log_level="LOUD"
    )
    result = run_cli(environment, "settings", check=False)
    assert result.returncode != 0
    lines = result.stderr.removeprefix("Error: ").strip().splitlines()
    assert sorted(lines) == [
        "invalid setting BCCTRACK_LOG_LEVEL='LOUD': use DEBUG, INFO, WARNING or ERROR",
        "invalid setting BCCTRACK_WEB_PORT='abc': expected an integer",
        f"invalid setting intake_port = 'x' in {config}: expected an integer",
    ]
    assert "errors.pydantic.dev" not in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_rejected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("BCCTRACK_CONFIG", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsError, match="config file not found"):
        load_settings()


def test_every_setting_is_documented() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, f"setting {name} has no description"


def test_misspelt_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BCCTRACK_INTAKE_PROT", "2600")
    monkeypatch.setenv("BCCTRACK_INTAKE_PORT", "2601")
    assert unknown_variables() == ["BCCTRACK_INTAKE_PROT"]


def test_settings_reference_is_current() -> None:
    reference = (
        Path(__file__).resolve().parents[1] / "docs" / "settings.md"
    ).read_text()
    assert settings_markdown() in reference, (
        "docs/settings.md is out of date: regenerate its table with "
        "'bcctrack settings --markdown'"
    )
