"""Where a damaged frame leaves its meter's template, edit by edit. Sans-I/O.

A real bad line damages a telegram in several places at once: a byte loses a bit (`0` → space,
`)` → `!`), a byte that became a control character is lost altogether (a terminal log drops it,
and so do some USB bridges), a `\\r` or a `.` goes missing beside a damaged digit. Walking the
received bytes against the template finds each such place as a `Site`: the received bytes there
and what the meter may have sent instead. Where a byte is missing from a run of digits, the walk
notices only at the run's end, so the site covers the run and lists every distinct way of putting
one digit back.

At each disagreement the walk tries the three explanations (a changed byte, a lost one, an extra
one) and keeps the one after which the most following bytes fit the template again.
"""

from __future__ import annotations

from dataclasses import dataclass

from agent.core.repair.profile import CONST, DIGIT, FLAG, Template

LOOKAHEAD = 10
_DIGITS = b"0123456789"
_BLOCK = 64


@dataclass(frozen=True, slots=True)
class Site:
    """Received bytes `start:end` and the byte strings the meter may have sent there."""

    start: int
    end: int
    options: tuple[bytes, ...]
    kind: str  # substitution | deletion | insertion


def likely_originals(received: int, allowed: bytes, clears: bool) -> bytes:
    """`allowed` bytes other than `received`, those a lost 1-bit explains first. On a line known
    to clear bits, only those."""
    supersets = bytes(b for b in allowed if b != received and b & received == received)
    if clears:
        return supersets
    return supersets + bytes(b for b in allowed if b != received and b not in supersets)


class _Walk:
    def __init__(self, body: bytes, template: Template, clears: bool) -> None:
        self.body = body
        self.template = template
        self.clears = clears
        self.reference = template.reference
        self.classes = template.classes

    def fits(self, i: int, j: int) -> bool:
        return self.template.fits(j, self.body[i])

    def score(self, i: int, j: int) -> int:
        """How many bytes fit from (i, j) on, up to LOOKAHEAD; reaching both ends counts full."""
        body, length = self.body, len(self.reference)
        for k in range(LOOKAHEAD):
            if i + k >= len(body) or j + k >= length:
                return LOOKAHEAD if (i + k >= len(body)) == (j + k >= length) else k
            if not self.template.fits(j + k, body[i + k]):
                return k
        return LOOKAHEAD

    def digit_run(self, i: int, j: int) -> tuple[int, int]:
        """Received digits that the walk matched to the template's digit run ending before j+1:
        (received start, template start)."""
        start = j
        while start > 0 and self.classes[start - 1] == DIGIT and j - start < i:
            start -= 1
        return i - (j - start), start

    def substitution(self, i: int, j: int) -> Site:
        kind = self.classes[j]
        if kind == CONST:
            options: bytes = self.reference[j : j + 1]
        else:
            allowed = _DIGITS if kind == DIGIT else b"SW"
            options = likely_originals(self.body[i], allowed, self.clears)
        return Site(i, i + 1, tuple(bytes((b,)) for b in options), "substitution")

    def deletion(self, i: int, j: int) -> Site:
        if self.classes[j] != DIGIT:
            return Site(i, i, (self.reference[j : j + 1],), "deletion")
        # A digit lost somewhere in the run: every distinct run with one digit put back.
        start, _ = self.digit_run(i, j)
        run = self.body[start:i]
        seen: dict[bytes, None] = {}
        for at in range(len(run) + 1):
            for digit in _DIGITS:
                seen.setdefault(run[:at] + bytes((digit,)) + run[at:], None)
        return Site(start, i, tuple(seen), "deletion")

    def insertion(self, i: int, j: int) -> Site:
        body = self.body
        if body[i] in _DIGITS and j > 0 and self.classes[j - 1] == DIGIT:
            # An extra digit in a run shows only at the run's end: any one of them may go.
            start, _ = self.digit_run(i, j - 1)
            run = body[start : i + 1]
            options = dict.fromkeys(run[:at] + run[at + 1 :] for at in range(len(run)))
            return Site(start, i + 1, tuple(options), "insertion")
        return Site(i, i + 1, (b"",), "insertion")


def align(body: bytes, template: Template, max_sites: int, clears: bool) -> list[Site] | None:
    """The sites where `body` leaves the template, in order; None when there are more than
    `max_sites` or a site has no option."""
    walk = _Walk(body, template, clears)
    reference = template.reference
    fits = template.fits
    length, size = len(reference), len(body)
    sites: list[Site] = []
    i = j = 0
    while i < size and j < length:
        if body[i : i + _BLOCK] == reference[j : j + _BLOCK]:
            i += _BLOCK
            j += _BLOCK
            continue
        if fits(j, body[i]):
            i += 1
            j += 1
            continue
        # Ties go to the explanation with fewer bytes changed: a changed byte, then a lost one.
        moves = (
            (walk.score(i + 1, j + 1), 2, "s"),
            (walk.score(i, j + 1), 1, "d"),
            (walk.score(i + 1, j), 0, "i"),
        )
        _, _, move = max(moves)
        if move == "s":
            site = walk.substitution(i, j)
            i, j = i + 1, j + 1
        elif move == "d":
            site = walk.deletion(i, j)
            j += 1
        else:
            site = walk.insertion(i, j)
            i += 1
        if not site.options:
            return None
        # A site over a digit run replaces the bytes of an earlier site: merge by dropping it.
        while sites and sites[-1].end > site.start:
            sites.pop()
        sites.append(site)
        if len(sites) > max_sites:
            return None
    if i < size:
        sites.append(Site(i, size, (b"",), "insertion"))
    elif j < length:
        if length - j > 1 and walk.classes[j] != CONST:
            return None
        sites.append(Site(size, size, (reference[j:],), "deletion"))
    if len(sites) > max_sites:
        return None
    return sites


__all__ = ["CONST", "DIGIT", "FLAG", "Site", "align", "likely_originals"]
