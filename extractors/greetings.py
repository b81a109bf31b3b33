"""The customer's name from the greeting that opens an email.

"Hi Christopher, your package is on the way", "Sehr geehrte Frau Weiß,",
"Hi, Jeremy!": a greeting of the language data at the start of a line, then
one to four words of a name, then a comma, a full stop, "!" or ":", or the
end of the line. Anything else after the words ("Hello Anna and welcome")
means they were not a name. Words that address no one ("Hello there",
"Liebe Kundin") and titles alone ("Bonjour Madame") give no name.
"""

from __future__ import annotations

import re
from functools import cache

from extractors import languages
from extractors.document import Document
from extractors.model import Candidate, Evidence, FieldName

EXTRACTOR = "labels"
_MAX_WORDS = 4
_MAX_WORD_LENGTH = 30
# A word of a name: letters, inner apostrophes, hyphens and dots
# ("O'Neill", "Anne-Marie", "Sig.ra"), and a full stop after an initial.
_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|['\u2019.\-](?=[^\W\d_]))*\.?")
_BETWEEN = re.compile(r"[ ]+")
_END = re.compile(r"\s*(?:[,!:;.]|$)")


@cache
def _greeting() -> re.Pattern[str]:
    pattern = languages.list_pattern("greetings")
    return re.compile(rf"^\s*(?:{pattern.pattern})\s*,?\s*", re.IGNORECASE)


@cache
def _words(list_name: str) -> frozenset[str]:
    return frozenset(languages.phrases(list_name))


def _name_after(text: str, position: int) -> str | None:
    words: list[str] = []
    ended = False
    while len(words) < _MAX_WORDS:
        match = _WORD.match(text, position)
        if match is None or len(match.group()) > _MAX_WORD_LENGTH:
            break
        word = match.group()
        position = match.end()
        # A full stop after more than an initial ("B.") ends the sentence.
        if word.endswith(".") and len(word) > 2:
            words.append(word[:-1])
            ended = True
            break
        words.append(word)
        if not (space := _BETWEEN.match(text, position)):
            break
        position = space.end()
    if not words or not (ended or _END.match(text, position)):
        return None
    return _name_of(words)


def _name_of(words: list[str]) -> str | None:
    folded = [word.casefold().rstrip(".") for word in words]
    if any(word in _words("not_names") for word in folded):
        return None
    if all(word in _words("name_titles") for word in folded):
        return None
    # A lower-case word is a name only alone: "Hi kyle," but not
    # "Hi ya jabroni,".
    if len(words) > 1 and not all(word[0].isupper() for word in words):
        return None
    return " ".join(words)


def candidates(document: Document) -> list[Candidate]:
    """Return the name of the first greeting that addresses someone by name."""
    greeting = _greeting()
    for number, line in enumerate(document.lines):
        match = greeting.match(line.text)
        if match is None:
            continue
        name = _name_after(line.text, match.end())
        if name is None:
            continue
        phrase = match.group("phrase")
        return [
            Candidate(
                field=FieldName.CUSTOMER_NAME,
                value=name,
                confidence=0.6,
                evidence=Evidence(
                    EXTRACTOR,
                    line.location,
                    line.text[:80],
                    f"after the greeting {phrase!r}",
                ),
                line_number=number,
            )
        ]
    return []
