"""Noise and pieces of telegrams never become accepted telegrams.

(a) Random bytes — hypothesis' binaries, a seeded mebibyte, and random bytes sprinkled with `/`,
    `!`, line ends and OBIS-looking lines — give no accepted telegram, to a fresh pipeline or to one
    warmed with 20 clean telegrams of a simulated meter.
(b) No truncation of a telegram at any byte is accepted: every prefix of a good-line telegram,
    of every fixture telegram and of every simulated flavour's, followed by a line end, by a new
    telegram's `/`, or by a noise-made `!` (mid-line, or at the start of a line, where it looks
    like an end). The rule the engine implements: a frame without a checksum is accepted only
    where the meter sends none (its flavour has no CRC, the `!` starts a line, the frame holds
    the meter's usual lines) — never once the meter was seen with a checksum, never for a DSMR
    4/5 version line, never from random bytes. So for a sealed telegram no prefix is ever
    accepted; for a checksum-less one a prefix cut mid-line never is, and once the meter's whole
    telegram was seen, a prefix without its usual lines never is (reason "fragment").
(c) A fragment — a sealed telegram cut where a `)` at a line end became `!` — is rejected as
    "fragment", or joined with its rest and accepted only as the exact telegram the CRC confirms.

The warm pipelines of (b) and (c) see real sequences: consecutive good-line telegrams, the
fixture telegram with its clock moved on 10 s at a time and its checksum recomputed (the
checksum-less fixtures, having no clock, repeat), or a simulated meter's telegrams. Each
truncated telegram sits between whole ones, so a fragment cannot be refused merely for repeating
a meter time.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
from conftest import TELEGRAM_NAMES, published
from consistency import GOOD_LINE, good_line_telegrams
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.crc import FUNCTIONS
from agent.core.pipeline import MeterPipeline, Result
from agent.simulate import FLAVOURS, SimulatedMeter

WARM_COUNT = 20
PIPELINES = ("cold", "hu", "dsmr5")  # fresh, or warmed with 20 telegrams of that flavour
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- helpers -------------------------------------------------------------------------------------


@cache
def _warm_up(flavour: str) -> bytes:
    meter = SimulatedMeter(flavour)
    return b"".join(meter.next_telegram() for _ in range(WARM_COUNT))


def pipeline_for(kind: str) -> MeterPipeline:
    pipeline = MeterPipeline()
    if kind != "cold":
        warm = pipeline.feed(_warm_up(kind))
        assert [r.status for r in warm] == ["valid"] * WARM_COUNT, kind
    return pipeline


def run(pipeline: MeterPipeline, data: bytes, chunk: int = 4096) -> list[Result]:
    results: list[Result] = []
    for at in range(0, len(data), chunk):
        results += pipeline.feed(data[at : at + chunk])
    return results + pipeline.close()


def _shown(results: list[Result]) -> list[tuple[int, str, bytes]]:
    return [(r.frame.offset, r.status, r.frame.text[-40:]) for r in results]


# -- (a) random bytes ----------------------------------------------------------------------------

OBIS_LINES = [
    b"1-0:1.8.0(000123.456*kWh)\r\n",
    b"1-0:1.8.1(000100.000*kWh)\r\n",
    b"1-0:32.7.0(230.1*V)\r\n",
    b"1-0:1.7.0(00.335*kW)\r\n",
    b"0-0:1.0.0(230502215000S)\r\n",
    b"0-0:96.1.1(4530303034303031353934373534343134)\r\n",
    b"0-0:96.13.0()\r\n",
    b"0-0:96.50.68(ON)\r\n",
    b"0-1:24.2.1(230502215000S)(01234.567*m3)\r\n",
    b"0-1:24.3.0(161107190000)(00)(60)(1)(0-1:24.2.1)(m3)\r\n(00001.001)\r\n",
]
SPRINKLES = [
    b"/", b"!", b"\r\n", b"\n", b"\r", b"!\r\n", b"\r\n!\r\n", b"(", b")", b"*kWh)", *OBIS_LINES,
]  # fmt: skip
_IDENTIFICATION = re.compile(rb"[A-Za-z]{3}\d[\x02\x20-\x7e]*\Z")  # IEC 62056-21: `/XXXZ…`
# Random bytes shaped like a frame: `/`, a random identification line (never a well-formed one:
# that would not be random), random or OBIS-looking lines, and an end without a checksum.
noise_frame = st.builds(
    lambda head, lines, end: b"/" + head + b"\r\n" + b"".join(lines) + end,
    st.binary(max_size=24).filter(lambda head: _IDENTIFICATION.match(head) is None),
    st.lists(st.sampled_from(OBIS_LINES) | st.binary(max_size=24), max_size=12),
    st.sampled_from([b"!\r\n", b"\r\n!\r\n", b"!\n", b"!"]),
)
sprinkled = st.lists(
    noise_frame | st.sampled_from(SPRINKLES) | st.binary(max_size=48), max_size=60
).map(b"".join)


@SETTINGS
@given(data=st.binary(max_size=6000), kind=st.sampled_from(PIPELINES), chunk=st.integers(1, 4096))
def test_random_bytes_give_no_telegram(data: bytes, kind: str, chunk: int) -> None:
    accepted = [r for r in run(pipeline_for(kind), data, chunk) if r.accepted]
    assert accepted == [], _shown(accepted)


@SETTINGS
@given(data=sprinkled, kind=st.sampled_from(PIPELINES), chunk=st.integers(1, 4096))
def test_random_bytes_sprinkled_with_telegram_pieces_give_no_telegram(
    data: bytes, kind: str, chunk: int
) -> None:
    accepted = [r for r in run(pipeline_for(kind), data, chunk) if r.accepted]
    assert accepted == [], _shown(accepted)


def _sprinkled_mebibyte(seed: int) -> bytes:
    rng = random.Random(seed)
    pieces: list[bytes] = []
    size = 0
    while size < 1 << 20:
        piece = rng.randbytes(rng.randint(0, 160)) + rng.choice(SPRINKLES)
        pieces.append(piece)
        size += len(piece)
    return b"".join(pieces)[: 1 << 20]


@pytest.mark.parametrize("kind", PIPELINES)
@pytest.mark.parametrize("source", ["random", "sprinkled"])
def test_a_mebibyte_of_random_bytes_gives_no_telegram(source: str, kind: str) -> None:
    seed = PIPELINES.index(kind) + 1
    data = (
        random.Random(seed).randbytes(1 << 20) if source == "random" else _sprinkled_mebibyte(seed)
    )
    results = run(pipeline_for(kind), data, chunk=3000)
    assert results, "no frame at all: the test would prove nothing"
    accepted = [r for r in results if r.accepted]
    assert accepted == [], _shown(accepted)


# -- real telegrams and their sequences ----------------------------------------------------------

_END = re.compile(rb"\r\n!([0-9A-Fa-f]{0,4})\r\n")
_CLOCK = re.compile(rb"0-0:1\.0\.0\((\d{12})[SW]\)")
_SEALED_VERSION = re.compile(rb"\r\n1-3:0\.2\.8\([45]\d\)\r\n")


@dataclass(frozen=True)
class Meter:
    """A real telegram and the meter's sequence around it (`telegram(i)`, `/` … line end)."""

    name: str
    telegram: Callable[[int], bytes]

    @property
    def body(self) -> bytes:
        """The telegram's body, `/` through `!`."""
        first = self.telegram(0)
        end = _END.search(first)
        assert end is not None, self.name
        return first[: end.start() + 3]

    @property
    def sealed(self) -> bool:
        end = _END.search(self.telegram(0))
        return end is not None and end.group(1) != b""

    @property
    def versioned(self) -> bool:
        """Its version line says DSMR 4 or 5."""
        return _SEALED_VERSION.search(self.body) is not None


