"""'bcctrack notifications': listing updates and sending failed ones again."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine

from mailhandler.notifier import Notifier
from mailhandler.outbound import SmtpBackend
from mailhandler.store.models import NotificationState
from support import cli_environment, run_cli, smtp_sink
from test_notifier import (
    _crash_during_handover,
    _notification,
    _queue_shipped,
    _readdress,
    _send_all,
)

ADDRESS = "jürgen@exämple.de"


def test_failed_update_sent_after_retry(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _readdress(engine, ADDRESS)
    with smtp_sink() as (_, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.FAILED]
    environment = cli_environment(tmp_path / "data", db_url=store_url)
    (listed,) = [
        json.loads(line)
        for line in run_cli(
            environment, "notifications", "--state", "failed", "--json"
        ).stdout.splitlines()
    ]
    assert listed["recipient"] == ADDRESS
    assert "cannot carry this message" in listed["reason"]

    retried = run_cli(environment, "notifications", "retry", "--failed")
    assert retried.stdout == "1 notifications queued\n"
    notification = _notification(engine)
    assert notification.state == NotificationState.PENDING
    assert notification.attempts == 0
    assert notification.reason is None
    with smtp_sink(smtputf8=True) as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SENT]
        assert len(sink.wait_for(1)) == 1


def test_unconfirmed_retry_needs_flag(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path)
    _crash_during_handover(engine)
    with smtp_sink() as (_, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.UNCONFIRMED]
    notification_id = str(_notification(engine).id)
    environment = cli_environment(tmp_path / "data", db_url=store_url)

    by_id = run_cli(environment, "notifications", "retry", notification_id, check=False)
    assert by_id.returncode == 1
    assert "--allow-duplicate" in by_id.stderr
    by_state = run_cli(
        environment, "notifications", "retry", "--unconfirmed", check=False
    )
    assert by_state.returncode == 2
    assert "--allow-duplicate" in by_state.stderr
    assert _notification(engine).state == NotificationState.UNCONFIRMED

    run_cli(environment, "notifications", "retry", notification_id, "--allow-duplicate")
    notification = _notification(engine)
    assert notification.state == NotificationState.PENDING
    assert notification.sending_at is None
    with smtp_sink() as (sink, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SENT]
        assert len(sink.wait_for(1)) == 1


def test_retry_rejects_sent_and_unknown(
    engine: Engine, store_url: str, tmp_path: Path
) -> None:
    settings = _queue_shipped(engine, tmp_path)
    with smtp_sink() as (_, port):
        notifier = Notifier(engine, settings, SmtpBackend("127.0.0.1", port))
        assert _send_all(notifier) == [NotificationState.SENT]
    notification_id = str(_notification(engine).id)
    environment = cli_environment(tmp_path / "data", db_url=store_url)
    result = run_cli(
        environment, "notifications", "retry", notification_id, "999", check=False
    )
    assert result.returncode == 1
    assert f"{notification_id}\tnot queued: state sent:" in result.stderr
    assert "999\tnot queued: not found" in result.stderr
    assert _notification(engine).state == NotificationState.SENT
