"""Crash-safety load: SIGKILL ``bcctrack serve`` while mail is sent to it.

Prints messages sent, acknowledged, kills, lost (must be 0), duplicated (must
be 0) and the rest of the figures. Everything runs on 127.0.0.1.

    python bench/crash.py --messages 500 --senders 8
    python bench/crash.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from crash_harness import run_crash_load


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--min-interval", type=float, default=0.5, help="seconds")
    parser.add_argument("--max-interval", type=float, default=3.0, help="seconds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--pace", type=float, default=0.05, help="seconds each sender waits after a 250"
    )
    parser.add_argument(
        "--min-kills", type=int, default=20, help="kill at least this often in all"
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="run on a new database created through this PostgreSQL URL",
    )
    arguments = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bcctrack-crash-") as folder:
        workdir = Path(folder)
        db_url = f"sqlite:///{workdir / 'bcctrack.db'}"
        admin = None
        if arguments.postgres:
            admin = create_engine(arguments.postgres, isolation_level="AUTOCOMMIT")
            name = f"bcctrack_crash_{uuid.uuid4().hex[:8]}"
            with admin.connect() as connection:
                connection.execute(text(f'CREATE DATABASE "{name}"'))
            db_url = arguments.postgres.rsplit("/", 1)[0] + f"/{name}"
        try:
            report = run_crash_load(
                workdir,
                db_url,
                count=arguments.messages,
                senders=arguments.senders,
                kill_interval=(arguments.min_interval, arguments.max_interval),
                seed=arguments.seed,
                time_limit=3600,
                pace=arguments.pace,
                min_kills=arguments.min_kills,
            )
        finally:
            if admin is not None:
                with admin.connect() as connection:
                    connection.execute(
                        text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    )
                admin.dispose()
    print(f"store: {db_url.split(':')[0]}")
    for line in report.lines():
        print(line)
    failed = report.lost or report.duplicated or report.half_stored
    return 1 if failed or report.duplicated_updates else 0


if __name__ == "__main__":
    sys.exit(main())
