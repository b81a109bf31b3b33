"""Shop rule files on disk: loading, reloading on change, and keeping the last good.

Each shop's active rules are ``<rules folder>/<slug>.toml``; an admin writes
and tests ``<slug>.draft.toml`` first and activates it with
``bcctrack rules activate``. A changed file is read again with the next
message of its shop. A file that fails its checks is rejected with its
problems in the log, and the shop keeps the rules it had.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from extractors.shoprules import RuleFileError, RuleSet, parse_rules

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

    def load(self, path: Path) -> RuleSet:
        """Read and check the rule file at ``path``; raise RuleFileError."""
        return parse_rules(path.read_text(encoding="utf-8"), path.name, self.timeout)

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
            return self._reload(slug, path, signature, entry)

    def _reload(
        self, slug: str, path: Path, signature: tuple[int, int], entry: _Entry | None
    ) -> RuleSet | None:
        previous = entry.rules if entry is not None else None
        try:
            rules = self.load(path)
        except RuleFileError as error:
            kept = "keeping the previous rules" if previous else "no rules in force"
            log.error("rules for shop %s rejected, %s: %s", slug, kept, error)
            self._entries[slug] = _Entry(signature, previous, error)
            return previous
        except OSError as error:
            log.error("rules for shop %s unreadable at %s: %s", slug, path, error)
            return previous
        log.info(
            "rules for shop %s loaded from %s: %d field rules, %d kind patterns",
            slug,
            path,
            len(rules.fields),
            len(rules.kind_patterns),
        )
        self._entries[slug] = _Entry(signature, rules, None)
        return rules

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
