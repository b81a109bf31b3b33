"""``bcctrack serve``."""

from __future__ import annotations

import asyncio

import click

from mailhandler.cli.common import CliState, pass_state
from mailhandler.service import serve as run_service
from mailhandler.web import WebListenerError


@click.command()
@click.option("--intake-host", default=None, help="Address the SMTP listener binds to.")
@click.option(
    "--intake-port", type=int, default=None, help="Port of the SMTP listener."
)
@click.option(
    "--web-host",
    default=None,
    help="Address the HTTP listener for one-click opt-outs binds to.",
)
@click.option(
    "--web-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port of the HTTP listener for one-click opt-outs; 0: no listener.",
)
@click.option(
    "--outbound",
    default=None,
    help="Where customer updates go: 'file' or smtp://host:port.",
)
@click.option("--db-url", default=None, help="SQLAlchemy URL of the store.")
@click.option(
    "--role",
    type=click.Choice(["all", "intake", "worker", "poller", "web"]),
    default="all",
    show_default=True,
    help=(
        "intake: SMTP only; worker: pipeline and notifier; poller: carrier "
        "polling and the status drop folder; web: the HTTP listener for "
        "one-click opt-outs; all: every part (the HTTP listener only when "
        "the web port is set)."
    ),
)
@pass_state
def serve(
    state: CliState,
    intake_host: str | None,
    intake_port: int | None,
    web_host: str | None,
    web_port: int | None,
    outbound: str | None,
    db_url: str | None,
    role: str,
) -> None:
    """Receive BCC copies, follow the parcels and send customer updates."""
    settings = state.load(
        intake_host=intake_host,
        intake_port=intake_port,
        web_host=web_host,
        web_port=web_port,
        outbound=outbound,
        db_url=db_url,
    )
    if role == "web" and not settings.web_port:
        raise click.ClickException(
            "--role web needs a port: set --web-port or BCCTRACK_WEB_PORT"
        )
    settings, engine = state.open()
    click.echo(
        f"bcctrack {role}: store {engine.url.render_as_string(hide_password=True)}",
        err=True,
    )
    try:
        asyncio.run(run_service(engine, settings, role))  # type: ignore[arg-type]
    except WebListenerError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(
            f"cannot listen on {settings.intake_host}:{settings.intake_port}: {error}"
        ) from error
