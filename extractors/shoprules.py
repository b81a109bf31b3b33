"""Shop rules: an admin's extraction rules for one shop, written in TOML.

A rule file has one table per field it fixes (``order_number``,
``tracking_number``, ``carrier``, ``customer_email``, ``customer_name``), a
``kind`` table of subject patterns, and a ``generic`` table that switches
generic layers off for every field. docs/rules.md documents the format.

Parsing checks everything an admin can get wrong and reports each problem
with its line and the fix, so that a bad file never replaces good rules.
Regular expressions use the ``regex`` package, and every match runs under a
time limit, because an admin's pattern can backtrack for hours.
"""

from __future__ import annotations

import re
import time
import tomllib
from dataclasses import dataclass, field
from typing import Any

import regex
import soupsieve
from bs4 import BeautifulSoup

from extractors.carriers import carriers, find_carrier_names
from extractors.document import Document
from extractors.model import Candidate, Evidence, FieldName, Kind
from extractors.rules import EXTRACTOR, RuleResult

# Generic layers an admin can switch off, by the name used in rule files.
LAYERS = {
    "markup": "markup",
    "links": "links",
    "labels": "labels",
    "patterns": "patterns",
    "kind_phrases": "kind phrases",
}
FIELD_TABLES = {
    "order_number": FieldName.ORDER_NUMBER,
    "tracking_number": FieldName.TRACKING_NUMBER,
    "carrier": FieldName.CARRIER,
    "customer_email": FieldName.CUSTOMER_EMAIL,
    "customer_name": FieldName.CUSTOMER_NAME,
}
FIELD_KEYS = {"selector", "label", "regex", "source", "disable", "carrier", "value"}
SOURCES = ("text", "subject", "html")
DEFAULT_TIMEOUT = 0.2
# All of a rule set's matches on one email together get this many times the
# time limit of one match, so that a slow pattern on a long email cannot
# take a minute in small steps.
BUDGET_FACTOR = 10
# Strings every pattern must finish on within the time limit when a rule
# file is loaded: long runs of one character class with a mismatch at the
# end are what sets off catastrophic backtracking.
_PROBE_STRINGS = (
    "a" * 5000 + "!",
    "1" * 5000 + "x",
    " " * 5000 + "x",
    "ab" * 2500 + "!",
    "." * 5000 + "x",
    "-" * 5000 + "x",
    "a1" * 2500 + " ",
    "Order number: 12345 " * 200,
)
_SEPARATOR = re.compile(r"^[\s:#.=\-\u2013\u2014*]*")
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


@dataclass(frozen=True)
class RuleProblem:
    """One thing wrong in a rule file: where, and what to change."""

    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.message}"


class RuleFileError(Exception):
    """A rule file is invalid; ``problems`` lists every mistake found."""

    def __init__(self, name: str, problems: list[RuleProblem]) -> None:
        self.name = name
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{name}: invalid rule file\n{lines}")


@dataclass(frozen=True)
class FieldRule:
    """The finders of one field (selector, labels, regex) and the layers it ignores."""

    field: FieldName
    line: int
    selector: str | None = None
    labels: tuple[str, ...] = ()
    pattern: regex.Pattern[str] | None = None
    source: str = "text"
    disable: frozenset[str] = frozenset()
    carrier: str | None = None
    value: str | None = None


@dataclass
class RuleSet:
    """A shop's parsed and checked rules."""

    name: str
    fields: dict[FieldName, FieldRule] = field(default_factory=dict)
    kind_patterns: list[tuple[Kind, regex.Pattern[str], int]] = field(
        default_factory=list
    )
    disable_all: frozenset[str] = frozenset()
    timeout: float = DEFAULT_TIMEOUT

    def disabled(self, field_name: FieldName) -> frozenset[str]:
        """Return the generic layers whose candidates for ``field_name`` are dropped."""
        rule = self.fields.get(field_name)
        return self.disable_all | (rule.disable if rule else frozenset())

    def apply(self, document: Document) -> RuleResult:
        """Return the candidates the rules find in ``document``, with problems."""
        result = RuleResult()
        clock = _Clock(self.timeout, self.timeout * BUDGET_FACTOR)
        for rule in self.fields.values():
            _apply_field(rule, document, self, result, clock)
        for kind, pattern, line in self.kind_patterns:
            try:
                found = pattern.search(document.subject, timeout=clock.limit())
            except TimeoutError:
                result.problems.append(_timed_out(self, "kind", line, clock))
                continue
            if found:
                result.candidates.append(
                    Candidate(
                        FieldName.KIND,
                        kind.value,
                        1.0,
                        _evidence(self, "kind", line, "subject", found.group()),
                    )
                )
                break
        return result


