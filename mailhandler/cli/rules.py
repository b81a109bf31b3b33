"""``bcctrack rules``: check, test, replay and activate a shop's rule files."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Engine, select
from sqlmodel import col

from extractors import Extraction, extract_message
from extractors.shoprules import RuleFileError, RuleSet
from mailhandler.cli.common import CliState, pass_state, print_json_line
from mailhandler.cli.extract import print_candidates
from mailhandler.rules import RuleBook, activate, comparable, compare
from mailhandler.sandbox import ProcessingError, Sandbox
from mailhandler.settings import Settings
from mailhandler.shops import ShopError, get_shop
from mailhandler.store import transaction
from mailhandler.store.models import InboundMessage


@click.group()
def rules() -> None:
    """Write, test and activate shop rules (docs/rules.md)."""


def _book(settings: Settings) -> RuleBook:
    return RuleBook(settings.rules_folder, settings.rule_timeout)


def _load(book: RuleBook, path: Path) -> RuleSet:
    if not path.is_file():
        raise click.ClickException(f"rule file not found: {path}")
    try:
        return book.load(path)
    except RuleFileError as error:
        raise click.ClickException(str(error)) from error
    except OSError as error:
        raise click.ClickException(f"cannot read {path}: {error.strerror}") from error


def _sandbox(settings: Settings) -> Sandbox:
    return Sandbox(
        extract_message, settings.processing_timeout, settings.processing_memory_limit
    )


def _extract(sandbox: Sandbox, raw: bytes, rule_set: RuleSet | None) -> Extraction:
    try:
        return sandbox.run(raw, rule_set).extraction
    except ProcessingError as error:
        raise click.ClickException(f"extraction failed: {error}") from error


def _require_shop(engine: Engine, slug: str) -> int:
    try:
        shop_id = get_shop(engine, slug).id
    except ShopError as error:
        raise click.ClickException(str(error)) from error
    assert shop_id is not None
    return shop_id


@rules.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@pass_state
def check(state: CliState, files: tuple[Path, ...]) -> None:
    """Check rule FILES and print every problem with its line.

    An argument that is not a file but a shop's slug checks that shop's
    draft, <rules folder>/<slug>.draft.toml.
    """
    book = _book(state.load())
    failed = False
    for argument in files:
        path = _rule_file(book, argument)
        if path is None:
            click.echo(_not_found(book, argument))
            failed = True
            continue
        try:
            rule_set = book.load(path)
        except OSError as error:
            click.echo(f"{path}: cannot read it: {error.strerror}")
            failed = True
        except RuleFileError as error:
            click.echo(str(error).replace(error.name, str(path), 1))
            failed = True
        else:
            empty = "" if rule_set.fields or rule_set.kind_patterns else " (empty)"
            click.echo(
                f"{path}: valid, {len(rule_set.fields)} field rules, "
                f"{len(rule_set.kind_patterns)} kind patterns{empty}"
            )
    if failed:
        raise SystemExit(1)


def _looks_like_slug(argument: Path) -> bool:
    return argument.name == str(argument) and not argument.suffix


def _rule_file(book: RuleBook, argument: Path) -> Path | None:
    """Return the file that ``argument`` names: itself, or a shop's draft."""
    if argument.exists():
        return argument
    if not _looks_like_slug(argument):
        return None
    draft = book.draft_path(str(argument))
    return draft if draft.is_file() else None


def _not_found(book: RuleBook, argument: Path) -> str:
    if _looks_like_slug(argument):
        return (
            f"{argument}: no such rule file, and no draft for shop {argument} "
            f"at {book.draft_path(str(argument))}: write the draft there, or "
            "give the path of a rule file"
        )
    return (
        f"{argument}: rule file not found: give the path of a rule file, or a "
        "shop slug to check its draft"
    )


@rules.command("show")
@click.argument("slug")
@pass_state
def show(state: CliState, slug: str) -> None:
    """Print shop SLUG's active and draft rule files and whether they are valid."""
    settings, engine = state.open()
    _require_shop(engine, slug)
    book = _book(settings)
    for label, path in (
        ("active", book.active_path(slug)),
        ("draft", book.draft_path(slug)),
    ):
        if not path.is_file():
            click.echo(f"{label}: {path} (none)")
            continue
        try:
            rule_set = book.load(path)
        except RuleFileError as error:
            problems = "; ".join(str(p) for p in error.problems)
            click.echo(f"{label}: {path} (invalid: {problems})")
        else:
            click.echo(f"{label}: {path} (valid, {len(rule_set.fields)} field rules)")


def _stored_raw(engine: Engine, shop_id: int, message_id: int) -> bytes:
    with transaction(engine) as session:
        message = session.get(InboundMessage, message_id)
    if message is None or message.shop_id != shop_id:
        raise click.ClickException(
            f"inbound message {message_id} of this shop not found: see "
            "'bcctrack messages --shop SLUG'"
        )
    return message.raw


def _print_side_by_side(
    before: dict[str, Any], after: dict[str, Any], draft: Path
) -> None:
    old, new = comparable(before), comparable(after)
    changes = {change.field: change.change for change in compare(before, after)}
    click.echo(f"{'field':16} {'without rules':34} {'with ' + draft.name:34}")
    for name in old:
        click.echo(
            f"{name:16} {old[name] or '-':34} {new[name] or '-':34} "
            f"{changes.get(name, '')}".rstrip()
        )


