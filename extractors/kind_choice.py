"""Choosing an email's kind from its kind candidates.

- A kind from a shop rule or schema.org markup wins.
- Else a kind that only subjects decide (cancellation, return, delivery
  problem, other) wins when the subject names it.
- Else the most advanced shipment stage named in the lead of the email: the
  subject, and in each part the lines above its first tracking number or
  amount of money. Emails state the status there; below the tracking details
  and the order summary they explain and advise ("If your parcel was
  delivered but you cannot find it..."). When the lead names no stage, the
  most advanced stage named anywhere.
- Else a subject-only kind that the body names, else "other".

Phrases inside a condition ("once it has shipped") arrive rejected from the
kind phrases layer and do not count.
"""

from __future__ import annotations

from extractors import guards
from extractors.document import Line
from extractors.model import Candidate, Kind

# Kinds that only a subject decides.
SUBJECT_KINDS = (Kind.CANCELLATION, Kind.RETURN, Kind.DELIVERY_PROBLEM, Kind.OTHER)
# Shipment stages, least advanced first.
STAGES = (
    Kind.ORDER_CONFIRMATION,
    Kind.SHIPPING_CONFIRMATION,
    Kind.OUT_FOR_DELIVERY,
    Kind.AVAILABLE_FOR_PICKUP,
    Kind.DELIVERED,
)
_LEAD_LAYERS = ("labels", "patterns")


def choose_kind(
    kinds: list[Candidate], tracking: list[Candidate], lines: list[Line]
) -> Kind:
    """Return the kind and set the verdict of every kind candidate.

    ``tracking`` are the tracking-number candidates with their verdicts set,
    ``lines`` the document's lines; line numbers count the subject as 0.
    """
    candidates = [c for c in kinds if c.accepted is not False]
    markup = [c for c in candidates if c.evidence.extractor in ("rules", "markup")]
    chosen: Kind | None = Kind(markup[0].value) if markup else None
    subject = {Kind(c.value) for c in candidates if c.evidence.location == "subject"}
    if chosen is None:
        chosen = next((k for k in SUBJECT_KINDS if k in subject), None)
    lead = _lead(candidates, _lead_ends(tracking, lines))
    if chosen is None:
        chosen = _stage(lead) or _stage(candidates)
    if chosen is None:
        named = {Kind(c.value) for c in candidates}
        chosen = next((k for k in SUBJECT_KINDS if k in named), Kind.OTHER)
    _set_verdicts(candidates, chosen, {id(c) for c in lead})
    return chosen


def _set_verdicts(candidates: list[Candidate], chosen: Kind, lead: set[int]) -> None:
    for candidate in candidates:
        candidate.accepted = candidate.value == chosen
        if candidate.accepted:
            candidate.verdict = "chosen"
        elif lead and id(candidate) not in lead:
            candidate.verdict = (
                f"{chosen} wins; below the first tracking number or amount, "
                "emails advise rather than report"
            )
        else:
            candidate.verdict = f"{chosen} wins"


def _lead(candidates: list[Candidate], ends: dict[str, int]) -> list[Candidate]:
    return [
        c
        for c in candidates
        if c.line_number <= ends.get(c.evidence.location, c.line_number)
    ]


def _lead_ends(tracking: list[Candidate], lines: list[Line]) -> dict[str, int]:
    """Return per part the line of its first tracking number or amount of money."""
    ends: dict[str, int] = {}
    for candidate in tracking:
        location = candidate.evidence.location
        if not candidate.accepted or candidate.evidence.extractor not in _LEAD_LAYERS:
            continue
        if location != "subject" and candidate.line_number > 0:
            ends[location] = min(
                ends.get(location, candidate.line_number), candidate.line_number
            )
    priced: set[str] = set()
    for index, line in enumerate(lines, start=1):
        if line.location in priced or not guards.has_amount(line.text):
            continue
        priced.add(line.location)
        ends[line.location] = min(ends.get(line.location, index), index)
    return ends


def _stage(candidates: list[Candidate]) -> Kind | None:
    stages = [Kind(c.value) for c in candidates if Kind(c.value) in STAGES]
    return max(stages, key=STAGES.index) if stages else None