def _evidence(rules: RuleSet, table: str, line: int, where: str, text: str) -> Evidence:
    return Evidence(
        extractor=EXTRACTOR,
        location=where,
        matched=text[:120],
        reason=f"rule [{table}] in {rules.name}, line {line}",
    )


class _Clock:
    """The time left for one rule set on one email."""

    def __init__(self, per_match: float, budget: float) -> None:
        self.per_match = per_match
        self.deadline = time.monotonic() + budget

    def limit(self) -> float:
        """Return the time limit of the next match; raise TimeoutError if none."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return min(self.per_match, left)

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline


def _timed_out(rules: RuleSet, table: str, line: int, clock: _Clock) -> str:
    if clock.spent():
        return (
            f"rule [{table}] in {rules.name} (line {line}): skipped, the rules "
            f"used up their {rules.timeout * BUDGET_FACTOR:.1f} s for this email"
        )
    return (
        f"rule [{table}] in {rules.name} (line {line}): the regex timed out after "
        f"{rules.timeout * 1000:.0f} ms and was skipped"
    )


def _texts(rule: FieldRule, document: Document) -> list[tuple[str, str]]:
    if rule.source == "subject":
        return [("subject", document.subject)]
    lines = document.lines
    if rule.source == "html":
        lines = [line for line in lines if line.location.startswith("html")]
    return [(line.location, line.text) for line in lines]


def _after_label(
    texts: list[tuple[str, str]], labels: tuple[str, ...]
) -> list[tuple[str, str]]:
    found = []
    for index, (where, text) in enumerate(texts):
        folded = text.casefold()
        for label in labels:
            position = folded.find(label.casefold())
            if position < 0:
                continue
            rest = _SEPARATOR.sub("", text[position + len(label) :]).strip()
            if not rest and index + 1 < len(texts):
                # The value sits in the next table cell, the next line.
                rest = texts[index + 1][1].strip()
            if rest:
                found.append((where, rest))
            break
    return found


def _selected(rule: FieldRule, document: Document) -> list[tuple[str, str]]:
    assert rule.selector is not None
    found = []
    for number, html in enumerate(document.html):
        soup = BeautifulSoup(html, "lxml")
        for element in soup.select(rule.selector):
            text = " ".join(element.get_text(" ").split())
            if text:
                found.append((f"html[{number}] {rule.selector}", text))
    return found


def _pattern_values(
    rule: FieldRule,
    rules: RuleSet,
    texts: list[tuple[str, str]],
    result: RuleResult,
    clock: _Clock,
) -> list[tuple[str, str]]:
    assert rule.pattern is not None
    found: list[tuple[str, str]] = []
    for where, text in texts:
        try:
            match = rule.pattern.search(text, timeout=clock.limit())
        except TimeoutError:
            result.problems.append(
                _timed_out(rules, rule.field.value, rule.line, clock)
            )
            return found
        if match is None:
            continue
        groups = match.groupdict()
        if "value" in groups:
            value = groups["value"]
        elif match.groups():
            value = match.group(1)
        else:
            value = match.group()
        if value:
            found.append((where, value))
    return found


def _normalize(field_name: FieldName, value: str) -> str | None:
    value = " ".join(value.split())
    if field_name == FieldName.TRACKING_NUMBER:
        value = re.sub(r"[\s-]", "", value).upper()
        return value if re.fullmatch(r"[A-Z0-9]{4,40}", value) else None
    if field_name == FieldName.ORDER_NUMBER:
        value = value.lstrip("#").strip()
        return value or None
    if field_name == FieldName.CUSTOMER_EMAIL:
        match = _EMAIL.search(value)
        return match.group().lower() if match else None
    if field_name == FieldName.CARRIER:
        if value in carriers():
            return value
        names = find_carrier_names(value)
        return names[0][0] if names else None
    return value or None


def _apply_field(
    rule: FieldRule,
    document: Document,
    rules: RuleSet,
    result: RuleResult,
    clock: _Clock,
) -> None:
    table = rule.field.value
    if rule.value is not None:
        result.candidates.append(
            Candidate(
                rule.field,
                rule.value,
                1.0,
                _evidence(rules, table, rule.line, "rule file", rule.value),
            )
        )
        return
    if rule.selector is not None:
        found = _selected(rule, document)
    elif rule.labels:
        found = _after_label(_texts(rule, document), rule.labels)
    else:
        found = _texts(rule, document)
    if rule.pattern is not None:
        found = _pattern_values(rule, rules, found, result, clock)
    elif not rule.selector and not rule.labels:
        found = []
    seen: set[str] = set()
    for where, raw in found:
        value = _normalize(rule.field, raw)
        if value is None or value in seen:
            continue
        seen.add(value)
        result.candidates.append(
            Candidate(
                rule.field,
                value,
                1.0,
                _evidence(rules, table, rule.line, where, raw),
                carrier=rule.carrier,
            )
        )
        if rule.field != FieldName.TRACKING_NUMBER:
            break


# Parsing and checking.


def _key_lines(text: str) -> dict[tuple[str, str], int]:
    """Map (table, key) to its line number, and (table, "") to the header's."""
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped)
        if header:
            table = header.group(1)
            lines.setdefault((table, ""), number)
            continue
        key = re.match(r"^([A-Za-z0-9_.-]+)\s*=", stripped)
        if key:
            # A dotted key (order_number.regex = ...) belongs to its first part.
            first, _, rest = key.group(1).partition(".")
            if rest:
                lines.setdefault((first, ""), number)
                lines.setdefault((first, rest.partition(".")[0]), number)
            else:
                lines.setdefault((table, first), number)
    return lines


