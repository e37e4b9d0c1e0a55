"""Kedro-style "did you mean" suggestions for names the user mistyped."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

_MAX_FUZZY_LENGTH = 200
_MAX_FUZZY_CANDIDATES = 2_000


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `word`, or None when nothing is reasonably close."""
    options = sorted({str(c) for c in candidates})
    # difflib compares in time quadratic in the lengths: only names of a sane length are
    # compared, and only so many (a hostile file can hold 60,000 keys). A prefix of a longer
    # name ('row_count' for 'row_count_estimate') is a fair guess, so lengths may differ.
    similar = [c for c in options if len(c) <= _MAX_FUZZY_LENGTH][:_MAX_FUZZY_CANDIDATES]
    if len(word) <= _MAX_FUZZY_LENGTH:
        matches = difflib.get_close_matches(word, similar, n=1, cutoff=0.6)
        if matches:
            return matches[0]
    # Case slips ("ingress" for "Ingress") score low with difflib's ratio; catch them here.
    lowered = {c.lower(): c for c in options}
    return lowered.get(word.lower())


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """` (did you mean 'x'?)` to append to a message, or "" when there is no good guess."""
    match = closest(word, candidates)
    return f" (did you mean '{match}'?)" if match else ""


def one_of(candidates: Iterable[str], limit: int = 12) -> str:
    """A short, sorted, quoted list of valid choices for a hint."""
    options = sorted({str(c) for c in candidates})
    if not options:
        return "(none)"
    shown = ", ".join(f"'{c}'" for c in options[:limit])
    return shown + (f", ... ({len(options) - limit} more)" if len(options) > limit else "")


def article(noun: str) -> str:
    """"an Ingress", "a Channel"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"
