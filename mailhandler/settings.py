"""The one settings schema of bcctrack.

Values come from, lowest priority first: the defaults below, a TOML file (the
path in ``BCCTRACK_CONFIG`` or ``--config``), ``BCCTRACK_*`` environment
variables, and command-line options. Names are flat so that a variable means
the same to every command.
"""

from __future__ import annotations

import logging
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

log = logging.getLogger("bcctrack.settings")

ENV_PREFIX = "BCCTRACK_"
CONFIG_ENV = "BCCTRACK_CONFIG"

Role = Literal["all", "intake", "worker", "poller", "web"]


class SettingsError(Exception):
    """A settings file or value is invalid."""


def default_data_dir() -> Path:
    """Return ``$XDG_DATA_HOME/bcctrack``, or ``~/.local/share/bcctrack``."""
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "bcctrack"


class Settings(BaseSettings):
    """Every setting, each with a default that works on a laptop."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", validate_default=True
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description=(
            "Folder for the SQLite database, the file outbox and the rule "
            "files; default: $XDG_DATA_HOME/bcctrack, else ~/.local/share/bcctrack."
        ),
    )
    db_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the store; default: SQLite file bcctrack.db in "
            "the data folder. PostgreSQL: postgresql+psycopg://user@host/db."
        ),
    )
    intake_host: str = Field(
        default="127.0.0.1", description="Address the SMTP listener binds to."
    )
    intake_port: int = Field(
        default=2525, ge=0, le=65535, description="Port of the SMTP listener."
    )
    intake_domain: str = Field(
        default="localhost", description="Domain of the shops' BCC addresses."
    )
    max_message_size: int = Field(
        default=50 * 1024 * 1024,
        gt=0,
        description="Largest accepted message in bytes, advertised as SMTP SIZE.",
    )
    max_recipients: int = Field(
        default=100, ge=1, description="Recipients accepted per message."
    )
    max_sessions: int = Field(
        default=200, ge=1, description="SMTP sessions open at once, all clients."
    )
    max_sessions_per_client: int = Field(
        default=20, ge=1, description="SMTP sessions open at once from one address."
    )
    max_concurrent_transfers: int = Field(
        default=10,
        ge=1,
        description=(
            "Messages received at once (SMTP DATA in progress); each needs up "
            "to about four times its size in memory while it is received."
        ),
    )
    max_transfers_per_client: int = Field(
        default=2,
        ge=1,
        description=(
            "Messages one client address may transfer at once, so that one "
            "client cannot take every transfer slot."
        ),
    )
    smtp_data_max_seconds: float = Field(
        default=1800.0,
        gt=0,
        description=(
            "Seconds one message's DATA may take in all, however steadily it "
            "trickles in (1800 s carries 50 MiB at 29 KiB/s)."
        ),
    )
    smtp_command_timeout: float = Field(
        default=300.0,
        gt=0,
        description="Seconds the listener waits for the next SMTP command.",
    )
    smtp_data_timeout: float = Field(
        default=600.0,
        gt=0,
        description=(
            "Seconds the listener waits for more message data during DATA; "
            "the wait restarts whenever data arrives, so a large message on a "
            "slow link still fits."
        ),
    )
    tls_cert_file: Path | None = Field(
        default=None, description="PEM certificate chain for STARTTLS."
    )
    tls_key_file: Path | None = Field(
        default=None, description="PEM private key for STARTTLS."
    )
    require_tls: bool = Field(
        default=False,
        description="Reject mail commands until the client has used STARTTLS.",
    )
    dkim_keys_file: Path | None = Field(
        default=None,
        description=(
            "File of DKIM keys consulted before DNS, one per line: "
            "<selector>._domainkey.<domain> <TXT record>."
        ),
    )
    outbound: str = Field(
        default="file",
        description=(
            "Where customer updates go: 'file' (.eml files in the data "
            "folder's outbox/) or an SMTP relay as smtp://host:port."
        ),
    )
    outbound_sender: str | None = Field(
        default=None,
        description=(
            "Envelope and From address of customer updates; default: "
            "updates@<intake domain>. The display name is the shop's name."
        ),
    )
    log_level: str = Field(default="INFO", description="Python logging level.")
    workers: int = Field(
        default=2, ge=1, le=64, description="Inbound messages processed at once."
    )
    processing_timeout: float = Field(
        default=60.0,
        gt=0,
        description="Seconds one message may take to parse and extract.",
    )
    processing_memory_limit: int = Field(
        default=2 * 1024 * 1024 * 1024,
        ge=0,
        description=(
            "Address-space limit in bytes of each parse-and-extract child "
            "process; 0 means no limit."
        ),
    )
    rules_dir: Path | None = Field(
        default=None,
        description=(
            "Folder of the shops' rule files (<slug>.toml, drafts "
            "<slug>.draft.toml); default: rules/ in the data folder."
        ),
    )
    rule_timeout: float = Field(
        default=0.2,
        gt=0,
        description="Seconds one regular expression of a shop rule may run.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="Attempts at one inbound message before it is failed.",
    )
    retry_delay: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds before a failed message is tried again; the wait doubles "
            "with each attempt, up to one hour."
        ),
    )
    lease_seconds: float = Field(
        default=300.0,
        gt=0,
        description=(
            "How long a claimed queue row stays with its process; after that, "
            "another process may take it over."
        ),
    )
    poll_interval: float = Field(
        default=1.0,
        gt=0,
        description="Seconds an idle worker or notifier waits before looking again.",
    )
    max_event_age_hours: float = Field(
        default=72.0,
        gt=0,
        description="Customer updates are not sent for events older than this.",
    )
    notify_max_attempts: int = Field(
        default=8,
        ge=1,
        description="Attempts at sending one notification before it is failed.",
    )

    @field_validator("outbound")
    @classmethod
    def _check_outbound(cls, value: str) -> str:
        if value == "file" or value.startswith("smtp://"):
            return value
        raise ValueError("use 'file' or 'smtp://host:port'")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in logging.getLevelNamesMapping():
            raise ValueError("use DEBUG, INFO, WARNING or ERROR")
        return upper

    @field_validator("unsubscribe_base_url")
    @classmethod
    def _check_unsubscribe_url(cls, value: str | None) -> str | None:
        if value is None or value.startswith("https://"):
            return value
        raise ValueError("use an https:// URL")

    @model_validator(mode="after")
    def _check_tls(self) -> Settings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "tls_cert_file and tls_key_file go together: set both or neither"
            )
        if self.require_tls and self.tls_cert_file is None:
            raise ValueError(
                "require_tls needs a certificate: set tls_cert_file and tls_key_file"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get(CONFIG_ENV)
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, Path(config_file)))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        """The store URL, with the SQLite default filled in."""
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.data_dir / 'bcctrack.db'}"

    @property
    def rules_folder(self) -> Path:
        """The folder of the shops' rule files."""
        return self.rules_dir or self.data_dir / "rules"

    @property
    def outbox_dir(self) -> Path:
        """The folder of the file outbox."""
        return self.data_dir / "outbox"

    @property
    def postmaster_dir(self) -> Path:
        """The folder of the messages received for postmaster."""
        return self.data_dir / "postmaster"

    @property
    def sender_address(self) -> str:
        """The address customer updates are sent from."""
        return self.outbound_sender or f"updates@{self.intake_domain}"

    # --- Carrier adapters (mailhandler.carriers) ----------------------------
    # Base URLs default to the carriers' production hosts, and credentials
    # default to empty. An adapter without credentials is not used, so its
    # carriers go to 17TRACK when 17TRACK has a key. Secrets are SecretStr,
    # which keeps them out of reprs and log lines.
    carrier_timeout: float = Field(
        default=20.0,
        gt=0,
        description="Seconds a carrier API request may take before it fails.",
    )
    dhl_base_url: str = Field(
        default="https://api-eu.dhl.com",
        description="Base URL of DHL Shipment Tracking - Unified.",
    )
    dhl_api_key: SecretStr = Field(
        default=SecretStr(""),
        description="DHL API key, sent as the DHL-API-Key header.",
    )
    ups_base_url: str = Field(
        default="https://onlinetools.ups.com",
        description="Base URL of the UPS APIs; https://wwwcie.ups.com to test.",
    )
    ups_client_id: str = Field(default="", description="UPS OAuth client id.")
    ups_client_secret: SecretStr = Field(
        default=SecretStr(""), description="UPS OAuth client secret."
    )
    fedex_base_url: str = Field(
        default="https://apis.fedex.com",
        description=(
            "Base URL of the FedEx APIs; https://apis-sandbox.fedex.com to test."
        ),
    )
    fedex_client_id: str = Field(
        default="", description="FedEx API key (OAuth client id)."
    )
    fedex_client_secret: SecretStr = Field(
        default=SecretStr(""), description="FedEx secret key (OAuth client secret)."
    )
    usps_base_url: str = Field(
        default="https://apis.usps.com",
        description="Base URL of the USPS APIs; https://apis-tem.usps.com to test.",
    )
    usps_client_id: str = Field(default="", description="USPS OAuth client id.")
    usps_client_secret: SecretStr = Field(
        default=SecretStr(""), description="USPS OAuth client secret."
    )
    seventeentrack_base_url: str = Field(
        default="https://api.17track.net",
        description="Base URL of the 17TRACK API.",
    )
    seventeentrack_api_key: SecretStr = Field(
        default=SecretStr(""),
        description="17TRACK API key, sent as the 17token header.",
    )

    # --- Poller, status files and opt-out (mailhandler.poller, .web) --------
    # The schedule below polls a new shipment soon, then less often the
    # further it is from delivery, and never after delivered, returned or
    # expired. Every interval is jittered by +-15 %.
    poll_batch_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Shipments one poller claims per round.",
    )
    poll_first_delay_minutes: float = Field(
        default=20.0,
        ge=0,
        description=(
            "Minutes between a shipment's creation and its first poll; DHL "
            "needs 10 to 30 minutes to know a new shipment."
        ),
    )
    poll_pending_hours: float = Field(
        default=6.0, gt=0, description="Hours between polls of a pending shipment."
    )
    poll_in_transit_hours: float = Field(
        default=4.0, gt=0, description="Hours between polls of a shipment in transit."
    )
    poll_out_for_delivery_hours: float = Field(
        default=1.0,
        gt=0,
        description="Hours between polls of a shipment out for delivery.",
    )
    poll_waiting_hours: float = Field(
        default=2.0,
        gt=0,
        description=(
            "Hours between polls of a shipment available for pickup or after "
            "a failed delivery attempt."
        ),
    )
    poll_exception_hours: float = Field(
        default=6.0,
        gt=0,
        description="Hours between polls of a shipment with an exception.",
    )
    poll_retry_delay: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Seconds before a poll that failed is tried again; the wait "
            "doubles with each failure, up to one hour."
        ),
    )
    expire_after_days: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Days without news after which a shipment becomes expired and is "
            "no longer polled."
        ),
    )
    credential_pause_minutes: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Minutes a carrier credential rests after the carrier rejected "
            "it; 'bcctrack carriers resume', new shop credentials, or a changed "
            "key at start end the pause earlier."
        ),
    )
    dhl_daily_quota: int = Field(
        default=250,
        ge=0,
        description=(
            "DHL calls per API key and UTC day (DHL's starter level is 250); "
            "0 means no limit."
        ),
    )
    status_drop_dir: Path | None = Field(
        default=None,
        description=(
            "Folder the poller watches for carrier status files (CSV); "
            "processed files move to processed/ or failed/ inside it. "
            "Unset: no folder is watched."
        ),
    )
    status_drop_scan_seconds: float = Field(
        default=30.0,
        gt=0,
        description=(
            "Seconds between two looks at the drop folder; a file is read "
            "only after its size has not changed for one such interval."
        ),
    )
    web_host: str = Field(
        default="127.0.0.1",
        description="Address the HTTP listener for one-click opt-outs binds to.",
    )
    web_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description=(
            "Port of the HTTP listener for one-click opt-outs, which serves "
            "/unsubscribe over plain HTTP to serve --role all or web; 0: no "
            "listener. Put a TLS reverse proxy in front of it whose https URL "
            "is unsubscribe_base_url."
        ),
    )
    web_timeout: float = Field(
        default=15.0,
        gt=0,
        description=(
            "Seconds the HTTP listener waits for a request's headers, for its "
            "body, and on an idle kept-alive connection."
        ),
    )
    unsubscribe_base_url: str | None = Field(
        default=None,
        description=(
            "https URL of the one-click opt-out endpoint (RFC 8058) that "
            "update emails link to with ?token=...; a TLS reverse proxy must "
            "forward it to /unsubscribe on web_host:web_port. Unset: the "
            "List-Unsubscribe header has only a mailto: address at the "
            "intake domain."
        ),
    )
    unsubscribe_secret: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "Key that signs opt-out links; empty: a random key is generated "
            "into the data folder's unsubscribe.key on first use. Processes "
            "that share a store must share the key."
        ),
    )


