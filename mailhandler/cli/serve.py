"""``bcctrack serve``."""

from __future__ import annotations

import asyncio

import click

from mailhandler.cli.common import CliState, pass_state
from mailhandler.service import serve as run_service


@click.command()
@click.option("--intake-host", default=None, help="Address the SMTP listener binds to.")
@click.option(
    "--intake-port", type=int, default=None, help="Port of the SMTP listener."
)
@click.option(
    "--outbound",
    default=None,
    help="Where customer updates go: 'file' or smtp://host:port.",
)
@click.option("--db-url", default=None, help="SQLAlchemy URL of the store.")
@click.option(
    "--role",
    type=click.Choice(["all", "intake", "worker", "poller"]),
    default="all",
    show_default=True,
    help=(
        "intake: SMTP only; worker: pipeline and notifier; poller: carrier "
        "polling and the status drop folder; all: every part."
    ),
)
@pass_state
def serve(
    state: CliState,
    intake_host: str | None,
    intake_port: int | None,
    outbound: str | None,
    db_url: str | None,
    role: str,
) -> None:
    """Receive BCC copies, follow the parcels and send customer updates."""
    settings, engine = state.open(
        intake_host=intake_host,
        intake_port=intake_port,
        outbound=outbound,
        db_url=db_url,
    )
    click.echo(
        f"bcctrack {role}: store {engine.url.render_as_string(hide_password=True)}",
        err=True,
    )
    try:
        asyncio.run(run_service(engine, settings, role))  # type: ignore[arg-type]
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {settings.intake_host}:{settings.intake_port}: {error}"
        ) from error
