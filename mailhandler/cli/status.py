"""``bcctrack status``: queues, updates, drift alarms and rule files at a glance."""

from __future__ import annotations

import json

import click

from extractors.shoprules import RuleFileError
from mailhandler.cli.carriers import account_line
from mailhandler.cli.common import CliState, pass_state
from mailhandler.reports import carrier_account_reports, status_report
from mailhandler.rules import RuleBook
from mailhandler.shops import list_shops


@click.command()
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@pass_state
def status(state: CliState, as_json: bool) -> None:
    """Show messages and updates by state, drift alarms, rule files and carriers."""
    settings, engine = state.open()
    report = status_report(engine)
    book = RuleBook(settings.rules_folder, settings.rule_timeout)
    rule_problems = {}
    slugs = {shop.slug for shop in list_shops(engine, include_removed=True)}
    for slug in sorted(slugs):
        path = book.active_path(slug)
        if not path.is_file():
            continue
        try:
            book.load(path)
        except RuleFileError as error:
            rule_problems[slug] = [str(p) for p in error.problems]
        except OSError as error:
            rule_problems[slug] = [f"unreadable: {error}"]
    report["rule_files_without_shop"] = sorted(
        path.name
        for path in book.folder.glob("*.toml")
        if not path.name.endswith(".draft.toml") and path.stem not in slugs
    )
    report["rule_files_rejected"] = rule_problems
    report["carrier_accounts"] = carrier_account_reports(engine, settings)
    if as_json:
        click.echo(json.dumps(report))
        return

    def counts(values: dict[str, int]) -> str:
        return (
            ", ".join(f"{n} {state}" for state, n in sorted(values.items())) or "none"
        )

    click.echo(f"inbound messages: {counts(report['inbound_messages'])}")
    click.echo(f"customer updates: {counts(report['notifications'])}")
    alarms = report["drift_alarms"]
    click.echo(f"drift alarms: {len(alarms) or 'none'}")
    for alarm in alarms:
        ids = ", ".join(str(i) for i in alarm["message_ids"])
        click.echo(f"  {alarm['shop']}: {alarm['detail']} (messages {ids})")
    for slug, problems in rule_problems.items():
        fallback = book.last_good_path(slug)
        kept = (
            f"the service keeps the rules it has, or uses {fallback.name}"
            if fallback.is_file()
            else "a service that starts now runs without rules for this shop"
        )
        click.echo(f"rule file of {slug} rejected ({kept}):")
        for problem in problems:
            click.echo(f"  {problem}")
    for name in report["rule_files_without_shop"]:
        click.echo(f"rule file {name} names no shop: check the file name's slug")
    accounts = report["carrier_accounts"]
    click.echo(f"carrier credentials: {len(accounts) or 'none used yet'}")
    for account in accounts:
        click.echo("  " + account_line(account).replace("\n", "\n  "))
