"""Running the layers over one message and resolving their candidates."""

from __future__ import annotations

import logging

from extractors import greetings, kinds, labels, links, markup, patterns
from extractors.document import Document, read_attached, read_document
from extractors.message import ParsedMessage
from extractors.model import Candidate, Extraction
from extractors.resolver import Resolver
from extractors.rules import ShopRules

log = logging.getLogger("bcctrack.extract")


def extract_message(
    message: ParsedMessage, rules: ShopRules | None = None
) -> Extraction:
    """Extract kind, order number, shipments, customer and language.

    ``rules`` are the shop's own rules, the strongest layer; without them only
    the generic layers run. A message/rfc822 attachment is not read as a
    forward when the subject has no "Fwd:" and the message's own text is a
    long note. It is read anyway when that text yields neither an order
    number nor a shipment while the attachment does.
    """
    document = read_document(message)
    extraction = _extract(document, rules)
    unread = message.attached_messages and document.forwarded is None
    if unread and _has_nothing(extraction):
        attached = _extract(read_attached(message), rules)
        extraction = extraction if _has_nothing(attached) else attached
    extraction.defects = list(message.defects) + extraction.defects
    log.debug(
        "%s: %s, order %s, %d shipments from %d candidates",
        message.message_id,
        extraction.kind,
        extraction.order_number,
        len(extraction.shipments),
        len(extraction.candidates),
    )
    return extraction


def _has_nothing(extraction: Extraction) -> bool:
    return not (extraction.order_number or extraction.shipments)


def _extract(document: Document, rules: ShopRules | None) -> Extraction:
    candidates: list[Candidate] = []
    problems: list[str] = []
    if rules is not None:
        applied = rules.apply(document)
        candidates.extend(applied.candidates)
        problems = applied.problems
    candidates.extend(markup.candidates(document))
    candidates.extend(links.candidates(document))
    candidates.extend(labels.tracking_candidates(document))
    candidates.extend(patterns.sender_subject_candidates(document))
    candidates.extend(patterns.tracking_candidates(document))
    candidates.extend(labels.order_candidates(document))
    candidates.extend(kinds.candidates(document))
    candidates.extend(greetings.candidates(document))
    if rules is not None:
        candidates = [
            c for c in candidates if c.evidence.extractor not in rules.disabled(c.field)
        ]
    extraction = Resolver(document, candidates).resolve()
    extraction.defects = problems
    return extraction