def text_of(telegram: bytes) -> bytes:
    """What an accepted frame of this telegram holds: `/` … `!` and the checksum digits."""
    end = _END.search(telegram)
    assert end is not None
    return telegram[: end.end()].rstrip(b"\r\n")


def retimed(telegram: bytes, seconds: int) -> bytes:
    """`telegram` with its clock `seconds` later and its checksum recomputed as the meter writes
    it (same CRC, same width); a telegram without clock or checksum is returned as it is."""
    end = _END.search(telegram)
    clock = _CLOCK.search(telegram)
    if not seconds or end is None or not end.group(1) or clock is None:
        return telegram
    body, checksum = telegram[: end.start() + 3], end.group(1)
    kinds = [f for f in FUNCTIONS.values() if f(body) == int(checksum, 16)]
    assert kinds, "the fixture's checksum does not match"
    when = datetime.strptime(clock.group(1).decode(), "%y%m%d%H%M%S") + timedelta(seconds=seconds)
    body = body[: clock.start(1)] + when.strftime("%y%m%d%H%M%S").encode() + body[clock.end(1) :]
    value = kinds[0](body)
    digits = b"%04X" % value if len(checksum) == 4 else b"%X" % value
    return body + digits + b"\r\n" + telegram[end.end() :]


@pytest.fixture(scope="module")
def good_line(data_dir: Path) -> Meter:
    telegrams = good_line_telegrams((data_dir / GOOD_LINE).read_bytes())
    assert len(telegrams) == 1100
    return Meter("good line", lambda i: telegrams[i])


