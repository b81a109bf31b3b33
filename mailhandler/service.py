"""``bcctrack serve``: the SMTP intake, pipeline workers and notifier."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Literal

from sqlalchemy import Engine

from mailhandler.intake import start_intake
from mailhandler.notifier import Notifier
from mailhandler.outbound import make_backend
from mailhandler.pipeline import Pipeline, run_workers
from mailhandler.settings import Settings

log = logging.getLogger("bcctrack.service")

Role = Literal["all", "intake", "worker"]


async def serve(engine: Engine, settings: Settings, role: Role) -> None:
    """Run the parts of the service that ``role`` names until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)

    pipeline_wake = asyncio.Event()
    notifier_wake = asyncio.Event()
    server = None
    pipeline = None
    tasks: list[asyncio.Task[None]] = []

    if role in ("all", "intake"):
        server = await start_intake(engine, settings, on_stored=pipeline_wake.set)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            log.info("SMTP intake listening on %s:%s", host, port)
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

    await stop.wait()
    log.info("stopping")
    if server is not None:
        server.close()
        await server.wait_closed()
    await asyncio.gather(*tasks, return_exceptions=True)
    if pipeline is not None:
        pipeline.close()
    log.info("stopped")


def _wake_from_thread(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    # asyncio.Event is not thread-safe; pipeline workers run in threads.
    loop.call_soon_threadsafe(event.set)
