"""``bcctrack serve``: SMTP intake, workers, notifier, poller, HTTP listener."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta
from typing import Literal

from sqlalchemy import Engine

from mailhandler.carriers import CarrierRegistry
from mailhandler.intake import start_intake
from mailhandler.notifier import Notifier
from mailhandler.outbound import make_backend
from mailhandler.pipeline import Pipeline, run_workers
from mailhandler.poller import Poller
from mailhandler.settings import Settings
from mailhandler.status_files import DropFolder
from mailhandler.store.engine import is_postgresql
from mailhandler.web import start_web, warn_about_web_settings

log = logging.getLogger("bcctrack.service")

Role = Literal["all", "intake", "worker", "poller", "web"]


async def serve(engine: Engine, settings: Settings, role: Role) -> None:
    """Run the parts of the service that ``role`` names until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    pipeline_wake = asyncio.Event()
    notifier_wake = asyncio.Event()
    server = None
    web_runner = None
    pipeline = None
    registry = None
    tasks: list[asyncio.Task[None]] = []

    if role in ("all", "intake"):
        server = await start_intake(engine, settings, on_stored=pipeline_wake.set)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("SMTP intake listening on %s:%s", host, port)
    # Under "all" the listener is optional: web_port 0 (the default) means
    # that another process, or none, serves the one-click links.
    if role == "web" or (role == "all" and settings.web_port):
        web_runner = await start_web(engine, settings)
        for host, port in (address[:2] for address in web_runner.addresses):
            log.info("HTTP listener for one-click opt-outs on %s:%s", host, port)
        warn_about_web_settings(settings)
    if role in ("all", "worker"):
        pipeline = Pipeline(
            engine,
            settings,
            on_processed=lambda: _wake_from_thread(loop, notifier_wake),
        )
        notifier = Notifier(
            engine, settings, make_backend(settings.outbound, settings.outbox_dir)
        )
        tasks.append(
            asyncio.create_task(
                run_workers(pipeline, pipeline_wake, stop, settings.workers)
            )
        )
        tasks.append(asyncio.create_task(notifier.run(notifier_wake, stop)))
        where = (
            str(settings.outbox_dir)
            if settings.outbound == "file"
            else settings.outbound
        )
        log.info(
            "%d pipeline workers and the notifier running; updates go to %s",
            settings.workers,
            where,
        )

    if is_postgresql(engine) and not settings.unsubscribe_secret.get_secret_value():
        # Each machine would generate its own key, and an opt-out link signed
        # on one would be rejected by the intake of another.
        log.warning(
            "unsubscribe_secret is not set: processes on other machines that "
            "share this database will not accept each other's opt-out links"
        )
    if role in ("all", "poller"):
        registry = CarrierRegistry.from_settings(settings)
        poller = Poller(engine, settings, registry, on_notification=notifier_wake.set)
        tasks.append(asyncio.create_task(poller.run(stop)))
        if settings.status_drop_dir is not None:
            tasks.append(
                asyncio.create_task(_watch_drop_folder(engine, settings, stop))
            )
        log.info(
            "poller running; status files from %s",
            settings.status_drop_dir or "no drop folder",
        )

    await stop.wait()
    log.info("stopping")
    if server is not None:
        server.close()
        await server.wait_closed()
    if web_runner is not None:
        await web_runner.cleanup()
    await asyncio.gather(*tasks, return_exceptions=True)
    if pipeline is not None:
        pipeline.close()
    if registry is not None:
        await registry.aclose()
    log.info("stopped")


async def _watch_drop_folder(
    engine: Engine, settings: Settings, stop: asyncio.Event
) -> None:
    assert settings.status_drop_dir is not None
    folder = DropFolder(
        engine,
        settings.status_drop_dir,
        timedelta(hours=settings.max_event_age_hours),
    )
    while not stop.is_set():
        try:
            await asyncio.to_thread(folder.scan)
        except Exception:
            log.exception("scanning the drop folder %s failed", folder.folder)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.status_drop_scan_seconds)


def _wake_from_thread(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    # asyncio.Event is not thread-safe; pipeline workers run in threads.
    loop.call_soon_threadsafe(event.set)