# Variables with the prefix that are not settings themselves.
_OTHER_VARIABLES = {CONFIG_ENV, "BCCTRACK_CORPUS", "BCCTRACK_TEST_POSTGRES_URL"}


def unknown_variables() -> list[str]:
    """Return BCCTRACK_* environment variables that name no setting.

    pydantic-settings ignores them, so a misspelt variable would otherwise
    change nothing without a word.
    """
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    return sorted(
        key
        for key in os.environ
        if key.upper().startswith(ENV_PREFIX)
        and key.upper() not in known
        and key.upper() not in _OTHER_VARIABLES
    )


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from file, environment and command-line overrides.

    ``config_file`` (the ``--config`` option) takes the place of
    ``BCCTRACK_CONFIG``. Overrides whose value is None are left out, so an
    option the user did not give does not hide the environment.
    """
    if config_file is not None:
        os.environ[CONFIG_ENV] = str(config_file)
    path = os.environ.get(CONFIG_ENV)
    if path and not Path(path).is_file():
        raise SettingsError(f"config file not found: {path}")
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"invalid TOML in config file {path}: {error}") from error
    except ValidationError as error:
        lines = [_describe(item, given, path) for item in error.errors()]
        raise SettingsError("\n".join(lines)) from error
    except ValueError as error:
        raise SettingsError(str(error)) from error


# Wording of common pydantic error types in a settings message.
_EXPECTED = {
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "int_type": "expected an integer",
    "float_parsing": "expected a number",
    "float_type": "expected a number",
    "bool_parsing": "expected true or false",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "path_type": "expected a path",
}


def _describe(error: ErrorDetails, given: dict[str, Any], path: str | None) -> str:
    """Return one line naming the variable, option or file key and the fix."""
    reason = _reason(error)
    if not error["loc"]:
        return f"invalid settings: {reason}"
    name = str(error["loc"][0])
    if error["type"] == "extra_forbidden":
        where = f" in {path}" if path else ""
        return f"unknown setting {name!r}{where}: 'bcctrack settings' lists the names"
    value = error.get("input")
    if name in given:
        return f"invalid option --{name.replace('_', '-')}={value!r}: {reason}"
    variable = ENV_PREFIX + name.upper()
    if any(key.upper() == variable for key in os.environ):
        return f"invalid setting {variable}={value!r}: {reason}"
    if path:
        return f"invalid setting {name} = {value!r} in {path}: {reason}"
    return f"invalid setting {variable}={value!r}: {reason}"


def _reason(error: ErrorDetails) -> str:
    kind = error["type"]
    context = error.get("ctx") or {}
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "greater_than_equal":
        return f"must be at least {context['ge']}"
    if kind == "greater_than":
        return f"must be greater than {context['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {context['le']}"
    if kind == "less_than":
        return f"must be less than {context['lt']}"
    if kind == "literal_error":
        return f"expected one of {context['expected']}"
    if kind == "value_error":
        return str(context.get("error", error["msg"]))
    message = error["msg"]
    return message[:1].lower() + message[1:]
