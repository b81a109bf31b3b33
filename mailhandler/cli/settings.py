"""``bcctrack settings``: every setting with its variable, value and meaning."""

from __future__ import annotations

from typing import Any

import click
from pydantic import SecretStr

from mailhandler.cli.common import CliState, pass_state
from mailhandler.settings import ENV_PREFIX, Settings


def _shown(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "(set)" if value.get_secret_value() else ""
    if value is None:
        return ""
    return str(value)


def settings_table(settings: Settings | None = None) -> list[tuple[str, str, str, str]]:
    """Return (variable, default, value, description) for every setting."""
    rows = []
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "see description"
        else:
            default = _shown(field.default)
        value = _shown(getattr(settings, name)) if settings is not None else ""
        rows.append(
            (ENV_PREFIX + name.upper(), default, value, field.description or "")
        )
    return rows


def settings_markdown() -> str:
    """Return the settings reference as a Markdown table."""
    lines = [
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for variable, default, _, description in settings_table():
        shown = f"`{default}`" if default and default != "see description" else "-"
        lines.append(f"| `{variable}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"


@click.command("settings")
@click.option(
    "--markdown", is_flag=True, help="Print the reference table of docs/settings.md."
)
@pass_state
def settings_command(state: CliState, markdown: bool) -> None:
    """Print every setting: its variable, its value now, and what it sets.

    Secrets are shown as "(set)". In a TOML file the name is the variable
    without BCCTRACK_, in lower case.
    """
    if markdown:
        click.echo(settings_markdown(), nl=False)
        return
    settings = state.load()
    for variable, _, value, description in settings_table(settings):
        click.echo(f"{variable}={value}")
        click.echo(f"    {description}")