def _simulated_meter(flavour: str) -> Meter:
    meter = SimulatedMeter(flavour)
    sent: list[bytes] = []

    def telegram(i: int) -> bytes:
        while len(sent) <= i:
            sent.append(meter.next_telegram())
        return sent[i]

    return Meter(flavour, telegram)


# Every simulated flavour, and every fixture telegram of the published data.
_METERS = [
    *(("simulated", f) for f in FLAVOURS),
    *(("published", n) for n in published(TELEGRAM_NAMES)),
]


@pytest.fixture(params=_METERS, ids=[name for _, name in _METERS])
def meter(request: pytest.FixtureRequest) -> Meter:
    kind, name = request.param
    if kind == "simulated":
        return _simulated_meter(name)
    telegram = request.getfixturevalue("read_telegram")(name)
    assert _END.search(telegram), name
    return Meter(name, lambda i: retimed(telegram, 10 * i))


# -- (b) truncations -----------------------------------------------------------------------------

VARIANTS = ("eol", "slash", "bang", "line_bang")


def _complete_line(prefix: bytes) -> bytes:
    if prefix.endswith(b"\n"):
        return prefix
    return prefix + (b"\n" if prefix.endswith(b"\r") else b"\r\n")


def truncated(prefix: bytes, variant: str) -> bytes:
    """The prefix as a bad line delivers it, before whatever comes next."""
    if variant == "eol":
        return prefix + b"\r\n"  # a line end, then the next telegram's `/` (or the stream ends)
    if variant == "slash":
        return prefix  # the next telegram's `/` right away
    if variant == "bang":
        return prefix + b"!\r\n"  # a noise-made `!` where the cut is (`…*kWh!`)
    return _complete_line(prefix) + b"!\r\n"  # a `!` at the start of a line: looks like an end


@dataclass(frozen=True)
class Cut:
    k: int  # bytes of the body kept
    variant: str
    mid_line: bool  # the last line kept is incomplete
    complete: bool  # all lines kept (only the `!` and what follows were lost)
    bang_at_line_start: bool  # ends in `\r\n!`: a checksum-less telegram by its looks

    def __str__(self) -> str:
        return f"cut at {self.k} ({self.variant})"


def cuts(body: bytes) -> Iterator[Cut]:
    """Every prefix of the body (`/` … `!`): the bytes before the `!`, and the whole body without
    its checksum; each with every variant of what follows the cut."""
    last_line_end = len(body) - 3  # where the last line's `\r\n` before `!` starts
    for k in range(1, len(body) + 1):
        prefix = body[:k]
        boundary = k == len(body) or prefix.endswith((b"\n", b"\r")) or body[k : k + 1] == b"\r"
        for variant in VARIANTS:
            text = truncated(prefix, variant)
            yield Cut(
                k,
                variant,
                mid_line=not boundary,
                complete=k >= last_line_end,
                bang_at_line_start=variant != "slash" and text.rstrip(b"\r\n").endswith(b"\r\n!"),
            )


def looks_whole(cut: Cut) -> bool:
    """A cold pipeline cannot tell this one from a whole checksum-less telegram by its bytes
    alone: all lines it has are complete and the `!` starts a line."""
    return cut.bang_at_line_start and not cut.mid_line


@dataclass
class Outcome:
    accepted_wrongly: list[str]  # a truncated telegram (or its join) accepted
    whole_lost: list[str]  # a whole telegram after a truncated one not accepted
    reasons: dict[Cut, str | None]  # rejection reason of each truncated frame


