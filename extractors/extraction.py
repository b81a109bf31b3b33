"""Running the layers over one message and resolving their candidates."""

from __future__ import annotations

import logging

from extractors import kinds, labels, links, markup, patterns
from extractors.document import read_document
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
    the generic layers run.
    """
    document = read_document(message)
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
    if rules is not None:
        candidates = [
            c for c in candidates if c.evidence.extractor not in rules.disabled(c.field)
        ]
    extraction = Resolver(document, candidates).resolve()
    extraction.defects = list(message.defects) + problems
    log.debug(
        "%s: %s, order %s, %d shipments from %d candidates",
        message.message_id,
        extraction.kind,
        extraction.order_number,
        len(extraction.shipments),
        len(candidates),
    )
    return extraction
