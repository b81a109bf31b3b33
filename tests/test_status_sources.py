"""Status from carrier emails and carrier status files, on both stores."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session

from extractors.message import ParsedMessage
from extractors.model import Customer, Extraction, Kind, ShipmentResult
from mailhandler.inbound import Envelope, store_inbound
from mailhandler.pipeline import Pipeline
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.status_files import (
    DropFolder,
    StatusFileError,
    import_status_file,
)
from mailhandler.store.models import (
    InboundMessage,
    Notification,
    Order,
    Shipment,
    TrackingEvent,
    utcnow,
)
from support import add_shipment

UPS_NUMBER = "1Z2345YY0678901234"
MAX_AGE = timedelta(hours=72)


class CarrierEmailExtractor:
    """Reads the kind and tracking number from the subject: 'kind NUMBER'."""

    def __call__(self, message: ParsedMessage) -> Extraction:
        kind, _, number = message.subject.partition(" ")
        return Extraction(
            kind=Kind(kind),
            shipments=[ShipmentResult(number, "ups", None)],
            customer=Customer("someone-else@example.com", "Someone Else"),
        )


def _carrier_email(kind: str, number: str, sender: str = "mcinfo@ups.com") -> bytes:
    return (
        f"From: UPS <{sender}>\r\nTo: Shop <orders@acme.example>\r\n"
        f"Subject: {kind} {number}\r\nMessage-ID: <{kind}.{number}@ups.com>\r\n"
        "\r\nbody\r\n"
    ).encode()


def _process(
    engine: Engine,
    tmp_path: Path,
    shop_id: int,
    raw: bytes,
    mail_from: str = "bounce@acme.example",
) -> int:
    # The default envelope sender is the shop's, as when its mailbox
    # forwards a carrier email.
    envelope = Envelope(mail_from, ["x"])
    message_id = store_inbound(engine, [shop_id], raw, envelope)[0].id
    pipeline = Pipeline(
        engine, Settings(data_dir=tmp_path), extract=CarrierEmailExtractor()
    )
    try:
        assert pipeline.claim(message_id)
        pipeline.process(message_id)
    finally:
        pipeline.close()
    return message_id


@pytest.fixture
def shop_id(engine: Engine) -> int:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    return shop.id


def _count(engine: Engine, model: type) -> int:
    with Session(engine) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_carrier_email_moves_existing_shipment(
    engine: Engine, tmp_path: Path, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, UPS_NUMBER, "ups")
    message_id = _process(
        engine, tmp_path, shop_id, _carrier_email("delivered", UPS_NUMBER)
    )
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        shipment = session.get(Shipment, shipment_id)
        order = session.get(Order, shipment.order_id if shipment else 0)
        updates = list(session.scalars(select(Notification)))
    assert message is not None
    assert message.state == "processed"
    assert message.sender_check == "carrier"
    assert message.sender_verified is True
    assert shipment is not None
    assert shipment.status == "delivered"
    assert [n.update for n in updates] == ["delivered"]
    # The carrier email's recipient never re-addresses the customer.
    assert order is not None
    assert order.customer_email == "customer@example.com"


def test_carrier_email_creates_nothing_new(
    engine: Engine, tmp_path: Path, shop_id: int
) -> None:
    _process(engine, tmp_path, shop_id, _carrier_email("delivered", "1Z999"))
    _process(
        engine, tmp_path, shop_id, _carrier_email("shipping_confirmation", "1Z998")
    )
    assert _count(engine, Order) == 0
    assert _count(engine, Shipment) == 0
    assert _count(engine, Notification) == 0


def test_unknown_sender_still_quarantined(
    engine: Engine, tmp_path: Path, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, UPS_NUMBER, "ups")
    raw = _carrier_email("delivered", UPS_NUMBER, sender="mcinfo@ups.com.evil.example")
    message_id = _process(engine, tmp_path, shop_id, raw, "b@evil.example")
    with Session(engine) as session:
        message = session.get(InboundMessage, message_id)
        shipment = session.get(Shipment, shipment_id)
    assert message is not None
    assert message.state == "quarantined"
    assert shipment is not None
    assert shipment.status == "pending"


def _csv(*rows: str) -> bytes:
    header = "tracking_number,carrier,status,occurred_at,location,raw_code,raw_text"
    return ("\n".join([header, *rows]) + "\n").encode()


def _recent(hours: float) -> str:
    return (utcnow() - timedelta(hours=hours)).isoformat(timespec="seconds")


def test_unknown_carrier_row_is_error(engine: Engine, shop_id: int) -> None:
    add_shipment(engine, shop_id, UPS_NUMBER, "ups")
    data = _csv(
        f"{UPS_NUMBER},UPS,delivered,{_recent(1)},,,",
        f"{UPS_NUMBER},nonsense,delivered,{_recent(1)},,,",
    )
    report = import_status_file(engine, data, "carriers.csv", MAX_AGE)
    assert report.rows == 2
    assert report.applied == 1
    assert report.unmatched == 0
    (error,) = report.errors
    assert error.startswith("unknown carrier 'nonsense' on line 3: use one of ")
    assert error.endswith(", or leave it empty")
    assert " ups, " in error


def test_status_file_rows_move_shipments(engine: Engine, shop_id: int) -> None:
    shipment_id = add_shipment(engine, shop_id, UPS_NUMBER, "ups")
    data = _csv(
        f"{UPS_NUMBER},ups,I,{_recent(5)},Wayne NJ,,Departed from facility",
        f"1z2345yy0678901234,ups,out_for_delivery,{_recent(2)},Wayne NJ,OT,Out",
        f"{UPS_NUMBER},ups,Q,{_recent(1)},,,",
        f"{UPS_NUMBER},ups,delivered,2026-13-01T10:00:00+00:00,,,",
        f"{UPS_NUMBER},ups,delivered,2026-09-01T10:00:00,,,",
        f"UNKNOWN1,ups,delivered,{_recent(1)},,,",
    )
    report = import_status_file(engine, data, "ups.csv", MAX_AGE)
    assert report.rows == 6
    assert report.applied == 2
    assert report.unmatched == 1
    assert report.errors == [
        "unknown status 'Q' for carrier ups on line 4: use a canonical status "
        "or a code of ups, usps, fedex, dhl_* or 17TRACK",
        "invalid time '2026-13-01T10:00:00+00:00' on line 5: use ISO 8601 "
        "with an offset, e.g. 2026-12-04T10:15:00+01:00",
        "time '2026-09-01T10:00:00' without a UTC offset on line 6: add one, "
        "e.g. 2026-12-04T10:15:00+01:00",
    ]
    with Session(engine) as session:
        shipment = session.get(Shipment, shipment_id)
        events = list(session.scalars(select(TrackingEvent)))
        updates = [n.update for n in session.scalars(select(Notification))]
    assert shipment is not None
    assert shipment.status == "out_for_delivery"
    assert {event.source for event in events} == {"file"}
    assert {event.raw_code for event in events} == {"I", "OT"}
    assert updates == ["shipped", "out_for_delivery"]
    # The same content again changes nothing.
    again = import_status_file(engine, data, "copy.csv", MAX_AGE)
    assert again.duplicate
    assert _count(engine, TrackingEvent) == 2


def test_status_file_without_header_fails(engine: Engine) -> None:
    with pytest.raises(StatusFileError, match="header row lacks"):
        import_status_file(engine, b"1Z,ups,delivered\n", "x.csv", MAX_AGE)
    with pytest.raises(StatusFileError, match="not UTF-8"):
        import_status_file(engine, b"\xff\xfe\x00", "y.csv", MAX_AGE)


def test_drop_folder_imports_complete_files_once(
    engine: Engine, tmp_path: Path, shop_id: int
) -> None:
    shipment_id = add_shipment(engine, shop_id, UPS_NUMBER, "ups")
    drop = tmp_path / "drop"
    drop.mkdir()
    folder = DropFolder(engine, drop, MAX_AGE)
    good = _csv(f"{UPS_NUMBER},ups,delivered,{_recent(1)},,,", "bad,row")
    (drop / "good.csv").write_bytes(good)
    (drop / "broken.csv").write_bytes(b"no header here\n")
    (drop / "upload.csv.part").write_bytes(b"half")
    # The first look only notes sizes: an upload may still be growing.
    assert folder.scan() == []
    time.sleep(0.01)
    reports = folder.scan()
    assert [report.name for report in reports] == ["good.csv"]
    assert sorted(p.name for p in (drop / "processed").iterdir()) == [
        "good.csv",
        "good.csv.errors",
    ]
    assert "line 3" in (drop / "processed" / "good.csv.errors").read_text()
    assert sorted(p.name for p in (drop / "failed").iterdir()) == [
        "broken.csv",
        "broken.csv.error",
    ]
    assert (drop / "upload.csv.part").exists()
    with Session(engine) as session:
        shipment = session.get(Shipment, shipment_id)
    assert shipment is not None
    assert shipment.status == "delivered"
    # The same file dropped again is recognised and not applied twice.
    (drop / "good.csv").write_bytes(good)
    folder.scan()
    assert folder.scan()[0].duplicate
    assert _count(engine, TrackingEvent) == 1
    assert _count(engine, Notification) == 1