def run_cuts(meter: Meter, selected: list[Cut], *, warm: bool, slots: int = 10**9) -> Outcome:
    """Each cut telegram followed by the next whole one; cold: each in a fresh pipeline; warm:
    after `WARM_COUNT` whole telegrams, cut and whole ones alternating (a fresh pipeline every
    `slots` cuts, when the meter's sequence is finite)."""
    outcome = Outcome([], [], {})
    body = meter.body
    if not warm:
        for cut in selected:
            text = truncated(body[: cut.k], cut.variant)
            following = meter.telegram(1) if cut.variant == "slash" else b""
            results = run(MeterPipeline(), text + following)
            _judge(outcome, results, {0: cut}, {len(text)} if following else set())
        return outcome
    for start in range(0, len(selected), slots):
        batch = selected[start : start + slots]
        stream = bytearray()
        whole: set[int] = set()
        cut_at: dict[int, Cut] = {}
        for i in range(WARM_COUNT):
            whole.add(len(stream))
            stream += meter.telegram(i)
        for j, cut in enumerate(batch):
            index = WARM_COUNT + 2 * j
            cut_body = meter.telegram(index)
            end = _END.search(cut_body)
            assert end is not None
            cut_at[len(stream)] = cut
            stream += truncated(cut_body[: end.start() + 3][: cut.k], cut.variant)
            whole.add(len(stream))
            stream += meter.telegram(index + 1)
        _judge(outcome, run(MeterPipeline(), bytes(stream)), cut_at, whole)
    return outcome


def _judge(
    outcome: Outcome, results: list[Result], cut_at: dict[int, Cut], whole: set[int]
) -> None:
    accepted = {r.frame.offset for r in results if r.accepted}
    for r in results:
        if r.accepted and r.frame.offset not in whole:
            cut = cut_at.get(r.frame.offset)
            outcome.accepted_wrongly.append(
                f"{cut or 'offset ' + str(r.frame.offset)}: {r.status} "
                f"({r.repair.method if r.repair else None}), …{r.frame.text[-24:]!r}"
            )
        if not r.accepted and r.frame.offset in cut_at:
            outcome.reasons.setdefault(cut_at[r.frame.offset], r.reason)
    outcome.whole_lost += [f"whole telegram at {o}" for o in sorted(whole - accepted)]


def _report(outcome: Outcome, what: str) -> str:
    shown = outcome.accepted_wrongly[:10]
    return f"{len(outcome.accepted_wrongly)} truncations of {what} accepted: {shown}"


GOOD_LINE_SLOTS = (1100 - WARM_COUNT) // 2  # cuts one warm run of the good line can hold


def test_no_truncation_of_a_good_line_telegram_is_accepted_cold(good_line: Meter) -> None:
    # A checksum-less frame that looks whole is its own test below.
    selected = [c for c in cuts(good_line.body) if not looks_whole(c)]
    outcome = run_cuts(good_line, selected, warm=False)
    assert outcome.accepted_wrongly == [], _report(outcome, "a good-line telegram")
    assert outcome.whole_lost == []


def test_no_truncation_of_a_good_line_telegram_is_accepted_warm(good_line: Meter) -> None:
    selected = list(cuts(good_line.body))
    outcome = run_cuts(good_line, selected, warm=True, slots=GOOD_LINE_SLOTS)
    assert outcome.accepted_wrongly == [], _report(outcome, "a good-line telegram")
    assert outcome.whole_lost == [], outcome.whole_lost[:10]


def test_a_good_line_prefix_that_looks_whole_is_not_accepted_cold(good_line: Meter) -> None:
    # The first frame of a stream: an AUX telegram cut at a line end and ended by a `!` at the
    # start of the next line. The bytes look like a checksum-less telegram, but the AUX meter
    # (E.ON Hungary, DSMR 5 based) seals every telegram: its flavour is not one that sends none.
    selected = [c for c in cuts(good_line.body) if looks_whole(c)]
    assert len(selected) > 80
    outcome = run_cuts(good_line, selected, warm=False)
    assert outcome.accepted_wrongly == [], _report(outcome, "a good-line telegram")


def test_no_truncation_of_a_telegram_is_accepted_cold(meter: Meter) -> None:
    if meter.sealed:
        # Sealed: nothing is accepted, except that a frame that looks whole is judged by its
        # flavour (the next test); with a DSMR 4/5 version line it never is.
        selected = [c for c in cuts(meter.body) if meter.versioned or not looks_whole(c)]
    else:
        # Without a checksum the meter's telegram cannot be known cold: only what is cut mid-line
        # or has no `!` at the start of a line is sure to be a piece.
        selected = [
            c
            for c in cuts(meter.body)
            if not c.complete and (c.mid_line or not c.bang_at_line_start)
        ]
    outcome = run_cuts(meter, selected, warm=False)
    assert outcome.accepted_wrongly == [], _report(outcome, meter.name)
    assert outcome.whole_lost == []


