"""Shared command parts: settings, the store and error reporting."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine

from mailhandler.logs import configure_logging
from mailhandler.settings import (
    Settings,
    SettingsError,
    load_settings,
    unknown_variables,
)
from mailhandler.store import StoreError, open_store

log = logging.getLogger("bcctrack.settings")


@dataclass
class CliState:
    """The global options, and the settings and store once loaded."""

    config: Path | None = None
    settings: Settings | None = None
    engine: Engine | None = field(default=None, repr=False)

    def load(self, **overrides: Any) -> Settings:
        """Load the settings with this command's options; exit on an error."""
        try:
            self.settings = load_settings(self.config, **overrides)
        except SettingsError as error:
            raise click.ClickException(str(error)) from error
        configure_logging(self.settings.log_level)
        for variable in unknown_variables():
            log.warning(
                "unknown setting %s ignored: 'bcctrack settings' lists the names",
                variable,
            )
        return self.settings

    def open(self, **overrides: Any) -> tuple[Settings, Engine]:
        """Load the settings and open (and migrate) the store."""
        settings = self.settings or self.load(**overrides)
        try:
            self.engine = open_store(settings.database_url)
        except StoreError as error:
            raise click.ClickException(str(error)) from error
        return settings, self.engine


pass_state = click.make_pass_decorator(CliState, ensure=True)


def print_json_line(value: Any) -> None:
    """Write ``value`` as one line of JSON to standard output."""
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")
