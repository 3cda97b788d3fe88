"""Differential test: our decoder against dsmr_parser (a test-only dependency) on real telegrams.

dsmr_parser keeps only the first object per line pattern in its Telegram, so every line is compared:
for each object of the matching telegram specification, each line its pattern finds is parsed with
that object's own value parser and compared with our reading of the same OBIS reference (numbers
as Decimal, units, timestamps as instants). Lines dsmr_parser cannot parse are not compared.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from agent.telegram import Decoder, Reading, Telegram

dsmr_parser = pytest.importorskip("dsmr_parser")
from dsmr_parser import telegram_specifications as specs  # noqa: E402
from dsmr_parser.exceptions import ParseError  # noqa: E402
from dsmr_parser.objects import (  # noqa: E402
    CosemObject,
    MBusObject,
    MBusObjectPeak,
    ProfileGenericObject,
)
from dsmr_parser.parsers import TelegramParser  # noqa: E402

# The Sagemcom T210-D-r specification expects encrypted frames; the fixture is the plain text.
_T210_PLAIN = copy.deepcopy(specs.SAGEMCOM_T210_D_R)
_T210_PLAIN["general_global_cipher"] = False

SPECIFICATIONS: dict[str, dict[str, Any]] = {
    "dsmr22-iskra.txt": specs.V2_2,
    "dsmr3-iskra.txt": specs.V3,
    "dsmr42-kaifa.txt": specs.V4,
    "dsmr5-iskra-two-mbus.txt": specs.V5,
    "dsmr5-iskra.txt": specs.V5,
    "dsmr5-warmtelink-unpadded-crc.txt": specs.V5,
    "easymeter-q3da1004.txt": specs.Q3D,
    "easymeter-q3db1024.txt": specs.Q3D,
    "eon-hu-sagemcom.txt": specs.EON_HUNGARY,
    "fluvius-v171-alt.txt": specs.BELGIUM_FLUVIUS,
    "fluvius-v171.txt": specs.BELGIUM_FLUVIUS,
    "iskra-ie.txt": specs.ISKRA_IE,
    "sagemcom-t210-d-r.txt": _T210_PLAIN,
}

# Known dsmr_parser disagreements we do not follow, (file, OBIS reference) → why. Keep it empty
# unless a difference is dsmr_parser's; each entry excludes exactly one value.
EXCLUDED: dict[tuple[str, str], str] = {}


@dataclass
class Comparison:
    compared: int = 0  # individual values (number, unit, timestamp, text) found equal
    lines: int = 0
    unparsed: list[str] = field(default_factory=list)  # lines dsmr_parser could not parse
    mismatches: list[str] = field(default_factory=list)


def _same_number(ours: object, theirs: object) -> bool:
    if isinstance(ours, float) and not isinstance(ours, bool):
        ours_dec = Decimal(repr(ours))
    elif isinstance(ours, str):
        try:
            ours_dec = Decimal(ours)
        except ArithmeticError:
            return False
    else:
        return False
    if isinstance(theirs, str):
        try:
            theirs = Decimal(theirs)
        except ArithmeticError:
            return False
    assert isinstance(theirs, (Decimal, int)), theirs
    return ours_dec == theirs and float(ours_dec) == float(theirs)


class Differ:
    def __init__(self, result: Comparison, where: str) -> None:
        self.result = result
        self.where = where

    def check(self, what: str, ok: bool, ours: object, theirs: object) -> None:
        if ok:
            self.result.compared += 1
        else:
            self.result.mismatches.append(
                f"{self.where} {what}: ours {ours!r} != theirs {theirs!r}"
            )

    def value(self, what: str, ours: object, theirs: object) -> None:
        if theirs is None:
            # dsmr_parser turns an empty group `()` into None; we keep the empty text.
            self.check(what, ours in (None, ""), ours, theirs)
        elif isinstance(theirs, datetime):
            self.time(what, ours, theirs)
        elif isinstance(theirs, (Decimal, int)) or (
            isinstance(theirs, str) and isinstance(ours, float)
        ):
            self.check(what, _same_number(ours, theirs), ours, theirs)
        else:
            self.check(what, ours == theirs, ours, theirs)

    def unit(self, what: str, ours: str | None, theirs: str | None) -> None:
        self.check(what + " unit", ours == theirs, ours, theirs)

    def time(self, what: str, ours: object, theirs: datetime | None) -> None:
        if theirs is None:
            self.check(what + " time", ours is None, ours, theirs)
            return
        ok = isinstance(ours, datetime) and ours.utcoffset() is not None and ours == theirs
        self.check(what + " time", ok, ours, theirs)


def _lines(spec: dict[str, Any], parser: TelegramParser, text: str) -> Iterator[tuple[str, Any]]:
    """(OBIS reference as written, dsmr_parser object) for every line its specification matches."""
    for obj in spec["objects"]:
        pattern = parser.telegram_specification_regexes[obj["obis_reference"]]
        for match in pattern.findall(text):
            obis = match.split("(", 1)[0]
            try:
                yield obis, obj["value_parser"].parse(match)
            except ParseError:
                yield obis, None


def compare(name: str, frame_text: bytes, ours: Telegram, result: Comparison) -> None:
    spec = SPECIFICATIONS[name]
    text = (frame_text + b"\r\n").decode("latin-1")
    # Checksum validation where the specification has it: dsmr_parser's own CRC on our frame.
    has_crc = spec["checksum_support"] and b"!\r\n" not in frame_text + b"\r\n"
    parser = TelegramParser(spec, apply_checksum_validation=has_crc)
    parsed = parser.parse(text)
    assert len(parsed) > 0, name
    for obis, theirs in _lines(spec, parser, text):
        if (name, obis) in EXCLUDED:
            continue
        if theirs is None:
            result.unparsed.append(f"{name} {obis}")
            continue
        reading = ours.readings.get(obis)
        differ = Differ(result, f"{name} {obis}")
        if reading is None:
            result.mismatches.append(f"{name} {obis}: missing from our readings")
            continue
        result.lines += 1
        _compare_object(differ, reading, theirs)


def _compare_object(differ: Differ, reading: Reading, theirs: Any) -> None:
    if isinstance(theirs, list):  # Belgian monthly peaks (MaxDemandParser)
        peaks = reading.value
        assert isinstance(peaks, list)
        differ.check("peak count", len(peaks) == len(theirs), len(peaks), len(theirs))
        for i, (ours_peak, their_peak) in enumerate(zip(peaks, theirs, strict=False)):
            assert isinstance(their_peak, MBusObjectPeak)
            differ.time(f"peak {i} month", ours_peak.start, their_peak.datetime)
            differ.time(f"peak {i} occurred", ours_peak.time, their_peak.occurred)
            differ.value(f"peak {i}", ours_peak.value, their_peak.value)
            differ.unit(f"peak {i}", ours_peak.unit, their_peak.unit)
    elif isinstance(theirs, ProfileGenericObject):  # power failure log
        events = reading.value
        assert isinstance(events, list)
        differ.check("event count", len(events) == theirs.buffer_length, events, theirs.values)
        for i, (event, their_event) in enumerate(zip(events, theirs.buffer, strict=False)):
            differ.time(f"event {i}", event.time, their_event.datetime)
            differ.value(f"event {i}", event.value, their_event.value)
            differ.unit(f"event {i}", event.unit, their_event.unit)
    elif isinstance(theirs, MBusObject):  # M-Bus readings, month peak, DSMR 2.2/3 gas
        differ.time("capture", reading.time, theirs.datetime)
        differ.value("reading", reading.value, theirs.value)
        differ.unit("reading", reading.unit, theirs.unit)
    elif isinstance(theirs, CosemObject):
        if isinstance(theirs.value, datetime):
            differ.time("timestamp", reading.time, theirs.value)
        else:
            differ.value("value", reading.value, theirs.value)
        differ.unit("value", reading.unit, theirs.unit)
    else:  # pragma: no cover - a new dsmr_parser object type
        raise AssertionError(f"unexpected dsmr_parser object {type(theirs)}")


@pytest.fixture(autouse=True)
def _quiet_dsmr_parser() -> Iterator[None]:
    # dsmr_parser logs every line it cannot parse (the 0xFF text message) at error level.
    logger = logging.getLogger("dsmr_parser")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


def _decode(data: bytes) -> tuple[bytes, Telegram]:
    from p1_testkit import frame_all

    (frame,) = frame_all(data)
    return frame.text, Decoder().decode(frame.body)


def test_every_fixture_has_a_specification(telegram_names: list[str]) -> None:
    assert sorted(SPECIFICATIONS) == telegram_names


def test_fixtures_agree_with_dsmr_parser(
    telegram_names: list[str], read_telegram: Callable[[str], bytes]
) -> None:
    total = Comparison()
    per_file: dict[str, int] = {}
    for name in telegram_names:
        before = total.compared
        text, ours = _decode(read_telegram(name))
        compare(name, text, ours, total)
        per_file[name] = total.compared - before
    assert total.mismatches == []
    assert total.unparsed == []
    # Not vacuous: hundreds of values, and every file contributes.
    assert total.compared > 300, total.compared
    assert all(count >= 10 for count in per_file.values()), per_file


def test_capture_agrees_with_dsmr_parser(capture_resealed: list[bytes]) -> None:
    total = Comparison()
    for telegram in capture_resealed:
        text, ours = _decode(telegram)
        compare("eon-hu-sagemcom.txt", text, ours, total)  # same flavour: EON_HUNGARY
    assert total.mismatches == []
    # dsmr_parser's value pattern cannot read the 0xFF-padded text message; nothing else fails.
    assert set(total.unparsed) == {"eon-hu-sagemcom.txt 0-0:96.13.0"}
    assert len(total.unparsed) == 54
    assert total.lines == 54 * 39, total.lines
    assert total.compared >= 54 * 75, total.compared


def test_dsmr_parser_rejects_what_our_crc_rejects(read_telegram: Callable[[str], bytes]) -> None:
    # Both CRC implementations agree on a corrupted digit.
    from dsmr_parser.exceptions import InvalidChecksumError

    text = read_telegram("dsmr42-kaifa.txt").replace(b"001581.123", b"001581.124")
    parser = TelegramParser(specs.V4)
    with pytest.raises(InvalidChecksumError):
        parser.parse(text.decode("latin-1"))
    from p1_testkit import run_pipeline

    _, results = run_pipeline(text)
    assert [r.reason for r in results] == ["crc"]
