"""Two pollers and two notifiers on one PostgreSQL database.

They must never poll the same shipment at the same time and never send the
same update twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from carriers.fake_carrier import FakeCarrierServer, Reply
from mailhandler.carriers import CarrierRegistry
from mailhandler.notifier import Notifier
from mailhandler.outbound import SmtpBackend
from mailhandler.poller import Poller
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import Notification, NotificationState, Shipment
from support import add_shipment, guard_loopback, smtp_sink
from test_poller import IN_TRANSIT, PRE_TRANSIT, dhl_answer

SHIPMENTS = 24


@pytest.fixture(autouse=True)
def _loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    guard_loopback(monkeypatch)


def _pollers(
    engines: tuple[Engine, Engine], settings: Settings
) -> list[tuple[Poller, CarrierRegistry]]:
    pairs = []
    for engine in engines:
        registry = CarrierRegistry.from_settings(settings)
        for adapter in registry.adapters:
            adapter.min_interval = 0.0
        pairs.append((Poller(engine, settings, registry), registry))
    return pairs


def _run_pollers(pairs: list[tuple[Poller, CarrierRegistry]]) -> list[int]:
    async def drain(poller: Poller) -> int:
        claimed = 0
        for _ in range(50):
            done = await poller.poll_round()
            claimed += done.claimed
            if done.claimed == 0:
                break
        return claimed

    async def both() -> list[int]:
        try:
            return list(await asyncio.gather(*(drain(p) for p, _ in pairs)))
        finally:
            for _, registry in pairs:
                await registry.aclose()

    return asyncio.run(both())


def test_two_pollers_share_work_without_overlap(
    pg_engines: tuple[Engine, Engine], tmp_path: Path
) -> None:
    first, _ = pg_engines
    shop = add_shop(first, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    numbers = [f"0034043416109{index:07d}" for index in range(SHIPMENTS)]
    for index, number in enumerate(numbers):
        add_shipment(first, shop.id, number, "dhl_paket", order_number=str(index))

    server = FakeCarrierServer()
    server.start()
    try:
        settings = Settings(
            data_dir=tmp_path,
            intake_domain="bcc.test",
            dhl_base_url=server.url,
            dhl_api_key="key",
            poll_first_delay_minutes=0,
            poll_batch_size=4,
            lease_seconds=120,
        )
        # A slow answer widens the window in which a second poller could
        # take a shipment that the first one is still polling.
        server.reply("GET", "/track/shipments", _slow_reply(numbers[0]))
        claimed = _run_pollers(_pollers(pg_engines, settings))
        requested = Counter(
            r.query["trackingNumber"][0]
            for r in server.requests_to("GET", "/track/shipments")
        )
    finally:
        server.close()

    # Every shipment was polled exactly once, and both pollers took part.
    assert sum(claimed) == SHIPMENTS
    assert all(count > 0 for count in claimed)
    assert set(requested) == set(numbers)
    assert max(requested.values()) == 1
    with Session(first) as session:
        statuses = {s.status for s in session.scalars(select(Shipment))}
        updates = list(session.scalars(select(Notification)))
    assert statuses == {"in_transit"}
    assert len(updates) == SHIPMENTS
    assert len({(n.shipment_id, n.update) for n in updates}) == SHIPMENTS

    # Two notifiers on the same queue send each update exactly once.
    with smtp_sink() as (sink, port):
        notifiers = [
            Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
            for engine in pg_engines
        ]

        async def send_all(notifier: Notifier) -> int:
            sent = 0
            while notification_id := await asyncio.to_thread(notifier.claim_next):
                if await notifier.send(notification_id) == NotificationState.SENT:
                    sent += 1
            return sent

        async def both() -> list[int]:
            return list(await asyncio.gather(*(send_all(n) for n in notifiers)))

        counts = asyncio.run(both())
        received = sink.wait_for(SHIPMENTS, timeout=10)
    assert sum(counts) == SHIPMENTS
    assert len(received) == SHIPMENTS
    message_ids = Counter(str(r.message["Message-ID"]) for r in received)
    assert max(message_ids.values()) == 1


def _slow_reply(number: str) -> Reply:
    # The DHL adapter takes the answer's only shipment whatever its id, so
    # one programmed answer serves every number.
    answer: Any = dhl_answer(PRE_TRANSIT, IN_TRANSIT, number=number).json
    return Reply(json=answer, delay=0.05)