@rules.command("test")
@click.argument("slug")
@click.argument("email", required=False, type=click.Path(path_type=Path))
@click.option("--message", "message_id", type=int, help="A stored inbound message.")
@click.option(
    "--draft",
    type=click.Path(path_type=Path),
    default=None,
    help="Rule file to test; default: the shop's <slug>.draft.toml.",
)
@click.option("--explain", is_flag=True, help="Also print every candidate.")
@pass_state
def test(
    state: CliState,
    slug: str,
    email: Path | None,
    message_id: int | None,
    draft: Path | None,
    explain: bool,
) -> None:
    """Show extraction of EMAIL (or --message ID) without and with draft rules."""
    if (email is None) == (message_id is None):
        raise click.UsageError("give an email file or --message ID, not both")
    settings, engine = state.open()
    shop_id = _require_shop(engine, slug)
    book = _book(settings)
    draft = draft or book.draft_path(slug)
    rule_set = _load(book, draft)
    if email is not None:
        try:
            raw = email.read_bytes()
        except OSError as error:
            raise click.ClickException(f"cannot read {email}: {error}") from error
    else:
        assert message_id is not None
        raw = _stored_raw(engine, shop_id, message_id)

    sandbox = _sandbox(settings)
    try:
        without = _extract(sandbox, raw, None)
        with_rules = _extract(sandbox, raw, rule_set)
    finally:
        sandbox.close()
    _print_side_by_side(without.to_json(), with_rules.to_json(), draft)
    fired = [c for c in with_rules.candidates if c.evidence.extractor == "rules"]
    click.echo("\nrules that fired:" if fired else "\nno rule fired")
    for candidate in fired:
        mark = "+" if candidate.accepted else "-"
        click.echo(
            f"  {mark} {candidate.evidence.reason}: {candidate.field} "
            f"{candidate.value!r} from {candidate.evidence.location} "
            f"({candidate.evidence.matched!r})"
        )
    problems = [d for d in with_rules.defects if d.startswith("rule [")]
    for problem in problems:
        click.echo(f"  problem: {problem}")
    if explain:
        print_candidates(with_rules)


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD or an ISO 8601 time"
        ) from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@rules.command("replay")
@click.argument("slug")
@click.option("--since", default=None, help="Only messages received since this date.")
@click.option(
    "--draft",
    type=click.Path(path_type=Path),
    default=None,
    help="Rule file to replay; default: the shop's <slug>.draft.toml.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per change.")
@pass_state
def replay(
    state: CliState, slug: str, since: str | None, draft: Path | None, as_json: bool
) -> None:
    """Re-run draft rules on the shop's stored messages and print what would change.

    Compares the extraction with the shop's active rules against the one with
    the draft; nothing in the store changes.
    """
    settings, engine = state.open()
    shop_id = _require_shop(engine, slug)
    book = _book(settings)
    draft = draft or book.draft_path(slug)
    draft_rules = _load(book, draft)
    active = book.active_path(slug)
    active_rules = _load(book, active) if active.is_file() else None
    since_time = _parse_since(since)

    query = select(col(InboundMessage.id)).where(col(InboundMessage.shop_id) == shop_id)
    if since_time is not None:
        query = query.where(col(InboundMessage.received_at) >= since_time)
    with transaction(engine) as session:
        ids = list(session.scalars(query.order_by(col(InboundMessage.id))))

    totals: Counter[str] = Counter()
    changed_messages = 0
    sandbox = _sandbox(settings)
    try:
        for message_id in ids:
            assert message_id is not None
            raw = _stored_raw(engine, shop_id, message_id)
            before = _extract(sandbox, raw, active_rules).to_json()
            after = _extract(sandbox, raw, draft_rules).to_json()
            changes = compare(before, after)
            changed_messages += bool(changes)
            for change in changes:
                totals[change.change] += 1
                if as_json:
                    print_json_line(
                        {
                            "message": message_id,
                            "field": change.field,
                            "change": change.change,
                            "before": change.before,
                            "after": change.after,
                        }
                    )
                else:
                    click.echo(
                        f"{message_id}\t{change.field}\t{change.change}\t"
                        f"{change.before or '-'} -> {change.after or '-'}"
                    )
    finally:
        sandbox.close()
    base = active.name if active_rules is not None else "no rules"
    click.echo(
        f"{len(ids)} messages replayed with {draft.name} against {base}: "
        f"{changed_messages} would change ({totals['new']} new values, "
        f"{totals['lost']} lost, {totals['changed']} changed)",
        err=as_json,
    )


@rules.command("activate")
@click.argument("slug")
@click.option(
    "--draft",
    type=click.Path(path_type=Path),
    default=None,
    help="Rule file to activate; default: the shop's <slug>.draft.toml.",
)
@pass_state
def activate_command(state: CliState, slug: str, draft: Path | None) -> None:
    """Check the draft rules and make them shop SLUG's active rules."""
    settings, engine = state.open()
    _require_shop(engine, slug)
    book = _book(settings)
    draft = draft or book.draft_path(slug)
    _load(book, draft)
    try:
        target = activate(book, slug, draft)
    except OSError as error:
        raise click.ClickException(
            f"cannot write {book.active_path(slug)}: {error.strerror}; "
            "the rules folder (BCCTRACK_RULES_DIR) must be a writable folder"
        ) from error
    click.echo(
        f"Activated {draft} as {target}. The service reads it with the shop's "
        "next message; 'bcctrack reprocess' runs stored messages again."
    )
