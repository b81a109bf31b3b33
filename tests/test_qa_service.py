"""Defects found in QA in the pipeline, outbound messages and commands.

Each test fails until its defect is fixed.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from mailhandler.inbound import Envelope, store_inbound
from mailhandler.outbound import Envelope as OutboundEnvelope
from mailhandler.outbound import build_message
from mailhandler.pipeline import Pipeline
from mailhandler.render import RenderedUpdate
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store.models import Notification, Shipment, ShipmentStatus
from support import cli_environment, run_cli

SHIPPED_WITH_HINT = (
    b"From: Acme <orders@shop.example>\r\nTo: Dana Doe <dana@example.com>\r\n"
    b"Subject: Your order #20001 is on its way\r\n"
    b"Message-ID: <hint-20001@shop.example>\r\n\r\n"
    b"Hi Dana,\r\nyour order #20001 is on its way with UPS.\r\n"
    b"Tracking number: 1Z12345E6678912343\r\n"
    b"If your package was delivered but you can't find it, contact us.\r\n"
)


def test_delivery_hint_keeps_shipped_update(engine: Engine, tmp_path: Path) -> None:
    shop = add_shop(engine, "acme", "Acme", ["shop.example"])
    assert shop.id is not None
    envelope = Envelope(mail_from="orders@shop.example", rcpt_tos=["x"])
    store_inbound(engine, [shop.id], SHIPPED_WITH_HINT, envelope)
    pipeline = Pipeline(engine, Settings(data_dir=tmp_path))
    try:
        message_id = pipeline.claim_next()
        assert message_id is not None
        pipeline.process(message_id)
    finally:
        pipeline.close()
    with Session(engine) as session:
        shipment = session.scalars(select(Shipment)).one()
        updates = [n.update for n in session.scalars(select(Notification))]
    assert shipment.status == ShipmentStatus.PENDING
    assert updates == ["shipped"]


def test_update_to_non_ascii_address_builds() -> None:
    rendered = RenderedUpdate(
        subject="Shipped", text="t", html="<p>t</p>", language="de"
    )
    envelope = OutboundEnvelope(
        sender_address="updates@localhost",
        sender_name="Acme",
        recipient_address="zoë@exämple.com",
        recipient_name="Zoë",
        message_id="<bcctrack.1.shipped@localhost>",
    )
    message = build_message(rendered, envelope)
    assert "zoë@exämple.com" in str(message["To"])


def test_reprocess_unknown_id_fails(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path)
    result = run_cli(environment, "reprocess", "9999", check=False)
    assert result.returncode != 0


def test_shop_address_local_part_fits_smtp(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path)
    result = run_cli(
        environment,
        "shop",
        "add",
        "a" * 64,
        "--name",
        "Long",
        "--sender-domain",
        "long.example",
        check=False,
    )
    if result.returncode == 0:
        local_part = result.stdout.splitlines()[0].split("@")[0]
        assert len(local_part) <= 64
