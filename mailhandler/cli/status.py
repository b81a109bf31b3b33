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
    for shop in list_shops(engine):
        path = book.active_path(shop.slug)
        if not path.is_file():
            continue
        try:
            book.load(path)
        except RuleFileError as error:
            rule_problems[shop.slug] = [str(p) for p in error.problems]
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
        click.echo(f"rule file of {slug} rejected, older rules stay in force:")
        for problem in problems:
            click.echo(f"  {problem}")
    accounts = report["carrier_accounts"]
    click.echo(f"carrier credentials: {len(accounts) or 'none used yet'}")
    for account in accounts:
        click.echo("  " + account_line(account).replace("\n", "\n  "))
