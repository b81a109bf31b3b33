"""A corpus shipping email followed to delivered against a local DHL server.

The email goes in over real SMTP and through the real pipeline and
extractors, which must find its labelled order, tracking number, carrier and
customer. The poller then walks the shipment through DHL's answers, and the
relay, a real aiosmtpd sink, must receive one email per change, in the
email's language.
"""

from __future__ import annotations

import smtplib
from email.utils import parseaddr
from pathlib import Path

from sqlalchemy import Engine, select
from sqlmodel import Session

from carriers.fake_carrier import FakeCarrierServer
from mailhandler.notifier import Notifier
from mailhandler.outbound import SmtpBackend
from mailhandler.pipeline import Pipeline
from mailhandler.shops import add_shop, bcc_address
from mailhandler.store.models import Order, Shipment
from support import crlf, running_intake, smtp_sink
from test_poller import (
    DELIVERED,
    DHL_PATH,
    IN_TRANSIT,
    OUT_FOR_DELIVERY,
    PRE_TRANSIT,
    dhl_answer,
    make_due,
    make_poller,
    make_settings,
    run_round,
    send_all,
)

CORPUS_FILE = "rendered/prestashop_de_in_transit_1.eml"


def test_corpus_shipment_followed_to_delivered(
    engine: Engine,
    tmp_path: Path,
    carrier_server: FakeCarrierServer,
    corpus_dir: Path,
    corpus_labels: list[dict[str, str]],
) -> None:
    [label] = [row for row in corpus_labels if row["path"] == CORPUS_FILE]
    assert label["carrier"] == "dhl_paket"
    raw = (corpus_dir / CORPUS_FILE).read_bytes()
    sender = next(
        parseaddr(line[5:])[1]
        for line in raw.decode("utf-8", "replace").splitlines()
        if line.lower().startswith("from:")
    )
    shop = add_shop(engine, "presta", "Presta Shop", [sender.rpartition("@")[2]])
    settings = make_settings(tmp_path, carrier_server, intake_port=0)
    number = label["tracking_numbers"]

    with (
        running_intake(engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port, timeout=10) as client,
    ):
        client.sendmail(sender, [bcc_address(shop, settings.intake_domain)], crlf(raw))
    pipeline = Pipeline(engine, settings)
    try:
        message_id = pipeline.claim_next()
        assert message_id is not None
        outcome = pipeline.process(message_id)
    finally:
        pipeline.close()
    assert outcome is not None
    assert outcome.state == "processed"
    with Session(engine) as session:
        extracted = session.scalars(select(Shipment)).one()
        order = session.get(Order, extracted.order_id)
    assert extracted.tracking_number == number
    assert extracted.carrier == "dhl_paket"
    assert order is not None
    assert order.order_number == label["order_number"]
    assert order.customer_email == label["customer_email"]

    steps = [
        ((PRE_TRANSIT,), "pending", "wurde versandt"),
        ((PRE_TRANSIT, IN_TRANSIT), "in_transit", None),
        (
            (PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY),
            "out_for_delivery",
            "kommt heute",
        ),
        (
            (PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY, DELIVERED),
            "delivered",
            "wurde zugestellt",
        ),
    ]
    with smtp_sink() as (sink, sink_port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", sink_port))
        expected = 0
        for events, status, subject in steps:
            carrier_server.reply("GET", DHL_PATH, dhl_answer(*events, number=number))
            make_due(engine)
            run_round(make_poller(engine, settings))
            with Session(engine) as session:
                shipment = session.scalars(select(Shipment)).one()
            assert shipment.tracking_number == number
            assert shipment.status == status
            send_all(notifier)
            expected += subject is not None
            received = sink.wait_for(expected, timeout=5)
            assert len(received) == expected
            if subject is not None:
                email = received[-1].message
                assert subject in str(email["Subject"])
                assert label["order_number"] in str(email["Subject"])
                assert email["Content-Language"] == "de"
                assert received[-1].rcpt_tos == [label["customer_email"]]
    assert [r.query["service"] for r in carrier_server.requests] == [["parcel-de"]] * 4
