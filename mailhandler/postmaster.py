"""Mail to ``postmaster``, which RFC 5321 section 4.5.1 requires to accept.

It is no shop's, so it never enters the pipeline and never triggers a
customer email. Intake writes each message as an ``.eml`` file into the data
folder's ``postmaster/`` folder for the operator to read, and syncs it to
disk before it replies ``250``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

LOCAL_PART = "postmaster"


def is_postmaster(address: str, intake_domain: str) -> bool:
    """Tell whether ``address`` is postmaster at the intake domain.

    The local part is matched without regard to case, as RFC 5321 requires
    for postmaster, and a bare ``postmaster`` without a domain counts too.
    """
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, intake_domain
    return (
        local.lower() == LOCAL_PART
        and domain.lower().rstrip(".") == intake_domain.lower()
    )


def deliver(folder: Path, raw: bytes, mail_from: str, rcpt_tos: list[str]) -> str:
    """Write ``raw`` into ``folder``; return the file name.

    The file starts with Return-Path and Delivered-To headers that carry the
    envelope. The name is the first 32 hex digits of the SHA-256 of the
    file's bytes, so a retry of the same message finds its file and writes
    nothing.
    """
    envelope = f"Return-Path: <{mail_from}>\r\n" + "".join(
        f"Delivered-To: {address}\r\n" for address in rcpt_tos
    )
    data = envelope.encode("utf-8", "backslashreplace") + raw
    name = hashlib.sha256(data).hexdigest()[:32] + ".eml"
    target = folder / name
    if target.is_file():
        return name
    folder.mkdir(parents=True, exist_ok=True)
    temporary = folder / f".{name}.tmp"
    with temporary.open("wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(target)
    _sync_folder(folder)
    return name


def _sync_folder(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
