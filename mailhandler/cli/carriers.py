"""``bcctrack carriers``: the call budget and pauses of carrier credentials."""

from __future__ import annotations

from typing import Any

import click

from mailhandler import carrier_accounts
from mailhandler.carriers.base import DEFAULT_CREDENTIAL
from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.reports import carrier_account_reports
from mailhandler.shop_credentials import ADAPTER_FIELDS
from mailhandler.shops import ShopError, get_shop


@click.group()
def carriers() -> None:
    """Show and resume the carrier credentials the poller uses.

    A credential is the configured one ('default') or a shop's own (named by
    the shop's slug). The carrier's rejection of a credential pauses it for
    credential_pause_minutes, and failed calls or a 429 delay its next call.
    """


@carriers.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_state
def list_(state: CliState, as_json: bool) -> None:
    """List each credential: pause, next call, errors and today's quota use."""
    settings, engine = state.open()
    for report in carrier_account_reports(engine, settings):
        if as_json:
            print_json_line(report)
        else:
            click.echo(account_line(report))


@carriers.command()
@click.argument("adapter", type=click.Choice(sorted(ADAPTER_FIELDS)))
@click.option(
    "--shop",
    "shop_slug",
    default=None,
    help="Resume this shop's own credential instead of the configured one.",
)
@pass_state
def resume(state: CliState, adapter: str, shop_slug: str | None) -> None:
    """End the pause and backoff of ADAPTER's credential.

    The shipments that wait for the credential are due at once. Fix the
    key first: a key the carrier rejects again is paused again.
    """
    _, engine = state.open()
    label = DEFAULT_CREDENTIAL
    if shop_slug is not None:
        try:
            label = get_shop(engine, shop_slug).slug
        except ShopError as error:
            raise click.ClickException(str(error)) from error
    done = carrier_accounts.resume(engine, adapter, label)
    state_text = "its pause ended" if done.was_paused else "it was not paused"
    click.echo(
        f"{adapter} credential {label!r} resumed: {state_text}; "
        f"{done.released} waiting shipment(s) due now"
    )


def account_line(report: dict[str, Any]) -> str:
    """Return one credential's report as the text of ``status`` and ``list``."""
    parts = []
    if report["paused_until"]:
        parts.append(f"paused until {report['paused_until']}")
    elif report["next_call_at"]:
        parts.append(f"next call at {report['next_call_at']}")
    else:
        parts.append("ready")
    if report["errors"]:
        parts.append(f"{report['errors']} failed call(s) in a row")
    if report["quota_limit"]:
        parts.append(f"{report['quota_used']} of {report['quota_limit']} calls today")
    else:
        parts.append(f"{report['quota_used']} calls today")
    if report["waiting_shipments"]:
        parts.append(f"{report['waiting_shipments']} shipment(s) waiting")
    line = f"{report['adapter']} {report['credential']}: {'; '.join(parts)}"
    if report["paused_until"]:
        command = f"bcctrack carriers resume {report['adapter']}"
        if report["credential"] != DEFAULT_CREDENTIAL:
            command += f" --shop {report['credential']}"
        line += (
            f"\n    why: {report['pause_reason']}"
            f"\n    fix the key, then '{command}' ends the pause"
        )
    return line
