"""``bcctrack reprocess``: run the pipeline again on stored messages."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state
from mailhandler.pipeline import Pipeline, requeue
from mailhandler.shops import ShopError, get_shop
from mailhandler.store.models import InboundState


@click.command()
@click.argument("message_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="All failed messages.")
@click.option("--quarantined", is_flag=True, help="All quarantined messages.")
@click.option("--shop", "shop_slug", default=None, help="Only this shop's messages.")
@click.option(
    "--queue-only",
    is_flag=True,
    help="Queue the messages for the running service instead of processing here.",
)
@pass_state
def reprocess(
    state: CliState,
    message_ids: tuple[int, ...],
    failed: bool,
    quarantined: bool,
    shop_slug: str | None,
    queue_only: bool,
) -> None:
    """Run the pipeline again on MESSAGE_IDS, or on all failed or quarantined ones.

    Customer updates that this queues are sent by the notifier of
    'bcctrack serve'.
    """
    if not message_ids and not failed and not quarantined:
        raise click.UsageError("give message ids, --failed or --quarantined")
    if message_ids and (failed or quarantined):
        raise click.UsageError("give either message ids or --failed/--quarantined")
    settings, engine = state.open()
    shop_id = None
    if shop_slug is not None:
        try:
            shop_id = get_shop(engine, shop_slug).id
        except ShopError as error:
            raise click.ClickException(str(error)) from error

    states = None
    if failed or quarantined:
        states = [InboundState.FAILED] if failed else []
        states += [InboundState.QUARANTINED] if quarantined else []
    pipeline = None
    if not queue_only:
        pipeline = Pipeline(engine, settings.model_copy(update={"workers": 1}))
    try:
        queued = requeue(
            engine, list(message_ids) or None, states, shop_id, claim_for=pipeline
        )
        missing = sorted(set(message_ids) - set(queued))
        for message_id in missing:
            click.echo(
                f"{message_id}\tnot queued: not found, or a worker holds it", err=True
            )
        if pipeline is None or not queued:
            click.echo(f"{len(queued)} messages queued")
        else:
            for message_id in queued:
                _process(pipeline, message_id)
    finally:
        if pipeline is not None:
            pipeline.close()
    if missing:
        raise SystemExit(1)


def _process(pipeline: Pipeline, message_id: int) -> None:
    # Messages leased at requeue wait for their turn here; a lease that ran
    # out meanwhile lets a running service take the message instead.
    outcome = pipeline.process(message_id) if pipeline.renew(message_id) else None
    if outcome is None:
        click.echo(f"{message_id}\ttaken over by another process")
        return
    reason = f"\t{outcome.reason}" if outcome.reason else ""
    click.echo(f"{message_id}\t{outcome.state}{reason}")
