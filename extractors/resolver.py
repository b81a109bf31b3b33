"""The resolver: picks each field's value from the candidates, by the trust rules.

- Layers rank rules, markup, carrier links, labels, patterns, strongest first.
- A number found by pattern alone must pass its check digit, and either have
  a distinctive format or belong to a carrier the email names.
- A number in a carrier link or next to a tracking label is taken even when
  its format has no check digit or fails it; the verdict says so.
- When a link's number is nowhere in the visible text while the email shows
  another number of that carrier, the visible number wins.
- A value that is the order number, a phone number, a postcode, a date or a
  price is never a tracking number (the layers mark those as rejected).

Every candidate leaves with ``accepted`` and a ``verdict``, for ``--explain``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from extractors.carriers import (
    CheckResult,
    carrier_for_domain,
    find_carrier_names,
    match_formats,
    tracking_url,
)
from extractors.document import Document
from extractors.model import (
    Candidate,
    Customer,
    Extraction,
    FieldName,
    Kind,
    ShipmentResult,
)

_LANGUAGE_VOTERS = 5
_LAYER_RANK = {"rules": 0, "markup": 1, "links": 2, "labels": 3, "patterns": 4}
_TRUSTED_LAYERS = frozenset(["rules", "markup", "links", "labels"])
# Kinds an email can only have when it says so in its subject.
_SUBJECT_KINDS = (Kind.CANCELLATION, Kind.RETURN, Kind.DELIVERY_PROBLEM, Kind.OTHER)
# Shipment stages, least advanced first: the most advanced one named wins.
_STAGES = (
    Kind.ORDER_CONFIRMATION,
    Kind.SHIPPING_CONFIRMATION,
    Kind.OUT_FOR_DELIVERY,
    Kind.AVAILABLE_FOR_PICKUP,
    Kind.DELIVERED,
)


@dataclass
class CarrierContext:
    """The carriers an email points at besides its numbers."""

    sender: str | None = None
    named: list[str] = field(default_factory=list)
    linked: set[str] = field(default_factory=set)

    def all(self) -> list[str]:
        """Return every carrier in context, the sender's first."""
        found = [self.sender] if self.sender else []
        return list(dict.fromkeys([*found, *self.named, *sorted(self.linked)]))


def carrier_context(document: Document, candidates: list[Candidate]) -> CarrierContext:
    """Return the carriers named by the sender, the text and the links."""
    context = CarrierContext()
    if document.sender is not None:
        context.sender = carrier_for_domain(document.sender.domain)
        if document.sender.name:
            context.named.extend(
                s for s, _, _ in find_carrier_names(document.sender.name)
            )
    for text in [document.subject, *(line.text for line in document.lines)]:
        context.named.extend(slug for slug, _, _ in find_carrier_names(text))
    context.named = list(dict.fromkeys(context.named))
    context.linked = {
        c.carrier for c in candidates if c.evidence.extractor == "links" and c.carrier
    }
    return context


def _reject(candidate: Candidate, verdict: str) -> None:
    candidate.accepted = False
    candidate.verdict = verdict


def _accept(candidate: Candidate, verdict: str) -> None:
    candidate.accepted = True
    candidate.verdict = verdict


