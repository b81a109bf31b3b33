"""The resolver: picks each field's value from the candidates, by the trust rules.

- Layers rank rules, markup, carrier links, labels, patterns, strongest first.
- A number found by pattern alone must pass its check digit. Unless its
  format is distinctive, it must also belong to a carrier named on its line
  or the line before, and be printed as a number of its own (the patterns
  layer rejects the others). Such a number is not taken when a link, a label
  or markup gives the email's tracking numbers: beside those, it is more
  likely a phone number or a customer number than a second parcel.
- A number in a carrier link or next to a tracking label is taken even when
  its format has no check digit or fails it; the verdict says so.
- When a link's number is nowhere in the visible text while the email shows
  another number of that carrier, the visible number wins.
- The customer sees the HTML part: when it shows tracking numbers, a number
  found only in the text part is not taken.
- A value that is the order number, a phone number, a postcode, a date or a
  price is never a tracking number (the layers mark those as rejected), and a
  pattern number that is a part of the order number is none either.
- An email with more than ``MAX_TRACKING_NUMBERS`` trusted numbers is no
  shipment notice for one customer: none of them is taken.
- A carrier name that several carriers share ("DHL") is decided by the
  number's format, else by the email's language.
- The kind is chosen by ``kind_choice.choose_kind`` (its module docstring
  lists its rules).

Every candidate leaves with ``accepted`` and a ``verdict``, for ``--explain``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from extractors import languages
from extractors.carriers import (
    CheckResult,
    carrier_for_domain,
    carrier_for_language,
    find_carrier_names,
    match_formats,
    shared_name,
    tracking_url,
)
from extractors.document import Document
from extractors.kind_choice import choose_kind
from extractors.model import (
    Candidate,
    Customer,
    Extraction,
    FieldName,
    Kind,
    ShipmentResult,
)

_LANGUAGE_VOTERS = 5
# Function words that name a language when nothing else does, and that
# overrule a declared language when it has fewer than a quarter of them.
_MIN_FUNCTION_WORDS = 3
_CLEAR_FUNCTION_WORDS = 8
# No shop sends one customer more parcels than this in one email; more
# trusted numbers mean a report, a catalogue or hostile input.
MAX_TRACKING_NUMBERS = 50
_LAYER_RANK = {"rules": 0, "markup": 1, "links": 2, "labels": 3, "patterns": 4}
_TRUSTED_LAYERS = frozenset(["rules", "markup", "links", "labels"])


@dataclass
class CarrierContext:
    """The carriers an email points at besides its numbers."""

    sender: str | None = None
    # The carriers of each name printed in the email, in order; a name that
    # several carriers share ("DHL") gives all of them.
    names: list[tuple[str, ...]] = field(default_factory=list)
    linked: set[str] = field(default_factory=set)
    # The first name of a carrier that bcctrack does not track ("Mondial
    # Relay"), as printed: the customer update shows it for carrier "other".
    untracked_name: str | None = None

    @property
    def named(self) -> list[str]:
        """Every carrier a printed name names, without repeats."""
        return list(dict.fromkeys(slug for slugs in self.names for slug in slugs))

    def all(self) -> list[str]:
        """Return every carrier in context, the sender's first."""
        found = [self.sender] if self.sender else []
        return list(dict.fromkeys([*found, *self.named, *sorted(self.linked)]))


def _names_in(text: str) -> list[tuple[str, ...]]:
    grouped: dict[int, tuple[str, ...]] = {}
    for slug, offset, _ in find_carrier_names(text):
        grouped[offset] = (*grouped.get(offset, ()), slug)
    return list(grouped.values())


def _untracked_name(texts: list[str]) -> str | None:
    for text in texts:
        for slug, _, printed in find_carrier_names(text):
            if slug == "other":
                return printed
    return None


def carrier_context(document: Document, candidates: list[Candidate]) -> CarrierContext:
    """Return the carriers named by the sender, the text and the links."""
    context = CarrierContext()
    texts = [document.subject, *(line.text for line in document.lines)]
    if document.sender is not None:
        context.sender = carrier_for_domain(document.sender.domain)
        if document.sender.name:
            texts.insert(0, document.sender.name)
    for text in texts:
        context.names.extend(_names_in(text))
    context.names = list(dict.fromkeys(context.names))
    context.untracked_name = _untracked_name(texts)
    context.linked = {
        c.carrier for c in candidates if c.evidence.extractor == "links" and c.carrier
    }
    return context


