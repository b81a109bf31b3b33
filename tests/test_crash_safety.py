"""Crash safety: SIGKILL the service under concurrent load, on both stores."""

from __future__ import annotations

from pathlib import Path

from crash_harness import run_crash_load

MESSAGES = 60


def test_sigkill_under_load_loses_nothing(tmp_path: Path, store_url: str) -> None:
    report = run_crash_load(
        tmp_path,
        store_url,
        count=MESSAGES,
        senders=3,
        kill_interval=(0.3, 1.2),
        time_limit=240,
        pace=0.15,
        min_kills=5,
    )
    log = (tmp_path / "serve.log").read_text()
    assert report.errors == [], log[-5000:]
    assert report.kills >= 5, "\n".join(report.lines())
    assert report.acknowledged == MESSAGES, "\n".join(report.lines())
    assert report.lost == []
    assert report.duplicated == []
    assert report.half_stored == []
    assert report.unprocessed == [], log[-5000:]
    assert report.duplicated_updates == []
    # Each update is confirmed sent, or unconfirmed when a kill fell between
    # the relay's acceptance and the commit; the relay got each at most once.
    assert report.updates_confirmed + report.unconfirmed_updates == MESSAGES
    assert report.updates_confirmed <= report.updates_received <= MESSAGES
