"""One-click opt-out over HTTP: the listener of ``bcctrack serve`` on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session, col

from carriers.fake_carrier import FakeCarrierServer
from mailhandler import web
from mailhandler.notifier import Notifier
from mailhandler.optout import list_opt_outs, make_token, signing_key
from mailhandler.outbound import SmtpBackend
from mailhandler.settings import Settings
from mailhandler.shops import add_shop
from mailhandler.store import open_store, transaction
from mailhandler.store.models import (
    Notification,
    NotificationState,
    Shipment,
    utcnow,
)
from support import (
    add_shipment,
    cli_environment,
    free_port,
    run_cli,
    running_web,
    serving,
    smtp_sink,
    wait_until,
)
from test_poller import (
    DHL_PATH,
    IN_TRANSIT,
    NUMBER,
    OUT_FOR_DELIVERY,
    PRE_TRANSIT,
    dhl_answer,
    make_due,
    make_poller,
    make_settings,
    run_round,
    send_all,
)

BASE_URL = "https://bcc.test/unsubscribe"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
# A shop name with HTML in it: the pages must show it as text.
SHOP_NAME = 'Acme <b>"Outdoor"</b> & Co'


def _settings(tmp_path: Path, **values: object) -> Settings:
    defaults: dict[str, object] = {
        "data_dir": tmp_path,
        "intake_domain": "bcc.test",
        "unsubscribe_base_url": BASE_URL,
        "web_port": 0,
    }
    return Settings(**{**defaults, **values})  # type: ignore[arg-type]


def _pending_notification(engine: Engine, recipient: str = "chris@example.com") -> int:
    """Store a shop, a shipment and a pending notification; return its id."""
    shop = add_shop(engine, "acme", SHOP_NAME, ["acme.example"])
    assert shop.id is not None
    shipment_id = add_shipment(engine, shop.id, NUMBER, "dhl_paket", recipient)
    with transaction(engine) as session:
        shipment = session.get(Shipment, shipment_id)
        assert shipment is not None
        notification = Notification(
            shop_id=shop.id,
            order_id=shipment.order_id,
            shipment_id=shipment_id,
            update="shipped",
            recipient=recipient,
            event_at=utcnow(),
        )
        session.add(notification)
        session.flush()
        assert notification.id is not None
        return notification.id


def _state_of(engine: Engine, notification_id: int) -> str:
    with Session(engine) as session:
        notification = session.get(Notification, notification_id)
        assert notification is not None
        return notification.state


@dataclass(frozen=True)
class StoredUpdate:
    """A pending notification, its opt-out token and the settings that sign it."""

    settings: Settings
    notification_id: int
    token: str


@pytest.fixture
def stored(engine: Engine, tmp_path: Path) -> StoredUpdate:
    settings = _settings(tmp_path)
    notification_id = _pending_notification(engine)
    token = make_token(signing_key(settings), notification_id)
    return StoredUpdate(settings, notification_id, token)


def _url(port: int) -> str:
    return f"http://127.0.0.1:{port}{web.UNSUBSCRIBE_PATH}"


def test_one_click_post_stops_later_updates(
    engine: Engine, tmp_path: Path, carrier_server: FakeCarrierServer
) -> None:
    shop = add_shop(engine, "acme", "Acme", ["acme.example"])
    assert shop.id is not None
    add_shipment(
        engine, shop.id, NUMBER, "dhl_paket", customer_email="Chris@Example.com"
    )
    settings = make_settings(
        tmp_path, carrier_server, intake_port=0, unsubscribe_base_url=BASE_URL
    )
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        carrier_server.reply("GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT))
        run_round(make_poller(engine, settings))
        send_all(notifier)
        [first] = sink.wait_for(1)
        assert first.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        links = str(first.message["List-Unsubscribe"]).split(",")
        [link] = [part.strip(" <>") for part in links if "https://" in part]
        assert link.startswith(BASE_URL + "?token=")
        [token] = parse_qs(urlsplit(link).query)["token"]

        with running_web(engine, settings) as web_port:
            # As a mail provider sends it: the link's query, the RFC 8058 body.
            url = _url(web_port) + "?" + urlsplit(link).query
            answer = httpx.post(url, data=ONE_CLICK)
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"].startswith("text/plain")
            assert "Opt-out recorded" in answer.text
            again = httpx.post(url, data=ONE_CLICK)
            assert again.status_code == 200, again.text
        assert token not in answer.text
        [entry] = list_opt_outs(engine, "acme")
        assert entry.address == "chris@example.com"
        assert entry.source == "url"

        carrier_server.reply(
            "GET", DHL_PATH, dhl_answer(PRE_TRANSIT, IN_TRANSIT, OUT_FOR_DELIVERY)
        )
        make_due(engine)
        run_round(make_poller(engine, settings))
        assert asyncio.run(asyncio.to_thread(notifier.claim_next)) is None
        assert sink.wait_for(2, timeout=1) == [first]
    with Session(engine) as session:
        later = session.scalars(
            select(Notification).where(col(Notification.update) == "out_for_delivery")
        ).one()
    assert later.state == NotificationState.SUPPRESSED
    assert later.reason == "recipient opted out"


def test_get_shows_form_and_records_nothing(
    engine: Engine, stored: StoredUpdate
) -> None:
    with running_web(engine, stored.settings) as port:
        page = httpx.get(_url(port), params={"token": stored.token})
        head = httpx.head(_url(port), params={"token": stored.token})
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert '<form method="post">' in page.text
    assert 'name="List-Unsubscribe" value="One-Click"' in page.text
    assert "Acme &lt;b&gt;&#34;Outdoor&#34;&lt;/b&gt; &amp; Co" in page.text
    assert "<b>" not in page.text
    assert head.status_code == 200
    assert list_opt_outs(engine) == []
    assert _state_of(engine, stored.notification_id) == NotificationState.PENDING


def test_page_form_post_shows_confirmation(
    engine: Engine, stored: StoredUpdate
) -> None:
    with running_web(engine, stored.settings) as port:
        # What the browser sends for the page's form: the page URL as the
        # action, and the form's hidden fields as the body.
        page = httpx.post(
            _url(port),
            params={"token": stored.token},
            data={**ONE_CLICK, "format": "html"},
        )
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert "You are unsubscribed" in page.text
    assert "Acme &lt;b&gt;" in page.text
    [entry] = list_opt_outs(engine, "acme")
    assert entry.address == "chris@example.com"
    assert entry.source == "url"
    assert _state_of(engine, stored.notification_id) == NotificationState.SUPPRESSED


def test_token_in_form_body_accepted(engine: Engine, stored: StoredUpdate) -> None:
    with running_web(engine, stored.settings) as port:
        answer = httpx.post(_url(port), data={**ONE_CLICK, "token": stored.token})
    assert answer.status_code == 200, answer.text
    assert len(list_opt_outs(engine, "acme")) == 1


def _forgeries(token: str) -> dict[str, dict[str, str]]:
    notification_id, signature = token.split(".")
    changed = ("b" if signature[0] == "a" else "a") + signature[1:]
    return {
        "changed signature": {"token": f"{notification_id}.{changed}"},
        "other notification": {"token": f"{int(notification_id) + 1}.{signature}"},
        "no signature": {"token": notification_id},
        "garbage": {"token": "<script>alert(1)</script>"},
        "missing": {},
    }


def test_forged_token_rejected(engine: Engine, stored: StoredUpdate) -> None:
    with running_web(engine, stored.settings) as port:
        for case, params in _forgeries(stored.token).items():
            answer = httpx.post(_url(port), params=params, data=ONE_CLICK)
            assert answer.status_code == 400, case
            assert "opt-out link" in answer.text, case
            assert "<script>" not in answer.text, case
            page = httpx.get(_url(port), params=params)
            assert page.status_code == 400, case
            assert "This opt-out link does not work" in page.text, case
            assert "<script>" not in page.text, case
    assert list_opt_outs(engine) == []
    assert _state_of(engine, stored.notification_id) == NotificationState.PENDING


def test_token_signed_with_other_key_rejected(engine: Engine, tmp_path: Path) -> None:
    notification_id = _pending_notification(engine)
    settings = _settings(tmp_path, unsubscribe_secret="s" * 40)
    other_key = b"another key of at least 32 bytes!"
    token = make_token(other_key, notification_id)
    with running_web(engine, settings) as port:
        answer = httpx.post(_url(port), params={"token": token}, data=ONE_CLICK)
    assert answer.status_code == 400
    assert list_opt_outs(engine) == []


def test_post_without_one_click_body_rejected(
    engine: Engine, stored: StoredUpdate
) -> None:
    with running_web(engine, stored.settings) as port:
        empty = httpx.post(_url(port), params={"token": stored.token})
        other = httpx.post(
            _url(port), params={"token": stored.token}, data={"List-Unsubscribe": "yes"}
        )
        two = httpx.post(
            _url(port),
            params={"token": stored.token},
            data={**ONE_CLICK, "token": stored.token.replace(".", ".x", 1)},
        )
    assert empty.status_code == 400
    assert "List-Unsubscribe=One-Click" in empty.text
    assert other.status_code == 400
    assert two.status_code == 400
    assert "different tokens" in two.text
    assert list_opt_outs(engine) == []


def test_other_methods_and_paths(engine: Engine, tmp_path: Path) -> None:
    with running_web(engine, _settings(tmp_path)) as port:
        put = httpx.put(_url(port), params={"token": "1.x"}, content=b"")
        delete = httpx.delete(_url(port))
        other_path = httpx.get(f"http://127.0.0.1:{port}/")
        post_elsewhere = httpx.post(f"http://127.0.0.1:{port}/unsubscribe/x")
    assert put.status_code == 405
    assert delete.status_code == 405
    assert set(put.headers["allow"].split(",")) == {"GET", "HEAD", "POST"}
    assert other_path.status_code == 404
    assert post_elsewhere.status_code == 404


def _raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to the listener; return all it sends before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def _status(response: bytes) -> int:
    """Return the status code of a raw HTTP/1.x response."""
    return int(response.split(b" ", 2)[1])


@contextmanager
def _captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    # The bcctrack logger stops propagation once a command has configured
    # logging in this process, so caplog's handler goes on it directly.
    logger = logging.getLogger("bcctrack")
    logger.addHandler(caplog.handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(previous)
        logger.removeHandler(caplog.handler)


def test_listener_survives_bad_requests(
    engine: Engine, stored: StoredUpdate, caplog: pytest.LogCaptureFixture
) -> None:
    with running_web(engine, stored.settings) as port, _captured_logs(caplog):
        oversize = httpx.post(
            _url(port),
            params={"token": stored.token},
            content=b"List-Unsubscribe=One-Click&pad=" + b"x" * web.MAX_BODY_SIZE,
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        chunked = httpx.post(
            _url(port),
            params={"token": stored.token},
            content=iter([b"List-Unsubscribe=One-Click&pad="] + [b"x" * 1024] * 8),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        garbage = _raw_exchange(port, b"\x16\x03\x01 not http at all\r\n\r\n")
        long_url = f"/unsubscribe?token={stored.token}&pad={'x' * 9000}"
        long_line = _raw_exchange(port, f"GET {long_url} HTTP/1.1\r\n\r\n".encode())
        bad_length = _raw_exchange(
            port,
            b"POST /unsubscribe HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: -5\r\nConnection: close\r\n\r\n",
        )
        assert list_opt_outs(engine) == []
        after = httpx.post(_url(port), params={"token": stored.token}, data=ONE_CLICK)
    assert oversize.status_code == 413
    assert chunked.status_code == 413
    assert _status(garbage) == 400
    assert _status(long_line) == 414
    assert _status(bad_length) == 400
    assert after.status_code == 200, after.text
    assert len(list_opt_outs(engine)) == 1
    assert "POST /unsubscribe 413" in caplog.text
    assert stored.token.split(".")[1] not in caplog.text


def test_long_token_rejected_unquoted(
    engine: Engine, stored: StoredUpdate, caplog: pytest.LogCaptureFixture
) -> None:
    token = "2." + "a" * 20_000
    with running_web(engine, stored.settings) as port, _captured_logs(caplog):
        response = httpx.post(_url(port), params={"token": token}, data=ONE_CLICK)
        header = _raw_exchange(
            port,
            b"GET /unsubscribe HTTP/1.1\r\nHost: x\r\nX-Pad: "
            + b"b" * 9000
            + b"\r\n\r\n",
        )
    assert response.status_code == 414
    assert response.text == web.URL_TOO_LONG + "\n"
    assert "aaaa" not in response.text
    assert _status(header) == 431
    assert b"bbbb" not in header
    assert "aaaa" not in caplog.text
    assert "rejected with 414" in caplog.text
    assert list_opt_outs(engine) == []


def test_get_page_asks_before_opt_out(engine: Engine, stored: StoredUpdate) -> None:
    with running_web(engine, stored.settings) as port:
        page = httpx.get(_url(port), params={"token": stored.token})
    text = " ".join(page.text.split())
    assert "You will no longer receive" not in text
    assert "Press the button to stop parcel updates from" in text
    assert "Nothing changes until you press it." in text


def test_slow_clients_cut_off(engine: Engine, stored: StoredUpdate) -> None:
    settings = stored.settings.model_copy(update={"web_timeout": 0.5})
    with running_web(engine, settings) as port:
        started = time.monotonic()
        # Headers that never end: the listener closes the connection, no reply.
        headers = _raw_exchange(port, b"GET /unsubscribe HTTP/1.1\r\nHost: x\r\n")
        headers_seconds = time.monotonic() - started
        # A body shorter than its Content-Length: 408 after web_timeout.
        body = _raw_exchange(
            port,
            f"POST /unsubscribe?token={stored.token} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            "Content-Length: 100\r\n\r\nList-Unsubscribe=One".encode(),
        )
    assert headers == b""
    assert 0.4 < headers_seconds < 4.5
    assert _status(body) == 408
    assert list_opt_outs(engine) == []


def test_store_error_answers_500(
    engine: Engine, stored: StoredUpdate, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_store(*arguments: object) -> bool:
        raise OSError("database connection lost")

    with running_web(engine, stored.settings) as port:
        monkeypatch.setattr(web, "opt_out_by_token", broken_store)
        failed = httpx.post(_url(port), params={"token": stored.token}, data=ONE_CLICK)
        monkeypatch.undo()
        after = httpx.post(_url(port), params={"token": stored.token}, data=ONE_CLICK)
    assert failed.status_code == 500
    assert "try again later" in failed.text
    assert "database connection lost" not in failed.text
    assert after.status_code == 200, after.text


def test_serve_role_web(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    settings = _settings(data_dir)
    engine = open_store(settings.database_url)
    try:
        notification_id = _pending_notification(engine)
    finally:
        engine.dispose()
    token = make_token(signing_key(settings), notification_id)

    port = free_port()
    environment = cli_environment(data_dir, unsubscribe_base_url=BASE_URL)
    log_path = tmp_path / "serve.log"
    with serving(
        environment,
        "--role",
        "web",
        "--web-port",
        str(port),
        port=port,
        log_path=log_path,
    ):
        forged_token = _forgeries(token)["changed signature"]["token"]
        forged = httpx.post(_url(port), params={"token": forged_token}, data=ONE_CLICK)
        answer = httpx.post(_url(port), params={"token": token}, data=ONE_CLICK)
        wait_until(lambda: "recipient opted out" in log_path.read_text())

    log = log_path.read_text()
    assert forged.status_code == 400
    assert answer.status_code == 200, answer.text
    assert f"notification {notification_id}: recipient opted out" in log
    assert f"HTTP listener for one-click opt-outs on 127.0.0.1:{port}" in log
    assert "POST /unsubscribe 200" in log
    assert token.split(".")[1] not in log
    assert "stopped" in log


def test_serve_role_web_needs_port(tmp_path: Path) -> None:
    environment = cli_environment(tmp_path / "data")
    result = run_cli(environment, "serve", "--role", "web", check=False)
    assert result.returncode == 1
    assert "--role web needs a port" in result.stderr
