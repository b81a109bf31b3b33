"""``bcctrack notifications``: list customer updates and retry failed ones."""

from __future__ import annotations

import click

from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.notifications import notification_reports, retry_notifications
from mailhandler.shops import ShopError, get_shop
from mailhandler.store.models import NotificationState


def _shop_id(state: CliState, slug: str | None) -> int | None:
    if slug is None:
        return None
    assert state.engine is not None
    try:
        return get_shop(state.engine, slug).id
    except ShopError as error:
        raise click.ClickException(str(error)) from error


@click.group(invoke_without_command=True)
@click.option(
    "--state",
    "state_filter",
    type=click.Choice([s.value for s in NotificationState]),
    default=None,
    help="Only notifications in this state.",
)
@click.option("--shop", "shop_slug", default=None, help="Only this shop's.")
@click.option(
    "--limit", type=int, default=None, help="At most this many, newest first."
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def notifications(
    context: click.Context,
    state_filter: str | None,
    shop_slug: str | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """List customer updates with their state and reason, newest first.

    'bcctrack notifications retry' queues failed ones again.
    """
    if context.invoked_subcommand is not None:
        return
    state = context.ensure_object(CliState)
    _, engine = state.open()
    _shop_id(state, shop_slug)
    for report in notification_reports(engine, state_filter, shop_slug, limit):
        if as_json:
            print_json_line(report)
            continue
        reason = f"  {report['reason']}" if report["reason"] else ""
        click.echo(
            f"{report['id']}  {report['shop']}  {report['update']}  "
            f"{report['state']}  {report['recipient']}  "
            f"{report['created_at']}{reason}"
        )


@notifications.command("retry")
@click.argument("notification_ids", nargs=-1, type=int)
@click.option("--failed", is_flag=True, help="All failed notifications.")
@click.option(
    "--unconfirmed",
    is_flag=True,
    help="All unconfirmed notifications; needs --allow-duplicate.",
)
@click.option("--shop", "shop_slug", default=None, help="Only this shop's.")
@click.option(
    "--allow-duplicate",
    is_flag=True,
    help=(
        "Also send notifications that the relay may already have: unconfirmed "
        "ones, and failed ones whose hand-over ended without a rejection. The "
        "customer may get such an update twice."
    ),
)
@pass_state
def retry(
    state: CliState,
    notification_ids: tuple[int, ...],
    failed: bool,
    unconfirmed: bool,
    shop_slug: str | None,
    allow_duplicate: bool,
) -> None:
    """Queue NOTIFICATION_IDS, or all failed ones, to be sent again.

    The notifier of 'bcctrack serve' sends them. A notification is retried
    only when it is failed or unconfirmed. One that may have reached the
    customer (every unconfirmed one) needs --allow-duplicate, because the
    customer may then get the update twice. The notifier still suppresses
    an update whose event is older than max_event_age_hours.
    """
    if not notification_ids and not failed and not unconfirmed:
        raise click.UsageError("give notification ids, --failed or --unconfirmed")
    if notification_ids and (failed or unconfirmed):
        raise click.UsageError("give either notification ids or --failed/--unconfirmed")
    if unconfirmed and not allow_duplicate:
        raise click.UsageError(
            "unconfirmed notifications may have reached the customer: add "
            "--allow-duplicate to send them again anyway"
        )
    _, engine = state.open()
    shop_id = _shop_id(state, shop_slug)
    states = [NotificationState.FAILED] if failed else []
    states += [NotificationState.UNCONFIRMED] if unconfirmed else []
    result = retry_notifications(
        engine,
        list(notification_ids) or None,
        [str(s) for s in states],
        shop_id,
        allow_duplicate,
    )
    for notification_id, reason in sorted(result.skipped.items()):
        click.echo(f"{notification_id}\tnot queued: {reason}", err=True)
    click.echo(f"{len(result.queued)} notifications queued")
    if result.skipped and notification_ids:
        raise SystemExit(1)