def _in_html(candidate: Candidate) -> bool:
    location = candidate.evidence.location
    return location.startswith("html") or location == "schema.org markup"


_PRINTED_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)


def _compact(value: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", value.upper())


def _reject(candidate: Candidate, verdict: str) -> None:
    candidate.accepted = False
    candidate.verdict = verdict


def _accept(candidate: Candidate, verdict: str) -> None:
    candidate.accepted = True
    candidate.verdict = verdict


def _tracking_format_of(candidate: Candidate) -> str | None:
    """Return the carrier whose distinctive format an order label's value fits.

    "Your order 1Z999AA10123456784 has shipped": the value after the order
    label is the tracking number. Shop rules and markup name their field.
    """
    if candidate.evidence.extractor != "labels":
        return None
    for match in match_formats(_compact(candidate.value).upper()):
        if match.format.distinctive and match.check == CheckResult.PASSED:
            return match.carrier
    return None


def _clearly_ahead(counts: dict[str, int], ranked: list[str]) -> bool:
    """Return whether the first language of ``ranked`` leads by far."""
    first = counts[ranked[0]]
    second = counts[ranked[1]] if len(ranked) > 1 else 0
    return first >= _CLEAR_FUNCTION_WORDS and first >= 2 * second


class Resolver:
    """Resolves one message's candidates into an Extraction."""

    def __init__(self, document: Document, candidates: list[Candidate]) -> None:
        self.document = document
        self.candidates = candidates
        self.context = carrier_context(document, candidates)
        # A number inside a URL printed in the text part does not count as
        # printed, because only the link that carries it is displayed.
        without_urls = _PRINTED_URL.sub(" ", document.visible_text())
        self.visible = re.sub(r"[\s-]", "", without_urls).upper()

    def of(self, field_name: FieldName) -> list[Candidate]:
        """Return the candidates for ``field_name``."""
        return [c for c in self.candidates if c.field == field_name]

    def resolve(self) -> Extraction:
        """Return the Extraction with every candidate's verdict set."""
        language = self.language()
        order_number = self.order_number()
        shipments = self.shipments(order_number, language)
        if order_number and any(s.tracking_number == order_number for s in shipments):
            order_number = None
        named = None
        if not shipments:
            named = self.context.sender or self._named_carrier(language)
        return Extraction(
            kind=self.kind(),
            order_number=order_number,
            shipments=shipments,
            customer=self.customer(),
            language=language,
            candidates=self.candidates,
            named_carrier=named,
            forwarded=self.document.forwarded,
        )

    def _named_carrier(self, language: str | None) -> str | None:
        if not self.context.names:
            return None
        return carrier_for_language(list(self.context.names[0]), language)

    def order_number(self) -> str | None:
        """Return the order number: strongest layer, then HTML over text."""
        candidates = [c for c in self.of(FieldName.ORDER_NUMBER) if c.accepted is None]
        for candidate in candidates:
            carrier = _tracking_format_of(candidate)
            if carrier is not None:
                _reject(
                    candidate,
                    f"fits a distinctive {carrier} tracking-number format and "
                    "passes its check digit: a tracking number, not an order number",
                )
        candidates = [c for c in candidates if c.accepted is None]
        strong = [c for c in candidates if c.evidence.extractor in ("rules", "markup")]
        if self.context.sender and not strong:
            for candidate in candidates:
                _reject(
                    candidate, "a carrier's email: references there are the shipper's"
                )
            return None
        if not candidates:
            return None
        rank = min(_LAYER_RANK.get(c.evidence.extractor, 9) for c in candidates)
        top = [
            c for c in candidates if _LAYER_RANK.get(c.evidence.extractor, 9) == rank
        ]
        best_confidence = max(c.confidence for c in top)
        counts = Counter(c.value for c in top if c.confidence == best_confidence)
        winner = counts.most_common(1)[0][0]
        for candidate in candidates:
            if candidate.value == winner:
                _accept(candidate, "chosen")
            else:
                _reject(candidate, f"{winner!r} comes from a stronger layer or part")
        return winner

    def _trusted(
        self, number: str, found: list[Candidate], has_trusted: bool
    ) -> Candidate | None:
        layers = [c for c in found if c.evidence.extractor in _TRUSTED_LAYERS]
        if layers and all(c.weak for c in layers) and self._strong_elsewhere(number):
            for candidate in layers:
                _reject(
                    candidate,
                    "only a phrase that names the parcel, while a link, a label "
                    "or markup gives the email's tracking numbers",
                )
            layers = []
        if layers:
            return min(layers, key=lambda c: _LAYER_RANK[c.evidence.extractor])
        context = set(self.context.all())
        for candidate in found:
            if candidate.evidence.extractor != "patterns":
                continue
            matches = [
                m for m in match_formats(number) if m.check == CheckResult.PASSED
            ]
            if any(m.format.distinctive for m in matches):
                return candidate
            if not any(m.carrier in context for m in matches):
                _reject(
                    candidate,
                    "pattern alone, neither distinctive nor of a carrier the email "
                    "names",
                )
            elif has_trusted:
                _reject(
                    candidate,
                    "pattern alone and not distinctive, while a link, a label or "
                    "markup gives the email's tracking numbers",
                )
            else:
                return candidate
        return None

    def _strong_elsewhere(self, number: str) -> bool:
        """Tell whether strong evidence gives another tracking number."""
        return any(
            c.value != number
            and not c.weak
            and c.accepted is not False
            and c.evidence.extractor in _TRUSTED_LAYERS
            for c in self.of(FieldName.TRACKING_NUMBER)
        )

    def _tracking_candidates(
        self, order_number: str | None
    ) -> dict[str, list[Candidate]]:
        by_number: dict[str, list[Candidate]] = defaultdict(list)
        order = _compact(order_number) if order_number else ""
        for candidate in self.of(FieldName.TRACKING_NUMBER):
            if candidate.accepted is False:
                continue
            if candidate.value == order_number:
                _reject(candidate, "it is the order number")
                continue
            if (
                candidate.evidence.extractor == "patterns"
                and order
                and candidate.value in order
            ):
                _reject(candidate, f"a part of the order number {order_number!r}")
                continue
            by_number[candidate.value].append(candidate)
        return by_number

    def shipments(
        self, order_number: str | None, language: str | None = None
    ) -> list[ShipmentResult]:
        """Return the accepted tracking numbers with carriers and links."""
        by_number = self._tracking_candidates(order_number)
        has_trusted = any(
            c.evidence.extractor in _TRUSTED_LAYERS
            for found in by_number.values()
            for c in found
        )
        accepted: dict[str, Candidate] = {}
        for number, found in by_number.items():
            best = self._trusted(number, found, has_trusted)
            if best is not None:
                accepted[number] = best

        self._prefer_html(accepted, by_number)
        if len(accepted) > MAX_TRACKING_NUMBERS:
            self._reject_all(by_number, len(accepted))
            return []
        carriers = {
            number: self.carrier_of(number, by_number[number], language)
            for number in accepted
        }
        self._drop_conflicting_links(accepted, carriers, by_number)
        results = []
        rule_carrier = self._rule_carrier()
        for number, best in accepted.items():
            carrier = rule_carrier or carriers[number]
            for candidate in by_number[number]:
                if candidate.accepted is None:
                    _accept(
                        candidate, self._verdict(number, carrier, candidate is best)
                    )
            url = tracking_url(carrier, number) or best.tracking_url
            printed = self.context.untracked_name if carrier == "other" else None
            results.append(ShipmentResult(number, carrier, url, printed))
        for found in by_number.values():
            for candidate in found:
                if candidate.accepted is None:
                    _reject(candidate, "not trusted")
        return results

    def _prefer_html(
        self, accepted: dict[str, Candidate], by_number: dict[str, list[Candidate]]
    ) -> None:
        """Drop numbers found only in a text part when the HTML part shows others."""
        if not any(_in_html(c) for n in accepted for c in by_number[n]):
            return
        for number in list(accepted):
            found = by_number[number]
            if any(c.evidence.extractor == "rules" for c in found):
                continue
            if all(c.evidence.location.startswith("text") for c in found):
                del accepted[number]
                for candidate in found:
                    _reject(
                        candidate,
                        "only in the text part, while the HTML part, which the "
                        "customer sees, shows other tracking numbers",
                    )

    @staticmethod
    def _reject_all(by_number: dict[str, list[Candidate]], count: int) -> None:
        for found in by_number.values():
            for candidate in found:
                if candidate.accepted is None:
                    _reject(
                        candidate,
                        f"{count} tracking numbers in one email, more than "
                        f"{MAX_TRACKING_NUMBERS}: not a shipment notice",
                    )

    def _rule_carrier(self) -> str | None:
        """Return the carrier a shop rule sets for every shipment, if any."""
        for candidate in self.of(FieldName.CARRIER):
            if candidate.evidence.extractor == "rules":
                _accept(candidate, "chosen: a shop rule")
                return candidate.value
        return None

    def _verdict(self, number: str, carrier: str | None, best: bool) -> str:
        checks = {m.check for m in match_formats(number) if m.carrier == carrier}
        note = ""
        if CheckResult.FAILED in checks and CheckResult.PASSED not in checks:
            note = "; fails the check digit, taken because the email calls it one"
        elif not checks or checks == {CheckResult.NONE}:
            note = "; no check digit known for it"
        return ("accepted" if best else "accepted (also found here)") + note

    def _drop_conflicting_links(
        self,
        accepted: dict[str, Candidate],
        carriers: dict[str, str | None],
        by_number: dict[str, list[Candidate]],
    ) -> None:
        # One containment test per number, each linear in the text: the
        # number of accepted numbers is bounded by MAX_TRACKING_NUMBERS.
        visible_numbers = [number for number in accepted if number in self.visible]
        first_visible: dict[str | None, str] = {}
        for number in visible_numbers:
            first_visible.setdefault(carriers[number], number)
        for number in list(accepted):
            layers = {c.evidence.extractor for c in by_number[number]}
            if layers != {"links"} or number in visible_numbers:
                continue
            carrier = carriers[number]
            others = [first_visible.get(carrier), first_visible.get(None)]
            visible = [o for o in others if o is not None and o != number]
            if not visible:
                continue
            winner = min(visible, key=visible_numbers.index)
            del accepted[number]
            for candidate in by_number[number]:
                _reject(
                    candidate,
                    f"the link's number is not shown; the visible {winner} wins",
                )

    def carrier_of(
        self, number: str, found: list[Candidate], language: str | None = None
    ) -> str | None:
        """Return the carrier of ``number``: its link or markup, else its format.

        A carrier name printed right before the number counts first, then the
        sender of a carrier's own email for a number it labels, then the
        carriers the email names. A number that fits no known format takes
        the one carrier the email names, or the one a shared name means in
        the email's language.
        """
        for candidate in sorted(
            found, key=lambda c: _LAYER_RANK.get(c.evidence.extractor, 9)
        ):
            if candidate.carrier and candidate.evidence.extractor in (
                "rules",
                "markup",
                "links",
            ):
                return candidate.carrier
        hinted = [
            c.carrier for c in found if c.carrier and c.evidence.extractor == "labels"
        ]
        context = list(dict.fromkeys([*hinted, *self.context.all()]))
        matches = match_formats(number)
        sender = self.context.sender
        if sender and any(c.evidence.extractor == "labels" for c in found):
            # A carrier's own email labels its own numbers, unless the number
            # passes the check of another carrier's distinctive format.
            others = [
                m
                for m in matches
                if m.carrier != sender
                and m.check == CheckResult.PASSED
                and m.format.distinctive
            ]
            if not others:
                return sender
        for check in (CheckResult.PASSED, CheckResult.NONE, CheckResult.FAILED):
            fitting = [m.carrier for m in matches if m.check == check]
            in_context = [c for c in context if c in fitting]
            if in_context:
                return in_context[0]
            distinctive = [
                m.carrier for m in matches if m.check == check and m.format.distinctive
            ]
            if check != CheckResult.FAILED and len(set(distinctive)) == 1:
                return distinctive[0]
        labelled = any(c.evidence.extractor == "labels" for c in found)
        passes_distinctive = any(
            m.check == CheckResult.PASSED and m.format.distinctive for m in matches
        )
        if len(context) == 1 and labelled and not passes_distinctive:
            # One carrier is named ("shipped with FedEx", "Your Vinted Go
            # parcel"): the labelled number is its, whatever other carriers'
            # formats it happens to fit.
            return context[0]
        if matches:
            return None
        if len(context) == 1:
            return context[0]
        if shared_name(context):
            return carrier_for_language(context, language)
        return None

    def kind(self) -> Kind:
        """Return the kind (see ``kind_choice``); call after ``shipments``.

        A shop's email that names no stage but gives tracking numbers ("Your
        order is complete" above a tracking table) is a shipping confirmation.
        """
        chosen = choose_kind(
            self.of(FieldName.KIND),
            self.of(FieldName.TRACKING_NUMBER),
            self.document.lines,
        )
        named_other = any(c.value == Kind.OTHER for c in self.of(FieldName.KIND))
        tracked = any(c.accepted for c in self.of(FieldName.TRACKING_NUMBER))
        shop_email = self.context.sender is None
        if chosen == Kind.OTHER and tracked and shop_email and not named_other:
            return Kind.SHIPPING_CONFIRMATION
        return chosen

    def customer(self) -> Customer:
        """Return the customer: the original recipient of the BCC copy.

        The name is a shop rule's, else the ``To:`` display name, else the
        name in the email's greeting.
        """
        recipient = self.document.recipient
        email = recipient.email if recipient else None
        name = recipient.name if recipient else None
        ruled_name = False
        # A shop rule for the customer wins over the To: header.
        for field_name in (FieldName.CUSTOMER_EMAIL, FieldName.CUSTOMER_NAME):
            for candidate in self.of(field_name):
                if candidate.evidence.extractor != "rules":
                    continue
                if field_name == FieldName.CUSTOMER_EMAIL:
                    email = email if email == candidate.value else candidate.value
                else:
                    name = candidate.value
                    ruled_name = True
                _accept(candidate, "chosen: a shop rule")
                break
        for candidate in self.of(FieldName.CUSTOMER_NAME):
            if candidate.accepted is not None:
                continue
            if ruled_name:
                _reject(candidate, "a shop rule gives the name")
            elif name:
                _reject(candidate, f"the To: header names the customer {name!r}")
            else:
                name = candidate.value
                _accept(candidate, "chosen: the greeting names the customer")
        return Customer(email=email, name=name)

    def language(self) -> str | None:
        """Return the language: declared, else the labels', else the text's.

        Content-Language and then the HTML lang attribute declare it, unless
        the text's function words clearly name another language: templates
        keep a lang="en" of their own whatever language they are filled in.
        """
        counts = languages.function_word_counts(self.document.visible_text())
        ranked = sorted(counts, key=lambda code: counts[code], reverse=True)
        clear = ranked[0] if ranked and _clearly_ahead(counts, ranked) else None
        for declared in (self.document.content_language, self.document.html_lang):
            code = (declared or "").split(",")[0].strip()[:2].lower()
            if code.isalpha() and len(code) == 2:
                return (
                    clear if clear and counts.get(code, 0) * 4 < counts[clear] else code
                )
        # The subject's phrases decide, else the first few labels and phrases
        # of the body: a bilingual email leads with its main language.
        voters = [c for c in self.candidates if c.language]
        in_subject = [c for c in voters if c.evidence.location == "subject"]
        voters = in_subject or sorted(voters, key=self._line_index)[:_LANGUAGE_VOTERS]
        if not voters:
            return (
                ranked[0]
                if ranked and counts[ranked[0]] >= _MIN_FUNCTION_WORDS
                else None
            )
        votes = Counter(c.language for c in voters if c.language)
        first = {c.language: i for i, c in reversed(list(enumerate(voters)))}
        return max(votes, key=lambda code: (votes[code], -first[code]))

    @staticmethod
    def _line_index(candidate: Candidate) -> int:
        return candidate.line_number
