"""The repair stage: a failed frame in, the exact telegram the meter sent or a reasoned rejection
out. Sans-I/O.

Hypotheses are generated in order of likelihood, each a small set of candidate bodies:
the start byte after an idle gap (`start`), a damaged end of frame (`frame_end`), bytes the
template predicts (`template`: OBIS codes, units, separators, the 0xFF run, unchanged lines),
value digits whose position is known because the received byte is not a digit (`erasure`),
one digit-for-digit error located from the CRC syndrome (`syndrome`), inserted garbage or one
dropped byte inside the window where the frame leaves the template (`delete`, `insert`), a
damaged checksum field on an intact body (`checksum`), and a frame split in two by a byte that
turned into `/` (`join`).

A candidate is accepted only if its CRC matches, it fits the template exactly, it decodes, it is
plausible after the meter's previous telegram, and it is the only candidate that does: two
fitting candidates mean rejection. Uniqueness protects only if no check can refuse the telegram
the meter really sent, so every check here is one a real telegram always passes (physics, the
meter's own history); a heuristic that merely prefers some candidates would not be safe.
Every CRC-tested hypothesis adds about 1/65 536 to the chance of a false accept, so `tried` is
counted and the sets stay small.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from agent.core.crc import FUNCTIONS
from agent.core.framing import Frame
from agent.core.repair.align import align
from agent.core.repair.outcome import Candidate, Change, Found, Outcome
from agent.core.repair.plausible import implausible
from agent.core.repair.profile import CONST, DIGIT, MeterProfile, Template
from agent.core.repair.risk import budget, originals, syndrome_space
from agent.core.repair.syndrome import single_byte_errors
from agent.core.telegram import Decoder, Telegram

MAX_EDITS = 8  # more damaged bytes than this: rejected, never "repaired"
MAX_ERASURES = 2  # unknown digits solved by brute force against the CRC (10² candidates)
MAX_INSERTED = 8  # garbage bytes removed in one run
MAX_WINDOW = 48  # widest stretch searched for an inserted or dropped byte
_HEX = frozenset(b"0123456789ABCDEFabcdef")


@dataclass(frozen=True, slots=True)
class _Base:
    """What the frame looks like once its boundaries are settled: body, checksum text, steps."""

    body: bytes
    checksum: bytes
    methods: tuple[str, ...]


def _format_checksum(value: int, length: int) -> bytes:
    return b"%0*X" % (length, value) if length >= 4 else b"%X" % value


def _computed(body: bytes, profile: MeterProfile, crc: Callable[[bytes], int]) -> bytes:
    """The checksum this meter would have written for `body`."""
    assert profile.checksum_length is not None
    return _format_checksum(crc(body), profile.checksum_length)


def _one_edit_apart(a: bytes, b: bytes) -> bool:
    """True when `a` becomes `b` by one substitution, insertion or deletion."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _changes(received: bytes, accepted: bytes, template: Template) -> tuple[Change, ...]:
    """Byte changes from what arrived to what was accepted, with offsets in the accepted bytes."""
    out: list[Change] = []
    if len(received) == len(accepted):
        run: list[int] = []
        for i in (i for i in range(len(received)) if received[i] != accepted[i]):
            if run and i != run[-1] + 1:
                out.append(
                    _change(received, accepted, run[0], run[-1] + 1, run[0], run[-1] + 1, template)
                )
                run = []
            run.append(i)
        if run:
            out.append(
                _change(received, accepted, run[0], run[-1] + 1, run[0], run[-1] + 1, template)
            )
        return tuple(out)
    prefix = 0
    while prefix < min(len(received), len(accepted)) and received[prefix] == accepted[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(received), len(accepted)) - prefix
        and received[-1 - suffix] == accepted[-1 - suffix]
    ):
        suffix += 1
    return (
        _change(
            received,
            accepted,
            prefix,
            len(received) - suffix,
            prefix,
            len(accepted) - suffix,
            template,
        ),
    )


def _change(
    received: bytes, accepted: bytes, r0: int, r1: int, a0: int, a1: int, template: Template
) -> Change:
    line = template.line_of(a0) if a0 < len(template.reference) else "checksum"
    return Change(a0, received[r0:r1], accepted[a0:a1], line)


