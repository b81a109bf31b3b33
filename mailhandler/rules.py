"""Shop rule files on disk: loading, reloading on change, and keeping the last good.

Each shop's active rules are ``<rules folder>/<slug>.toml``; an admin writes
and tests ``<slug>.draft.toml`` first and activates it with
``bcctrack rules activate``. A changed file is read again with the next
message of its shop. A file that fails its checks is rejected with its
problems in the log, and the shop keeps the rules it had: those in memory,
or, in a process that just started, the copy ``<slug>.toml.last-good`` that
the last successful load saved.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractors.shoprules import RuleFileError, RuleProblem, RuleSet, parse_rules

log = logging.getLogger("bcctrack.extract")


@dataclass
class _Entry:
    signature: tuple[int, int]
    rules: RuleSet | None
    error: RuleFileError | None


class RuleBook:
    """The active rules of every shop, read from one folder."""

    def __init__(self, folder: Path, timeout: float) -> None:
        self.folder = folder
        self.timeout = timeout
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def active_path(self, slug: str) -> Path:
        """Return the path of the shop's active rule file."""
        return self.folder / f"{slug}.toml"

    def draft_path(self, slug: str) -> Path:
        """Return the path of the shop's draft rule file."""
        return self.folder / f"{slug}.draft.toml"

    def last_good_path(self, slug: str) -> Path:
        """Return the copy of the shop's last active file that passed the checks."""
        return self.folder / f"{slug}.toml.last-good"

    def load(self, path: Path) -> RuleSet:
        """Read and check the rule file at ``path``; raise RuleFileError."""
        data = path.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise RuleFileError(
                path.name,
                [
                    RuleProblem(
                        data.count(b"\n", 0, error.start) + 1,
                        f"not UTF-8 text (byte {error.start}): save the file as UTF-8",
                    )
                ],
            ) from error
        return parse_rules(text, path.name, self.timeout)

    def get(self, slug: str) -> RuleSet | None:
        """Return the shop's active rules, reading the file again if it changed."""
        path = self.active_path(slug)
        try:
            stat = path.stat()
        except FileNotFoundError:
            with self._lock:
                if self._entries.pop(slug, None) is not None:
                    log.info("rules for shop %s removed: %s is gone", slug, path)
            return None
        signature = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(slug)
            if entry is not None and entry.signature == signature:
                return entry.rules
        # Checking a file probes its patterns, which can take seconds; other
        # shops' workers must not wait for that, so it runs without the lock.
        loaded = self._reload(slug, path, signature, entry)
        with self._lock:
            self._entries[slug] = loaded
        return loaded.rules

    def _reload(
        self, slug: str, path: Path, signature: tuple[int, int], entry: _Entry | None
    ) -> _Entry:
        previous = entry.rules if entry is not None else None
        try:
            rules = self.load(path)
        except RuleFileError as error:
            kept, source = self._fallback(slug, previous)
            log.error("rules for shop %s rejected, %s: %s", slug, source, error)
            return _Entry(signature, kept, error)
        except (OSError, RecursionError, MemoryError) as error:
            kept, source = self._fallback(slug, previous)
            log.error(
                "rules for shop %s unreadable at %s, %s: %s", slug, path, source, error
            )
            return _Entry(signature, kept, None)
        log.info(
            "rules for shop %s loaded from %s: %d field rules, %d kind patterns",
            slug,
            path,
            len(rules.fields),
            len(rules.kind_patterns),
        )
        self._keep_last_good(slug, path)
        return _Entry(signature, rules, None)

    def _fallback(
        self, slug: str, previous: RuleSet | None
    ) -> tuple[RuleSet | None, str]:
        # A process that never loaded the shop's rules (it just started) takes
        # the last good copy that an earlier process saved.
        if previous is not None:
            return previous, "keeping the previous rules"
        copy = self.last_good_path(slug)
        try:
            return self.load(copy), f"using the last good rules from {copy}"
        except (OSError, RuleFileError, RecursionError):
            return None, "no rules in force"

    def _keep_last_good(self, slug: str, path: Path) -> None:
        target = self.last_good_path(slug)
        try:
            data = path.read_bytes()
            if target.is_file() and target.read_bytes() == data:
                return
            temporary = target.with_name(f".{target.name}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, target)
        except OSError as error:
            log.warning("rules for shop %s: cannot save %s: %s", slug, target, error)

    def rejection(self, slug: str) -> RuleFileError | None:
        """Return the error of the shop's last rejected rule file, if any."""
        with self._lock:
            entry = self._entries.get(slug)
            return entry.error if entry is not None else None


def activate(book: RuleBook, slug: str, draft: Path) -> Path:
    """Check ``draft`` and make it the shop's active rules; return the path.

    The old active file is kept as ``<slug>.toml.previous``. The copy is
    written to a temporary file and renamed, so a running service never
    reads half a file.
    """
    book.load(draft)
    target = book.active_path(slug)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        os.replace(target, target.with_name(target.name + ".previous"))
    temporary = target.with_name(f".{target.name}.tmp")
    temporary.write_bytes(draft.read_bytes())
    os.replace(temporary, target)
    return target


@dataclass(frozen=True)
class Change:
    """One field whose value differs between two extractions."""

    field: str
    before: str | None
    after: str | None

    @property
    def change(self) -> str:
        """Return "new", "lost" or "changed"."""
        if self.before is None:
            return "new"
        if self.after is None:
            return "lost"
        return "changed"


def comparable(result: dict[str, Any]) -> dict[str, str | None]:
    """Flatten an ``extract --json`` result into one value per compared field."""
    shipments = result.get("shipments") or []
    customer = result.get("customer") or {}
    return {
        "kind": result.get("kind"),
        "order_number": result.get("order_number"),
        "tracking_numbers": " ".join(s["tracking_number"] for s in shipments) or None,
        "carriers": " ".join(str(s["carrier"]) for s in shipments) or None,
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "language": result.get("language"),
    }


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[Change]:
    """Return the fields whose values differ between two extraction results."""
    old, new = comparable(before), comparable(after)
    return [
        Change(name, old[name], new[name]) for name in old if old[name] != new[name]
    ]
