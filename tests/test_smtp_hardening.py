"""Hostile and broken SMTP clients against the real intake listener."""

from __future__ import annotations

import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from sqlalchemy import Engine, select
from sqlmodel import Session

from mailhandler.settings import Settings
from mailhandler.shops import add_shop, bcc_address
from mailhandler.store import open_store
from mailhandler.store.models import InboundMessage
from support import running_intake


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path / 'bcctrack.db'}")
    yield engine
    engine.dispose()


@pytest.fixture
def address(sqlite_engine: Engine) -> str:
    return bcc_address(
        add_shop(sqlite_engine, "acme", "Acme", ["shop.example"]), "bcc.test"
    )


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        data_dir=tmp_path, intake_port=0, intake_domain="bcc.test", **values
    )


def _stored(engine: Engine) -> list[InboundMessage]:
    with Session(engine) as session:
        return list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))


class LineClient:
    """A raw SMTP client that writes exactly the bytes it is given."""

    def __init__(self, port: int) -> None:
        self.sock: socket.socket = socket.create_connection(
            ("127.0.0.1", port), timeout=10
        )
        self.buffer = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def reply(self) -> bytes:
        """Read one complete (possibly multi-line) reply."""
        while True:
            lines = self.buffer.split(b"\r\n")
            for index, line in enumerate(lines[:-1]):
                if len(line) >= 4 and line[3:4] == b" ":
                    reply = b"\r\n".join(lines[: index + 1])
                    self.buffer = b"\r\n".join(lines[index + 1 :])
                    return reply
            chunk = self.sock.recv(65536)
            if not chunk:
                reply, self.buffer = self.buffer, b""
                return reply
            self.buffer += chunk

    def command(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.reply()

    def closed(self, timeout: float = 5.0) -> bool:
        """Tell whether the server closed the connection within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except TimeoutError:
            return False
        except OSError:
            return True
        return True

    def close(self) -> None:
        self.sock.close()


HEADER = b"From: orders@shop.example\r\nTo: c@example.com\r\nSubject: s\r\n\r\n"


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r.\r", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\n.\r", b"\r\n.\r"],
)
def test_only_crlf_dot_crlf_ends_data(
    sqlite_engine: Engine, tmp_path: Path, address: str, fake_end: bytes
) -> None:
    smuggled = (
        b"MAIL FROM:<evil@evil.example>\r\nRCPT TO:<" + address.encode() + b">\r\n"
        b"DATA\r\nFrom: evil@evil.example\r\n\r\nsmuggled\r\n.\r\n"
    )
    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        client.command(b"MAIL FROM:<orders@shop.example>")
        client.command(b"RCPT TO:<" + address.encode() + b">")
        assert client.command(b"DATA").startswith(b"354")
        # A vulnerable server ends the message at the fake end and takes the
        # smuggled commands as a second transaction ending at the real end.
        client.send(HEADER + b"first part" + fake_end + smuggled)
        assert client.reply().startswith(b"250 2.0.0 queued as")
        assert client.command(b"QUIT").startswith(b"221")
        client.close()
    stored = _stored(sqlite_engine)
    assert len(stored) == 1
    assert b"smuggled" in stored[0].raw
    assert stored[0].mail_from == "orders@shop.example"


def _tls_settings(
    tmp_path: Path, authority: trustme.CA, **values: object
) -> tuple[Settings, ssl.SSLContext]:
    server_cert = authority.issue_cert("bcc.test", "127.0.0.1")
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    server_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    server_cert.private_key_pem.write_to_path(str(key_file))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    settings = _settings(
        tmp_path, tls_cert_file=cert_file, tls_key_file=key_file, **values
    )
    return settings, client_context


def test_starttls_delivers_message(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    certificate_authority: trustme.CA,
) -> None:
    settings, context = _tls_settings(tmp_path, certificate_authority)
    with (
        running_intake(sqlite_engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        assert client.has_extn("starttls")
        code, _ = client.starttls(context=context)
        assert code == 220
        assert client.sendmail("orders@shop.example", [address], HEADER + b"hi") == {}
    assert len(_stored(sqlite_engine)) == 1


def test_commands_before_tls_handshake_discarded(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    certificate_authority: trustme.CA,
) -> None:
    settings, context = _tls_settings(tmp_path, certificate_authority)
    with running_intake(sqlite_engine, settings) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        # A man in the middle appends a plaintext command to STARTTLS.
        client.send(b"STARTTLS\r\nMAIL FROM:<evil@evil.example>\r\n")
        assert client.reply().startswith(b"220")
        client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
        # Had the injected MAIL survived, its reply would come first here.
        assert client.command(b"EHLO client.example").startswith(b"250-bcc.test")
        reply = client.command(b"RCPT TO:<" + address.encode() + b">")
        client.close()
    assert reply.startswith(b"503")


def test_require_tls_rejects_plaintext_mail(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    certificate_authority: trustme.CA,
) -> None:
    settings, context = _tls_settings(tmp_path, certificate_authority, require_tls=True)
    with (
        running_intake(sqlite_engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.ehlo()
        code, _ = client.mail("orders@shop.example")
        assert code == 530
        client.starttls(context=context)
        client.ehlo()
        code, _ = client.mail("orders@shop.example")
        assert code == 250


def test_recipient_limit_answers_452(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_intake(sqlite_engine, _settings(tmp_path, max_recipients=2)) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        client.command(b"MAIL FROM:<orders@shop.example>")
        rcpt = b"RCPT TO:<" + address.encode() + b">"
        assert client.command(rcpt).startswith(b"250")
        assert client.command(rcpt).startswith(b"250")
        assert client.command(rcpt).startswith(b"452 4.5.3")
        client.close()
    assert "over the limit of 2 recipients" in caplog.text


def test_idle_client_timed_out_with_421(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, smtp_command_timeout=0.5)
    with running_intake(sqlite_engine, settings) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        time.sleep(1.0)
        assert client.reply().startswith(b"421 4.4.2")
        assert client.closed()
        client.close()
    assert "timed out idle" in caplog.text


def test_slow_large_message_fits_data_timeout(
    sqlite_engine: Engine, tmp_path: Path, address: str
) -> None:
    settings = _settings(tmp_path, smtp_command_timeout=0.4, smtp_data_timeout=0.8)
    with running_intake(sqlite_engine, settings) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        client.command(b"MAIL FROM:<orders@shop.example>")
        client.command(b"RCPT TO:<" + address.encode() + b">")
        client.command(b"DATA")
        client.send(HEADER)
        # Ten chunks 0.3 s apart: 3 s in all, longer than both timeouts.
        for index in range(10):
            client.send(b"chunk %d " % index + b"x" * 10_000 + b"\r\n")
            time.sleep(0.3)
        client.send(b".\r\n")
        assert client.reply().startswith(b"250")
        client.close()
    assert len(_stored(sqlite_engine)) == 1


def test_stalled_data_timed_out(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path, smtp_data_timeout=0.5)
    with running_intake(sqlite_engine, settings) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        client.command(b"MAIL FROM:<orders@shop.example>")
        client.command(b"RCPT TO:<" + address.encode() + b">")
        client.command(b"DATA")
        client.send(HEADER + b"partial")
        assert client.reply().startswith(b"421 4.4.2")
        assert client.closed()
        client.close()
    assert _stored(sqlite_engine) == []
    assert "timed out during DATA" in caplog.text


def test_session_limits_answer_421(
    sqlite_engine: Engine, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(tmp_path, max_sessions=2, max_sessions_per_client=10)
    with running_intake(sqlite_engine, settings) as port:
        first, second = LineClient(port), LineClient(port)
        third = LineClient(port)
        assert third.greeting.startswith(b"421 4.7.0 Too many connections")
        assert third.closed()
        first.close()
        time.sleep(0.2)
        fourth = LineClient(port)
        assert fourth.greeting.startswith(b"220")
        for client in (second, third, fourth):
            client.close()
    assert "rejected: 4.7.0 Too many connections" in caplog.text


def test_per_client_limit_answers_421(sqlite_engine: Engine, tmp_path: Path) -> None:
    settings = _settings(tmp_path, max_sessions=10, max_sessions_per_client=1)
    with running_intake(sqlite_engine, settings) as port:
        first = LineClient(port)
        second = LineClient(port)
        assert first.greeting.startswith(b"220")
        assert second.greeting.startswith(b"421 4.7.0 Too many connections from your")
        first.close()
        second.close()


def test_stalled_client_does_not_delay_others(
    sqlite_engine: Engine, tmp_path: Path, address: str
) -> None:
    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        stalled = LineClient(port)
        stalled.command(b"EHLO client.example")
        stalled.command(b"MAIL FROM:<orders@shop.example>")
        stalled.command(b"RCPT TO:<" + address.encode() + b">")
        stalled.command(b"DATA")
        stalled.send(HEADER + b"x" * 100_000)
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.sendmail("orders@shop.example", [address], HEADER + b"quick")
        elapsed = time.monotonic() - started
        stalled.close()
    assert elapsed < 5
    assert [b"quick" in m.raw for m in _stored(sqlite_engine)] == [True]


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02",
        b"HELO",
        b"MAIL FROM:",
        b"MAIL FROM:<<<>>>",
        b"RCPT TO:<a@b>",
        b"DATA",
        b"\xff\xfe\xfd COMMAND",
        b"X" * 5000,
        b"MAIL FROM:<a@b> SIZE=notanumber",
        b"AUTH PLAIN AGFhAGI=",
        b"EHLO",
    ],
)
def test_malformed_command_gets_5xx(
    sqlite_engine: Engine, tmp_path: Path, address: str, garbage: bytes
) -> None:
    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        client = LineClient(port)
        if not garbage.startswith((b"HELO", b"EHLO")):
            client.command(b"EHLO client.example")
        reply = client.command(garbage)
        assert reply[:1] == b"5", reply
        client.close()
        with smtplib.SMTP("127.0.0.1", port) as healthy:
            healthy.sendmail("orders@shop.example", [address], HEADER + b"after")
    assert len(_stored(sqlite_engine)) == 1


def test_many_concurrent_senders_all_stored(
    sqlite_engine: Engine, tmp_path: Path, address: str
) -> None:
    errors: list[BaseException] = []

    def send(index: int) -> None:
        # Like a mail server, a sender tries again after a 4xx reply.
        for _ in range(50):
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                    body = HEADER + b"message %d" % index
                    client.sendmail("orders@shop.example", [address], body)
                return
            except smtplib.SMTPDataError as error:
                if error.smtp_code // 100 != 4:
                    errors.append(error)
                    return
                time.sleep(0.05)
            except BaseException as error:  # collected for the assertion below
                errors.append(error)
                return
        errors.append(TimeoutError(f"message {index} never accepted"))

    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        threads = [threading.Thread(target=send, args=(i,)) for i in range(15)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert errors == []
    assert len(_stored(sqlite_engine)) == 15


def test_transfer_limit_answers_451(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path, max_concurrent_transfers=1)
    with running_intake(sqlite_engine, settings) as port:
        first, second = LineClient(port), LineClient(port)
        for client in (first, second):
            client.command(b"EHLO client.example")
            client.command(b"MAIL FROM:<orders@shop.example>")
            client.command(b"RCPT TO:<" + address.encode() + b">")
        assert first.command(b"DATA").startswith(b"354")
        assert second.command(b"DATA").startswith(b"451 4.3.2")
        first.send(HEADER + b"first\r\n.\r\n")
        assert first.reply().startswith(b"250")
        assert second.command(b"DATA").startswith(b"354")
        second.send(HEADER + b"second\r\n.\r\n")
        assert second.reply().startswith(b"250")
        first.close()
        second.close()
    assert len(_stored(sqlite_engine)) == 2
    assert "rejected DATA: 4.3.2 Too many messages in transfer" in caplog.text


def test_long_command_line_bounded(
    sqlite_engine: Engine, tmp_path: Path, address: str
) -> None:
    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        # 2 MB without a line end: the server must answer long before it
        # could have buffered the whole line.
        client.send(b"MAIL FROM:<" + b"a" * 2_000_000)
        client.send(b">\r\n")
        assert client.reply().startswith(b"500")
        assert client.command(b"MAIL FROM:<orders@shop.example>").startswith(b"250")
        assert client.command(b"RCPT TO:<" + address.encode() + b">").startswith(b"250")
        assert client.command(b"DATA").startswith(b"354")
        client.send(HEADER + b"y" * 100_000 + b"\r\n.\r\n")
        assert client.reply().startswith(b"250")
        client.close()
    assert len(_stored(sqlite_engine)) == 1


def test_trickling_data_stopped_at_deadline(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = _settings(tmp_path, smtp_data_timeout=0.5, smtp_data_max_seconds=1.0)
    with running_intake(sqlite_engine, settings) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        client.command(b"MAIL FROM:<orders@shop.example>")
        client.command(b"RCPT TO:<" + address.encode() + b">")
        client.command(b"DATA")
        client.send(HEADER)
        # One byte every 0.2 s keeps the idle timer from ever firing.
        for _ in range(10):
            try:
                client.send(b"x")
            except OSError:
                break
            time.sleep(0.2)
        assert client.reply().startswith(b"421 4.4.2 Message transfer took too long")
        client.close()
    assert _stored(sqlite_engine) == []
    assert "DATA took longer than 1 s" in caplog.text


def test_sender_with_nul_rejected_at_mail(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    with running_intake(sqlite_engine, _settings(tmp_path)) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        assert client.command(b"MAIL FROM:<\x00a@shop.example>").startswith(b"553")
        assert client.command(b"MAIL FROM:<a@shop.example>").startswith(b"250")
        client.close()


def test_no_auth_offered_after_starttls(
    sqlite_engine: Engine, tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    settings, context = _tls_settings(tmp_path, certificate_authority)
    with (
        running_intake(sqlite_engine, settings) as port,
        smtplib.SMTP("127.0.0.1", port) as client,
    ):
        client.starttls(context=context)
        client.ehlo()
        assert not client.has_extn("auth")


def test_limit_replies_logged(
    sqlite_engine: Engine,
    tmp_path: Path,
    address: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with running_intake(
        sqlite_engine, _settings(tmp_path, max_message_size=1000)
    ) as port:
        client = LineClient(port)
        client.command(b"EHLO client.example")
        assert client.command(b"MAIL FROM:<a@shop.example> SIZE=5000").startswith(
            b"552"
        )
        assert client.command(b"RCPT TO:<").startswith(b"5")
        client.close()
    assert "552 Error: message size exceeds" in caplog.text
    assert "Traceback" not in caplog.text
