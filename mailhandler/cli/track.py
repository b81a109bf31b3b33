"""``bcctrack track``: poll one tracking number now and print its events."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta
from typing import Any

import click
from sqlalchemy import Engine, func, select
from sqlmodel import col

from extractors.carriers import carriers
from mailhandler import carrier_accounts
from mailhandler.carriers import (
    CarrierError,
    CarrierRegistry,
    TrackingRequest,
    TrackingResult,
)
from mailhandler.carriers.base import DEFAULT_CREDENTIAL
from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.poller import NotPolled, Poller, poll_shipment
from mailhandler.polls import PollLeasedError
from mailhandler.settings import Settings
from mailhandler.store import transaction
from mailhandler.store.models import (
    Shipment,
    ShipmentPoll,
    Shop,
    TrackingEvent,
    utcnow,
)

# The maximum wait for a call slot when looking up a number that is not stored.
_MAX_WAIT = timedelta(seconds=60)


@click.command()
@click.argument("number")
@click.option(
    "--carrier", default=None, help="Carrier slug, for a number not in the store."
)
@click.option("--shop", "shop_slug", default=None, help="Only this shop's shipment.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per shipment.")
@pass_state
def track(
    state: CliState,
    number: str,
    carrier: str | None,
    shop_slug: str | None,
    as_json: bool,
) -> None:
    """Poll tracking NUMBER now and print its events, oldest first.

    A number in the store is polled like the poller would (new events are
    stored and may queue customer updates), unless it is delivered,
    returned or expired; any other number is looked up at the carrier
    without storing anything. Exits with 1 when a stored shipment could not
    be polled now; the output says why.
    """
    key = re.sub(r"\s+", "", number).upper()
    if not key:
        raise click.BadParameter(
            "the tracking number is empty: give it as the carrier prints it",
            param_hint="NUMBER",
        )
    if carrier is not None:
        carrier = _known_carrier(carrier)
    settings, engine = state.open()
    shipment_ids = _shipments(engine, key, shop_slug)
    if shipment_ids:
        reports = asyncio.run(_poll_stored(engine, settings, shipment_ids))
    else:
        reports = [asyncio.run(_look_up(engine, settings, key, carrier))]
    for report in reports:
        if as_json:
            print_json_line(report)
        else:
            _print(report)
    if any(report["not_polled"] for report in reports):
        raise SystemExit(1)


def _known_carrier(slug: str) -> str:
    known = sorted({*carriers(), "other"})
    cleaned = slug.strip().lower()
    if cleaned not in known:
        raise click.BadParameter(
            f"unknown carrier {slug!r}: use one of {', '.join(known)}",
            param_hint="'--carrier'",
        )
    return cleaned


def _shipments(engine: Engine, key: str, shop_slug: str | None) -> list[int]:
    query = select(col(Shipment.id)).where(
        func.upper(col(Shipment.tracking_number)) == key
    )
    if shop_slug is not None:
        query = query.join(Shop, col(Shop.id) == Shipment.shop_id).where(
            col(Shop.slug) == shop_slug
        )
    with transaction(engine) as session:
        return [found for found in session.scalars(query) if found is not None]


async def _poll_stored(
    engine: Engine, settings: Settings, shipment_ids: list[int]
) -> list[dict[str, Any]]:
    registry = CarrierRegistry.from_settings(settings)
    poller = Poller(engine, settings, registry)
    not_polled: dict[int, NotPolled] = {}
    try:
        for shipment_id in shipment_ids:
            try:
                done = await poll_shipment(poller, shipment_id)
            except PollLeasedError as error:
                again = f"{error}; run the command again after that"
                not_polled[shipment_id] = NotPolled(again)
                continue
            not_polled.update(done.not_polled)
    finally:
        await registry.aclose()
    reports = []
    for shipment_id in shipment_ids:
        report = await asyncio.to_thread(_stored_report, engine, shipment_id)
        note = not_polled.get(shipment_id)
        report["not_polled"] = note.reason if note else None
        report["resume"] = (
            _resume_command(*note.paused) if note and note.paused else None
        )
        reports.append(report)
    return reports


def _resume_command(adapter: str, credential: str) -> str:
    command = f"bcctrack carriers resume {adapter}"
    if credential != DEFAULT_CREDENTIAL:
        command += f" --shop {credential}"
    return command


def _stored_report(engine: Engine, shipment_id: int) -> dict[str, Any]:
    with transaction(engine) as session:
        shipment = session.get(Shipment, shipment_id)
        assert shipment is not None
        shop = session.get(Shop, shipment.shop_id)
        poll = session.scalars(
            select(ShipmentPoll).where(col(ShipmentPoll.shipment_id) == shipment_id)
        ).first()
        events = list(
            session.scalars(
                select(TrackingEvent)
                .where(col(TrackingEvent.shipment_id) == shipment_id)
                .order_by(col(TrackingEvent.occurred_at), col(TrackingEvent.id))
            )
        )
    return {
        "shipment_id": shipment_id,
        "shop": shop.slug if shop else None,
        "tracking_number": shipment.tracking_number,
        "carrier": shipment.carrier,
        "status": shipment.status,
        "adapter": poll.adapter if poll else None,
        "error": poll.last_error if poll else None,
        "next_poll": _time(poll.next_attempt_at)
        if poll and poll.state == "active"
        else None,
        "events": [
            {
                "occurred_at": _time(event.occurred_at),
                "status": event.status,
                "raw_code": event.raw_code,
                "raw_text": event.raw_text,
                "location": event.location,
                "source": event.source,
            }
            for event in events
        ],
    }


async def _look_up(
    engine: Engine, settings: Settings, key: str, carrier: str | None
) -> dict[str, Any]:
    registry = CarrierRegistry.from_settings(settings)
    try:
        route = registry.route(carrier)
        if route is None:
            raise click.ClickException(
                f"no carrier adapter with credentials for {carrier or 'other'}: "
                "configure one (see docs/carriers.md)"
            )
        adapter = route.adapter
        # The look-up spends a call of the budget the pollers share.
        reservation = await asyncio.to_thread(
            carrier_accounts.reserve_call,
            engine,
            adapter.name,
            DEFAULT_CREDENTIAL,
            adapter.min_interval,
            carrier_accounts.daily_quota(adapter.name, settings),
            _MAX_WAIT,
        )
        if reservation.at is None:
            assert reservation.blocked_until is not None
            hint = ""
            if reservation.paused:
                command = _resume_command(adapter.name, DEFAULT_CREDENTIAL)
                hint = f"; fix the key, then '{command}' ends the pause"
            raise click.ClickException(
                f"{adapter.name} credential {DEFAULT_CREDENTIAL!r} not used until "
                f"{_time(reservation.blocked_until)}: {reservation.reason}{hint}"
            )
        wait = (reservation.at - utcnow()).total_seconds()
        if wait > 0:
            await asyncio.sleep(wait)
        request = TrackingRequest(key, carrier or "other", route.credentials)
        try:
            result = (await adapter.track([request]))[0]
        except CarrierError as error:
            raise click.ClickException(str(error)) from error
        return _lookup_report(result, carrier, adapter.name)
    finally:
        await registry.aclose()


def _lookup_report(
    result: TrackingResult, carrier: str | None, adapter: str
) -> dict[str, Any]:
    return {
        "shipment_id": None,
        "shop": None,
        "tracking_number": result.number,
        "carrier": carrier,
        "status": result.status,
        "adapter": adapter,
        "error": result.error or (None if result.found else "not found"),
        "next_poll": None,
        "not_polled": None,
        "resume": None,
        "events": [
            {
                "occurred_at": _time(event.occurred_at),
                "status": event.status,
                "raw_code": event.raw_code,
                "raw_text": event.raw_text,
                "location": event.location,
                "source": adapter,
            }
            for event in result.events
        ],
    }


def _time(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _print(report: dict[str, Any]) -> None:
    where = (
        f"shipment {report['shipment_id']}" if report["shipment_id"] else "not stored"
    )
    click.echo(
        f"{report['tracking_number']}  {report['carrier'] or 'unknown carrier'}  "
        f"{report['status']}  ({where}, via {report['adapter'] or 'no adapter'})"
    )
    if report["not_polled"]:
        click.echo(f"  not polled now: {report['not_polled']}")
        if report["resume"]:
            click.echo(f"  fix the key, then '{report['resume']}' ends the pause")
    if report["error"] and report["error"] != report["not_polled"]:
        click.echo(f"  note: {report['error']}")
    for event in report["events"]:
        click.echo(
            f"  {event['occurred_at']}  {event['status']:<20}  "
            f"{event['raw_code'] or '-'}  {event['raw_text'] or ''}"
            f"{'  @ ' + event['location'] if event['location'] else ''}"
        )
    if report["next_poll"]:
        click.echo(f"  next poll: {report['next_poll']}")
