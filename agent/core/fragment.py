"""Is a frame without a checksum a whole telegram of a meter that sends none? Sans-I/O.

DSMR 2.2/3 meters and EasyMeter-style gateways end their telegrams with a bare `!`. Everything
else that reaches the decoder without a checksum is a piece of a sealed telegram: noise turned a
byte into `!` (`)` loses a bit and becomes `!`, so `…*kWh!` ends a frame early), or random bytes
happened to hold a `/` and a `!`. Such a fragment passes no check at all, so it is accepted only
when everything about it says "a whole telegram of a checksum-less meter".
"""

from __future__ import annotations

import re

# `/`, three letters of manufacturer, the baud-rate character, then the identification.
_HEADER = re.compile(rb"/[A-Za-z]{3}\d[\x02\x20-\x7e]{1,60}\Z")
# An OBIS line `A-B:C.D.E(…)…`, optionally `*F`, or a DSMR 2.2/3 gas value line `(…)`.
_LINE = re.compile(rb"(?:\d{1,3}-\d{1,3}:\d{1,3}\.\d{1,3}\.\d{1,3}(?:\*\d{1,3})?)?\([^\r\n]*\)\Z")
# DSMR 4 and 5 always seal their telegrams with a CRC, and so does every meter with a clock line
# (none of the published checksum-less meters, DSMR 2.2/3 and EasyMeter, has one).
_SEALED = re.compile(rb"\r\n(?:1-3:0\.2\.8\([4-9]\d*\)|0-0:1\.0\.0\()")
# DSMR 2.2/3 gas: (time)(00)(60)(1)(0-n:24.2.1)(unit), the value on the next line.
_LEGACY_GAS = re.compile(rb"0-\d:24\.3\.0(?:\([^()\r\n]*\)){6}\Z")


def obis_keys(body: bytes) -> frozenset[bytes]:
    """The OBIS references of a body's lines, as written (`1-0:1.8.0`)."""
    keys = set()
    for line in body.split(b"\r\n")[1:]:
        key, paren, _ = line.partition(b"(")
        if paren and key:
            keys.add(key)
    return frozenset(keys)


def unsealed_problem(body: bytes, usual: frozenset[bytes] | None) -> str | None:
    """Why a frame that arrived without a checksum cannot be a whole telegram, or None.

    `usual` holds the lines the meter always sends, once it is known."""
    if not body.endswith(b"\r\n!"):
        return "`!` does not start a line"
    lines = body.split(b"\r\n")
    if not _HEADER.match(lines[0]):
        return "no identification line"
    if _SEALED.search(body):
        return "a telegram of a sealing meter (DSMR 4/5, a clock line) without its checksum"
    obis = 0
    for line in lines[1:-1]:
        if not line:
            continue
        if not _LINE.match(line):
            return "a line that is not an OBIS object"
        if b":24.3.0(" in line[:12] and not _LEGACY_GAS.match(line):
            return "a gas line cut short"
        obis += 1
    if obis == 0 or b"\r\n1-0:1.8." not in body:
        return "no energy register (every whole telegram has one)"
    if usual is not None and not usual <= obis_keys(body):
        return "lines of the meter missing"
    return None
