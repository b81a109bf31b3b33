"""Running parse and extraction in a child process with time and memory limits.

A hostile or broken email can make pure-Python code loop forever or eat all
memory, and a thread cannot be stopped from outside. So each pipeline worker
hands the raw message to a long-lived child process, waits at most the time
limit for the result, and kills and replaces the child when it is exceeded.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import resource
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from extractors.message import Address, MessageParseError, parse_message
from extractors.model import Extraction
from extractors.rules import ShopRules
from mailhandler.logs import quiet_parser_logs

log = logging.getLogger("bcctrack.pipeline")

# Called as extract(message), or extract(message, rules) when the shop has
# rules; extractors.extract_message takes both forms.
Extract = Callable[..., Extraction]

# forkserver, not fork: the parent runs threads (intake, workers, database
# pools), and forking a threaded process can copy a lock in its locked state.
# The fork server is single-threaded and imports the parsing libraries once,
# so each child starts in milliseconds instead of importing them again.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["extractors", "mailparser", "bs4", "lxml.html"])
_START_TIMEOUT = 60.0


class ProcessingError(Exception):
    """Parsing or extraction failed in the child process.

    ``permanent`` is True when the same bytes would fail the same way again
    (the message cannot be parsed at all), so retrying is pointless.
    """

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class ProcessingTimeoutError(ProcessingError):
    """Parsing and extraction did not finish within the time limit."""


class ProcessingCrashedError(ProcessingError):
    """The child process died while it worked on the message."""


@dataclass(frozen=True)
class ProcessedContent:
    """What the pipeline needs from the parsed message and its extraction."""

    from_: list[Address]
    defects: list[str]
    extraction: Extraction


def _limit_memory(limit_bytes: int) -> None:
    if limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))


def _child_main(connection: Connection, extract: Extract, memory_limit: int) -> None:
    _limit_memory(memory_limit)
    quiet_parser_logs()
    try:
        connection.send(("ready", None))
        while True:
            raw = connection.recv_bytes()
            rules = connection.recv()
            connection.send(_process(raw, rules, extract))
    except (EOFError, OSError):
        # The parent closed the pipe or died: nothing is waiting for a result.
        return


def _process(
    raw: bytes, rules: ShopRules | None, extract: Extract
) -> tuple[str, object]:
    try:
        message = parse_message(raw)
    except MessageParseError as error:
        return ("permanent", str(error))
    try:
        extraction = extract(message) if rules is None else extract(message, rules)
    except Exception as error:  # reported to the parent, which decides
        return ("error", f"{type(error).__name__}: {error}")
    return ("ok", ProcessedContent(message.from_, message.defects, extraction))


class Sandbox:
    """One child process that parses and extracts one message at a time."""

    def __init__(self, extract: Extract, time_limit: float, memory_limit: int) -> None:
        self.extract = extract
        self.time_limit = time_limit
        self.memory_limit = memory_limit
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None

    def run(self, raw: bytes, rules: ShopRules | None = None) -> ProcessedContent:
        """Parse and extract ``raw``; raise a ProcessingError on failure."""
        connection = self._ensure_child()
        connection.send_bytes(raw)
        connection.send(rules)
        if not connection.poll(self.time_limit):
            self.close()
            raise ProcessingTimeoutError(
                f"processing timed out after {self.time_limit:g} s; the child "
                "process was stopped"
            )
        try:
            status, value = connection.recv()
        except (EOFError, OSError):
            code = None
            if self._process is not None:
                # The pipe closes before the child is reaped; wait briefly so
                # that the exit code is known.
                self._process.join(timeout=5)
                code = self._process.exitcode
            self.close()
            raise ProcessingCrashedError(
                f"the processing child process died (exit code {code})"
            ) from None
        if status in ("error", "permanent"):
            raise ProcessingError(value, permanent=status == "permanent")
        assert isinstance(value, ProcessedContent)
        return value

    def _ensure_child(self) -> Connection:
        if self._process is not None and self._process.is_alive():
            assert self._connection is not None
            return self._connection
        self.close()
        parent_end, child_end = _CONTEXT.Pipe()
        process = _CONTEXT.Process(
            target=_child_main,
            args=(child_end, self.extract, self.memory_limit),
            name="bcctrack-extract",
            daemon=True,
        )
        process.start()
        child_end.close()
        try:
            if not parent_end.poll(_START_TIMEOUT):
                raise EOFError
            parent_end.recv()
        except (EOFError, OSError):
            process.kill()
            process.join(timeout=5)
            raise ProcessingCrashedError(
                f"the processing child process did not start (exit code "
                f"{process.exitcode})"
            ) from None
        self._process, self._connection = process, parent_end
        log.debug("processing child process %s started", process.pid)
        return parent_end

    def close(self) -> None:
        """Stop the child process, if any."""
        if self._connection is not None:
            self._connection.close()
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
        self._process = None
        self._connection = None


class SandboxPool:
    """A fixed set of sandboxes, one per concurrent pipeline worker."""

    def __init__(
        self, size: int, extract: Extract, time_limit: float, memory_limit: int
    ) -> None:
        self._all = [Sandbox(extract, time_limit, memory_limit) for _ in range(size)]
        self._free: queue.Queue[Sandbox] = queue.Queue()
        for sandbox in self._all:
            self._free.put(sandbox)

    @contextmanager
    def sandbox(self) -> Iterator[Sandbox]:
        """Borrow a sandbox for one message."""
        sandbox = self._free.get()
        try:
            yield sandbox
        finally:
            self._free.put(sandbox)

    def close(self) -> None:
        """Stop every child process."""
        for sandbox in self._all:
            sandbox.close()