class Repairer:
    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder

    # -- entry point -----------------------------------------------------------------------

    def repair(
        self, frame: Frame, profile: MeterProfile, prefix: bytes | None = None, stale: int = 0
    ) -> Outcome:
        """Repair `frame`; `prefix` holds the bytes of an earlier frame that ended too soon, when
        the two may be one telegram split by a damaged byte; `stale` counts the meter's telegrams
        lost since its last accepted one (the older the history, the fewer hypotheses allowed)."""
        template = profile.template()
        if not profile.ready or template is None or profile.crc is None:
            return Outcome(reason="no_profile")
        assert profile.checksum_length is not None
        received = (prefix or b"") + frame.text
        bases = list(self._bases(frame, template, profile.checksum_length, prefix))
        if not bases:
            return Outcome(reason="unrecognised_frame")
        survivors: dict[bytes, tuple[bytes, Telegram, tuple[str, ...]]] = {}
        tried = 0
        reason = "unrepairable"
        limit = budget(stale)
        for base in bases:
            try:
                found, count = self._search(base, template, profile, limit - tried)
            except _TooMany:
                reason = "too_many_errors"
                continue
            except _Ambiguous:
                return Outcome(reason="ambiguous", tried=tried)
            tried += count
            for body, checksum, telegram, methods in found:
                survivors.setdefault(body + b"!" + checksum, (body, telegram, methods))
        if not survivors:
            # Several edits of different kinds (a byte lost beside a damaged one): align.
            for base in bases:
                found, count = self._aligned(base, template, profile, limit - tried)
                tried += count
                for body, checksum, telegram, methods in found:
                    survivors.setdefault(body + b"!" + checksum, (body, telegram, methods))
        if len(survivors) > 1:
            return Outcome(reason="ambiguous", tried=tried)
        if not survivors:
            return Outcome(reason=reason, tried=tried)
        if tried > limit:
            return Outcome(reason="too_many_hypotheses", tried=tried)
        text, (body, telegram, methods) = next(iter(survivors.items()))
        checksum = text[len(body) + 1 :]
        accepted = body + checksum
        return Outcome(
            body=body,
            checksum=checksum,
            telegram=telegram,
            method="+".join(dict.fromkeys(methods)),
            changes=_changes(received, accepted, template),
            tried=tried,
        )

    # -- frame boundaries ------------------------------------------------------------------

    def _bases(
        self, frame: Frame, template: Template, checksum_length: int, prefix: bytes | None
    ) -> Iterator[_Base]:
        raw = frame.body
        methods: tuple[str, ...] = ()
        if prefix is not None:
            raw = prefix + raw  # the byte that split the frame is now a damaged body byte
            methods = ("join",)
        checksum = frame.checksum or b""
        if frame.truncated:
            end = self._frame_end(raw, checksum_length)
            if end is None:
                return
            raw, checksum = end
            methods += ("frame_end",)
        reference = template.reference
        header = reference[1 : reference.find(b"\r\n")]
        if prefix is None and (raw[:1] != b"/" or frame.headless):
            # The `/` after an idle gap arrived mangled, was lost, or garbage came first.
            at = raw.find(header, 0, len(header) + MAX_INSERTED + 1)
            if at < 0:
                return
            raw = b"/" + raw[at:]
            methods += ("start",)
        restored = template.restore_runs(raw)
        if restored is not raw:
            raw = restored
            methods += ("block",)
        yield _Base(raw, checksum, methods)

    @staticmethod
    def _frame_end(raw: bytes, checksum_length: int) -> tuple[bytes, bytes] | None:
        """Body and checksum text of a frame whose end marker or line end was damaged."""
        bang = raw.rfind(b"\r\n!")
        if bang >= 0 and len(raw) - bang <= 3 + checksum_length + 4:
            tail = raw[bang + 3 :]
            return raw[: bang + 3], tail.split(b"\r")[0].split(b"\n")[0][: checksum_length + 1]
        # `!` itself damaged: the last line is one byte and the checksum digits.
        cut = raw.rstrip(b"\r\n").rfind(b"\r\n")
        if cut < 0:
            return None
        line = raw[cut + 2 :].rstrip(b"\r\n")
        if len(line) == 1 + checksum_length and all(b in _HEX for b in line[1:]):
            return raw[: cut + 2] + b"!", line[1:]
        return None

    # -- candidate search ------------------------------------------------------------------

    def _search(
        self, base: _Base, template: Template, profile: MeterProfile, limit: int
    ) -> tuple[list[Found], int]:
        assert profile.crc is not None and profile.checksum_length is not None
        crc = FUNCTIONS[profile.crc]
        length = len(template.reference)
        checksum = base.checksum
        expected = (
            int(checksum, 16)
            if len(checksum) == profile.checksum_length and all(b in _HEX for b in checksum)
            else None
        )
        candidates: list[Candidate] = []
        searched = 0
        body = base.body
        extra = len(body) - length
        if extra == 0:
            candidates, searched = self._equal_length(body, template, profile, expected, limit)
        elif 0 < extra <= MAX_INSERTED:
            candidates = list(self._deleted(body, extra, template))
        elif extra == -1:
            candidates = list(self._inserted(body, template))
        else:
            return [], 0
        found: list[Found] = []
        tried = searched
        guesses = [c for c in candidates if "syndrome" in c.methods]
        if guesses and _one_edit_apart(_computed(candidates[0].body, profile, crc), checksum):
            # The body as the template restores it would fit the checksum with one character
            # damaged: then the checksum, not the body, may be wrong, and a guess would "fit"
            # the body to a damaged checksum. Two explanations: ambiguous.
            raise _Ambiguous
        if expected is not None:
            for candidate, methods in candidates:
                if "syndrome" not in methods:  # those are counted in `searched`
                    tried += 1
                if crc(candidate) != expected:
                    continue
                accepted = self._accept(candidate, template, profile)
                if accepted is not None:
                    # Written as this meter writes it (a letter's case can be damaged too).
                    text = checksum.upper() if profile.uppercase else checksum
                    found.append(Found(candidate, text, accepted, base.methods + methods))
        if extra == 0 and template.violations(body, 0) == []:
            # An intact body with a damaged checksum field: the computed checksum must be one
            # edit away from what arrived (12 of 16 bits agree), and the body fit everything.
            computed = _computed(body, profile, crc)
            tried += 1
            if _one_edit_apart(computed, checksum):
                accepted = self._accept(body, template, profile)
                if accepted is not None:
                    found.append(Found(body, computed, accepted, (*base.methods, "checksum")))
        return found, tried

    def _aligned(
        self, base: _Base, template: Template, profile: MeterProfile, budget: int
    ) -> tuple[list[Found], int]:
        """Every combination of the explanations the alignment found at each site, CRC-tested;
        refused whole when there are more combinations than the budget allows."""
        assert profile.crc is not None and profile.checksum_length is not None
        checksum = base.checksum
        if len(checksum) != profile.checksum_length or not all(b in _HEX for b in checksum):
            return [], 0
        expected = int(checksum, 16)
        sites = align(base.body, template, MAX_EDITS, profile.clears)
        if not sites:
            return [], 0
        combinations = math.prod(len(site.options) for site in sites)
        if combinations > budget:
            return [], 0
        crc = FUNCTIONS[profile.crc]
        length = len(template.reference)
        body = base.body
        found: list[Found] = []
        tried = 0
        methods = (*base.methods, "align")
        text = checksum.upper() if profile.uppercase else checksum
        for choice in itertools.product(*(site.options for site in sites)):
            pieces: list[bytes] = []
            at = 0
            for site, option in zip(sites, choice, strict=True):
                pieces += (body[at : site.start], option)
                at = site.end
            pieces.append(body[at:])
            candidate = b"".join(pieces)
            if len(candidate) != length:
                continue
            tried += 1
            if crc(candidate) != expected:
                continue
            accepted = self._accept(candidate, template, profile)
            if accepted is not None:
                found.append(Found(candidate, text, accepted, methods))
        return found, tried

    def _accept(self, body: bytes, template: Template, profile: MeterProfile) -> Telegram | None:
        if template.violations(body, 0) != []:
            return None
        telegram = self.decoder.decode(body)
        if implausible(telegram, profile.history) is not None:
            return None
        return telegram

    def _equal_length(
        self,
        body: bytes,
        template: Template,
        profile: MeterProfile,
        expected: int | None,
        limit: int,
    ) -> tuple[list[Candidate], int]:
        """Candidates for a body of the right length, and how many single-digit hypotheses the
        CRC syndrome search weighed without listing them (each risks 1/65 536 too); the syndrome
        is not asked when those would exceed `limit`."""
        assert profile.crc is not None
        kind = profile.crc
        crc = FUNCTIONS[kind]
        violations = template.violations(body, MAX_EDITS)
        if violations is None:
            raise _TooMany
        fixed = bytearray(body)
        erasures = []
        for position in violations:
            if template.classes[position] == CONST:
                fixed[position] = template.reference[position]
            else:
                erasures.append(position)
        if len(erasures) > MAX_ERASURES:
            raise _TooMany
        methods: tuple[str, ...] = ("template",) if len(erasures) < len(violations) else ()
        candidates: list[Candidate] = []
        if erasures:
            for choice in itertools.product(*(template.allowed(p) for p in erasures)):
                for position, byte in zip(erasures, choice, strict=True):
                    fixed[position] = byte
                candidates.append(Candidate(bytes(fixed), (*methods, "erasure")))
            return candidates, 0
        restored = bytes(fixed)
        candidates.append(
            Candidate(restored, methods)
        )  # a settled boundary or template bytes may do
        if expected is None or len(violations) >= MAX_EDITS:
            return candidates, 0
        syndrome = crc(restored) ^ expected
        if syndrome == 0:
            return candidates, 0
        # One digit-for-digit error left: only the CRC can say where.
        space = syndrome_space(
            template, restored, profile.history, profile.clears, self.decoder.zone.parse
        )
        if space > limit:
            return candidates, 0
        for position, mask in single_byte_errors(kind, len(restored), syndrome):
            byte = restored[position] ^ mask
            if (
                profile.clears
                and template.classes[position] == DIGIT
                and byte not in originals(restored[position], True)
            ):
                continue  # not counted in `space` either
            if template.classes[position] != CONST and template.fits(position, byte):
                candidate = bytearray(restored)
                candidate[position] = byte
                candidates.append(Candidate(bytes(candidate), (*methods, "syndrome")))
        return candidates, space

    @staticmethod
    def _window(body: bytes, template: Template) -> range:
        """Positions (in the repaired body) where the one edit that makes `body` as long as the
        template may sit: no later than the first byte that breaks the template counting from the
        start, no earlier than the first counting from the end."""
        length = len(template.reference)
        fits = template.fits
        forward = 0
        limit = min(length, len(body))
        while forward < limit and fits(forward, body[forward]):
            forward += 1
        backward = 0  # bytes matching from the end
        while backward < limit and fits(length - 1 - backward, body[len(body) - 1 - backward]):
            backward += 1
        dropped = max(length - len(body), 0)
        return range(max(0, length - backward - dropped), min(forward, length) + 1)

    def _deleted(self, body: bytes, extra: int, template: Template) -> Iterator[Candidate]:
        """Garbage bytes inserted in one run: try removing them at each position of the window."""
        tried = 0
        for at in self._window(body, template):
            if at > 0 and body[at + extra - 1] == body[at - 1]:
                continue  # inside a run of equal bytes every position gives the same telegram
            tried += 1
            if tried > MAX_WINDOW:
                return
            yield Candidate(body[:at] + body[at + extra :], ("delete",))

    def _inserted(self, body: bytes, template: Template) -> Iterator[Candidate]:
        """One byte dropped: try each byte the template allows at each position of the window."""
        tried = 0
        for at in self._window(body, template):
            if at >= len(template.reference):
                continue
            allowed = template.allowed(at)
            if at > 0 and len(allowed) == 1 and body[at - 1] == allowed[0]:
                continue  # inside a run of equal bytes every position gives the same telegram
            tried += 1
            if tried > MAX_WINDOW:
                return
            for byte in allowed:
                yield Candidate(body[:at] + bytes((byte,)) + body[at:], ("insert",))


class _TooMany(Exception):
    """More damage than a repair may undo."""


class _Ambiguous(Exception):
    """Two explanations of the damage fit; the frame is rejected rather than guessed."""