class Resolver:
    """Resolves one message's candidates into an Extraction."""

    def __init__(self, document: Document, candidates: list[Candidate]) -> None:
        self.document = document
        self.candidates = candidates
        self.context = carrier_context(document, candidates)
        self.visible = re.sub(r"[\s-]", "", document.visible_text()).upper()

    def of(self, field_name: FieldName) -> list[Candidate]:
        """Return the candidates for ``field_name``."""
        return [c for c in self.candidates if c.field == field_name]

    def resolve(self) -> Extraction:
        """Return the Extraction with every candidate's verdict set."""
        order_number = self.order_number()
        shipments = self.shipments(order_number)
        if order_number and any(s.tracking_number == order_number for s in shipments):
            order_number = None
        named = None
        if not shipments:
            named = self.context.sender or next(iter(self.context.named), None)
        return Extraction(
            kind=self.kind(),
            order_number=order_number,
            shipments=shipments,
            customer=self.customer(),
            language=self.language(),
            candidates=self.candidates,
            named_carrier=named,
            forwarded=self.document.forwarded,
        )

    def order_number(self) -> str | None:
        """Return the order number: strongest layer, then HTML over text."""
        candidates = [c for c in self.of(FieldName.ORDER_NUMBER) if c.accepted is None]
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

    def _trusted(self, number: str, found: list[Candidate]) -> Candidate | None:
        layers = [c for c in found if c.evidence.extractor in _TRUSTED_LAYERS]
        if layers:
            return min(layers, key=lambda c: _LAYER_RANK[c.evidence.extractor])
        for candidate in found:
            if candidate.evidence.extractor != "patterns":
                continue
            matches = [
                m for m in match_formats(number) if m.check == CheckResult.PASSED
            ]
            context = set(self.context.all())
            if any(m.format.distinctive or m.carrier in context for m in matches):
                return candidate
            _reject(
                candidate,
                "pattern alone, neither distinctive nor of a carrier the email names",
            )
        return None

    def shipments(self, order_number: str | None) -> list[ShipmentResult]:
        """Return the accepted tracking numbers with carriers and links."""
        by_number: dict[str, list[Candidate]] = defaultdict(list)
        for candidate in self.of(FieldName.TRACKING_NUMBER):
            if candidate.accepted is False:
                continue
            if candidate.value == order_number:
                _reject(candidate, "it is the order number")
                continue
            by_number[candidate.value].append(candidate)

        accepted: dict[str, tuple[Candidate, str | None]] = {}
        for number, found in by_number.items():
            best = self._trusted(number, found)
            if best is not None:
                accepted[number] = (best, self.carrier_of(number, found))

        self._drop_conflicting_links(accepted, by_number)
        results = []
        for number, (best, found_carrier) in accepted.items():
            carrier = self._rule_carrier() or found_carrier
            for candidate in by_number[number]:
                if candidate.accepted is None:
                    _accept(
                        candidate, self._verdict(number, carrier, candidate is best)
                    )
            url = tracking_url(carrier, number) or best.tracking_url
            results.append(ShipmentResult(number, carrier, url))
        for found in by_number.values():
            for candidate in found:
                if candidate.accepted is None:
                    _reject(candidate, "not trusted")
        return results

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
        accepted: dict[str, tuple[Candidate, str | None]],
        by_number: dict[str, list[Candidate]],
    ) -> None:
        def visible(number: str) -> bool:
            return number in self.visible

        for number, (_, carrier) in list(accepted.items()):
            layers = {c.evidence.extractor for c in by_number[number]}
            if layers != {"links"} or visible(number):
                continue
            shown = [
                other
                for other, (_, other_carrier) in accepted.items()
                if other != number
                and visible(other)
                and other_carrier in (carrier, None)
            ]
            if shown:
                del accepted[number]
                for candidate in by_number[number]:
                    _reject(
                        candidate,
                        f"the link's number is not shown; the visible {shown[0]} wins",
                    )

    def carrier_of(self, number: str, found: list[Candidate]) -> str | None:
        """Return the carrier of ``number``: its link or markup, else its format."""
        for candidate in sorted(
            found, key=lambda c: _LAYER_RANK.get(c.evidence.extractor, 9)
        ):
            if candidate.carrier and candidate.evidence.extractor in (
                "rules",
                "markup",
                "links",
            ):
                return candidate.carrier
        context = self.context.all()
        matches = match_formats(number)
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
        if len(context) == 1:
            return context[0]
        return None

    def kind(self) -> Kind:
        """Return the kind: markup status, else decisive subjects, else the stage."""
        candidates = self.of(FieldName.KIND)
        markup = [c for c in candidates if c.evidence.extractor in ("rules", "markup")]
        chosen: Kind | None = Kind(markup[0].value) if markup else None
        subject = {
            Kind(c.value) for c in candidates if c.evidence.location == "subject"
        }
        named = {Kind(c.value) for c in candidates}
        if chosen is None:
            chosen = next((k for k in _SUBJECT_KINDS if k in subject), None)
        if chosen is None:
            stages = [k for k in _STAGES if k in named]
            chosen = stages[-1] if stages else None
        if chosen is None:
            chosen = next((k for k in _SUBJECT_KINDS if k in named), Kind.OTHER)
        for candidate in candidates:
            if candidate.value == chosen:
                _accept(candidate, "chosen")
            else:
                _reject(candidate, f"{chosen} wins")
        return chosen

    def customer(self) -> Customer:
        """Return the customer: the original recipient of the BCC copy."""
        # TODO(greeting names): the name comes from To: only, although the
        # language data lists greetings ("Hello Anna,") to read it from.
        recipient = self.document.recipient
        email = recipient.email if recipient else None
        name = recipient.name if recipient else None
        # A shop rule for the customer wins over the To: header.
        for field_name in (FieldName.CUSTOMER_EMAIL, FieldName.CUSTOMER_NAME):
            for candidate in self.of(field_name):
                if candidate.evidence.extractor != "rules":
                    continue
                if field_name == FieldName.CUSTOMER_EMAIL:
                    email = email if email == candidate.value else candidate.value
                else:
                    name = candidate.value
                _accept(candidate, "chosen: a shop rule")
                break
        return Customer(email=email, name=name)

    def language(self) -> str | None:
        """Return the language: Content-Language, HTML lang, else the labels'."""
        for declared in (self.document.content_language, self.document.html_lang):
            code = (declared or "").split(",")[0].strip()[:2].lower()
            if code.isalpha() and len(code) == 2:
                return code
        # The subject's phrases decide, else the first few labels and phrases
        # of the body: a bilingual email leads with its main language.
        voters = [c for c in self.candidates if c.language]
        in_subject = [c for c in voters if c.evidence.location == "subject"]
        voters = in_subject or sorted(voters, key=self._line_index)[:_LANGUAGE_VOTERS]
        if not voters:
            return None
        votes = Counter(c.language for c in voters if c.language)
        first = {c.language: i for i, c in reversed(list(enumerate(voters)))}
        return max(votes, key=lambda code: (votes[code], -first[code]))

    @staticmethod
    def _line_index(candidate: Candidate) -> int:
        return candidate.line_number