def test_a_sealed_telegram_prefix_that_looks_whole_is_not_accepted_cold(meter: Meter) -> None:
    if not meter.sealed:
        pytest.skip("a checksum-less meter's whole-looking prefix may be a whole telegram")
    selected = [c for c in cuts(meter.body) if looks_whole(c)]
    outcome = run_cuts(meter, selected, warm=False)
    assert outcome.accepted_wrongly == [], _report(outcome, meter.name)


def test_no_truncation_of_a_telegram_is_accepted_warm(meter: Meter) -> None:
    # Warm, the meter's whole telegram has been seen: only a checksum-less meter's complete
    # prefix (its `!` and what follows lost, then put back by the variant) is a whole telegram.
    selected = [c for c in cuts(meter.body) if meter.sealed or not c.complete]
    outcome = run_cuts(meter, selected, warm=True)
    assert outcome.accepted_wrongly == [], _report(outcome, meter.name)
    assert outcome.whole_lost == [], outcome.whole_lost[:10]
    if not meter.sealed:
        # Lines of the meter missing: a fragment, and said so.
        fragments = [c for c in selected if c.bang_at_line_start and not c.mid_line]
        assert fragments
        wrong = {str(c): outcome.reasons.get(c) for c in fragments}
        wrong = {c: reason for c, reason in wrong.items() if reason != "fragment"}
        assert wrong == {}, f"{len(wrong)} rejected for another reason: {list(wrong.items())[:8]}"


# -- (c) a `)` at a line end turned into `!` -------------------------------------------------------


def bang_fragments(body: bytes) -> Iterator[int]:
    """Offsets of every `)` that ends a line: there a cleared bit makes `…*kWh!\\r\\n`."""
    at = body.find(b")\r\n")
    while at >= 0:
        yield at
        at = body.find(b")\r\n", at + 1)


def _fragment_case(meter: Meter, index: int, at: int, warm: bool) -> str | None:
    """Problem with the telegram `index` of the meter cut at `at`, or None."""
    whole = meter.telegram(index)
    damaged = whole[:at] + b"!" + whole[at + 1 :]
    stream = b"".join(meter.telegram(i) for i in range(index)) if warm else b""
    offset = len(stream)
    following = meter.telegram(index + 1)
    results = run(MeterPipeline(), stream + damaged + following)
    sent = {text_of(meter.telegram(i)) for i in range(index + 2)}
    sealed_text = text_of(whole)
    problems = []
    for r in results:
        if r.accepted and r.frame.text not in sent:
            problems.append(f"accepted {r.status} …{r.frame.text[-24:]!r} at {r.frame.offset}")
        if r.accepted and r.frame.offset == offset and r.frame.text != sealed_text:
            problems.append(f"the fragment accepted as {r.frame.text[-24:]!r}")
    restored = any(r.accepted and r.frame.text == sealed_text for r in results)
    if not restored:
        first = [r for r in results if r.frame.offset == offset]
        if not first or first[0].accepted or first[0].reason != "fragment":
            problems.append(f"fragment: {[(r.status, r.reason) for r in first]}")
    if not any(r.accepted and r.frame.text == text_of(following) for r in results):
        problems.append("the next whole telegram was lost")
    return f"`)` at {at} → `!`: " + "; ".join(problems) if problems else None


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_good_line_telegram_cut_by_a_bang_is_never_accepted_as_it_is(
    good_line: Meter, warm: bool
) -> None:
    index = WARM_COUNT if warm else 0
    positions = list(bang_fragments(good_line.body))
    assert len(positions) >= 40
    problems = [p for at in positions if (p := _fragment_case(good_line, index, at, warm))]
    assert problems == [], f"{len(problems)} of {len(positions)}: {problems[:8]}"


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_a_telegram_cut_by_a_bang_is_never_accepted_as_it_is(meter: Meter, warm: bool) -> None:
    index = 3 if warm else 0
    positions = list(bang_fragments(meter.body))
    assert positions
    problems = [p for at in positions if (p := _fragment_case(meter, index, at, warm))]
    assert problems == [], f"{meter.name}: {len(problems)} of {len(positions)}: {problems[:8]}"
