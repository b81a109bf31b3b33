"""Logging set-up: named loggers per concern under ``bcctrack``."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def configure_logging(level: str) -> None:
    """Send bcctrack's log lines to standard error at ``level``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    root = logging.getLogger("bcctrack")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # aiosmtpd logs client input as received, without bcctrack's format;
    # bcctrack logs the SMTP events that matter itself (bcctrack.smtp).
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    quiet_parser_logs()


def quiet_parser_logs() -> None:
    """Keep mail-parser's per-part warnings out of the output.

    mail-parser warns for every MIME part that is neither text/plain nor
    text/html; bcctrack records real defects on the message instead.
    """
    logging.getLogger("mailparser").setLevel(logging.ERROR)