class _Checker:
    def __init__(self, name: str, text: str, timeout: float) -> None:
        self.name = name
        self.lines = _key_lines(text)
        self.timeout = timeout
        self.problems: list[RuleProblem] = []

    def line(self, table: str, key: str = "") -> int | None:
        return self.lines.get((table, key)) or self.lines.get((table, ""))

    def problem(self, table: str, key: str, message: str) -> None:
        self.problems.append(RuleProblem(self.line(table, key), message))

    def string(self, table: str, key: str, value: Any) -> str | None:
        if isinstance(value, str) and value.strip():
            return value
        self.problem(
            table, key, f"[{table}] {key} must be a non-empty string in quotes"
        )
        return None

    def strings(self, table: str, key: str, value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if (
            isinstance(items, list)
            and items
            and all(isinstance(item, str) and item.strip() for item in items)
        ):
            return tuple(items)
        self.problem(
            table, key, f"[{table}] {key} must be a string or a list of strings"
        )
        return ()

    def pattern(self, table: str, key: str, value: Any) -> regex.Pattern[str] | None:
        source = self.string(table, key, value)
        if source is None:
            return None
        try:
            compiled = regex.compile(source, regex.IGNORECASE | regex.MULTILINE)
        except regex.error as error:
            self.problem(
                table,
                key,
                f"[{table}] {key} is not a valid regular expression: {error}. Escape "
                r"special characters such as ( ) [ ] . + ? with a backslash",
            )
            return None
        for probe in _PROBE_STRINGS:
            try:
                compiled.search(probe, timeout=self.timeout)
            except TimeoutError:
                self.problem(
                    table,
                    key,
                    f"[{table}] {key} takes longer than {self.timeout * 1000:.0f} ms "
                    "on a test string: remove nested repetition such as (a+)+ or "
                    "(\\w*)*, or anchor the pattern to a label",
                )
                return None
        if compiled.groups > 1 and "value" not in compiled.groupindex:
            self.problem(
                table,
                key,
                f"[{table}] {key} has {compiled.groups} groups: name the one with "
                "the value (?P<value>...), or use (?:...) for the others",
            )
            return None
        return compiled

    def selector(self, table: str, key: str, value: Any) -> str | None:
        source = self.string(table, key, value)
        if source is None:
            return None
        try:
            soupsieve.compile(source)
        except soupsieve.SelectorSyntaxError as error:
            self.problem(
                table,
                key,
                f"[{table}] {key} is not a valid CSS selector: {error.args[0]}",
            )
            return None
        return source

    def layers(self, table: str, key: str, value: Any) -> frozenset[str]:
        names = self.strings(table, key, value)
        unknown = [name for name in names if name not in LAYERS]
        if unknown:
            self.problem(
                table,
                key,
                f"[{table}] {key} names unknown layers {unknown}: use "
                f"{', '.join(sorted(LAYERS))}",
            )
        return frozenset(LAYERS[name] for name in names if name in LAYERS)

    def carrier(self, table: str, key: str, value: Any) -> str | None:
        slug = self.string(table, key, value)
        if slug is not None and slug not in carriers() and slug != "other":
            self.problem(
                table,
                key,
                f"[{table}] {key} = {slug!r} is not a carrier slug; use one of "
                f"{', '.join(sorted(carriers())[:8])}, ... (docs/rules.md lists all)",
            )
            return None
        return slug


def _check_field(checker: _Checker, table: str, body: Any) -> FieldRule | None:
    if not isinstance(body, dict):
        checker.problem(table, "", f"{table} must be a table: write [{table}]")
        return None
    for key in body:
        if key not in FIELD_KEYS:
            checker.problem(
                table,
                key,
                f"[{table}] has no key {key!r}: use {', '.join(sorted(FIELD_KEYS))}",
            )
    field_name = FIELD_TABLES[table]
    selector = (
        checker.selector(table, "selector", body["selector"])
        if ("selector" in body)
        else None
    )
    labels = checker.strings(table, "label", body["label"]) if "label" in body else ()
    pattern = (
        checker.pattern(table, "regex", body["regex"]) if "regex" in body else None
    )
    source = body.get("source", "text")
    if source not in SOURCES:
        checker.problem(
            table, "source", f"[{table}] source must be one of {', '.join(SOURCES)}"
        )
    disable = (
        checker.layers(table, "disable", body["disable"])
        if ("disable" in body)
        else frozenset()
    )
    carrier = None
    if "carrier" in body:
        if field_name != FieldName.TRACKING_NUMBER:
            checker.problem(
                table, "carrier", f"carrier goes in [tracking_number], not [{table}]"
            )
        carrier = checker.carrier(table, "carrier", body["carrier"])
    value = None
    if "value" in body:
        if field_name != FieldName.CARRIER:
            checker.problem(
                table,
                "value",
                f"a fixed value is only allowed in [carrier], not [{table}]",
            )
        value = checker.carrier(table, "value", body["value"])
    if "selector" in body and "label" in body:
        checker.problem(
            table, "label", f"[{table}] has both selector and label: keep one of them"
        )
    finders = {"selector", "label", "regex", "value"} & set(body)
    if not finders and "disable" not in body:
        checker.problem(
            table,
            "",
            f"[{table}] finds nothing: give a selector, a label, a regex or (for "
            "[carrier]) a value",
        )
    line = checker.line(table) or 0
    return FieldRule(
        field=field_name,
        line=line,
        selector=selector,
        labels=labels,
        pattern=pattern,
        source=source if source in SOURCES else "text",
        disable=disable,
        carrier=carrier,
        value=value,
    )


def _check_kind(
    checker: _Checker, body: Any
) -> list[tuple[Kind, regex.Pattern[str], int]]:
    if not isinstance(body, dict):
        checker.problem("kind", "", "kind must be a table: write [kind]")
        return []
    found = []
    kinds = {kind.value: kind for kind in Kind}
    for key, value in body.items():
        if key not in kinds:
            checker.problem(
                "kind",
                key,
                f"[kind] has no kind {key!r}: use {', '.join(sorted(kinds))}",
            )
            continue
        pattern = checker.pattern("kind", key, value)
        if pattern is not None:
            found.append((kinds[key], pattern, checker.line("kind", key) or 0))
    return found


def parse_rules(text: str, name: str, timeout: float = DEFAULT_TIMEOUT) -> RuleSet:
    """Parse and check a rule file's ``text``; raise RuleFileError on any problem."""
    try:
        data = tomllib.loads(text)
    except RecursionError as error:
        raise RuleFileError(
            name,
            [RuleProblem(None, "the file nests tables or arrays too deeply to read")],
        ) from error
    except tomllib.TOMLDecodeError as error:
        located = re.search(r"at line (\d+)", str(error))
        line = int(located.group(1)) if located else None
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(error))
        raise RuleFileError(
            name,
            [
                RuleProblem(
                    line,
                    f"TOML syntax error: {message}. Strings need quotes; use single "
                    "quotes around regular expressions so backslashes stay as written",
                )
            ],
        ) from error

    checker = _Checker(name, text, timeout)
    rules = RuleSet(name=name, timeout=timeout)
    for table, body in data.items():
        if table in FIELD_TABLES:
            rule = _check_field(checker, table, body)
            if rule is not None:
                rules.fields[rule.field] = rule
        elif table == "kind":
            rules.kind_patterns = _check_kind(checker, body)
        elif table == "generic":
            if not isinstance(body, dict) or set(body) - {"disable"}:
                checker.problem(
                    "generic", "", "[generic] takes only disable = [layer, ...]"
                )
            elif "disable" in body:
                rules.disable_all = checker.layers(
                    "generic", "disable", body["disable"]
                )
        elif not isinstance(body, dict):
            checker.problem(
                "",
                table,
                f"{table} = ... outside a table: rule keys go in a table such "
                "as [order_number]",
            )
        else:
            known = ", ".join([*FIELD_TABLES, "kind", "generic"])
            checker.problem(table, "", f"unknown table [{table}]: use {known}")
    if checker.problems:
        raise RuleFileError(name, checker.problems)
    return rules
