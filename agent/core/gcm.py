"""AES-128-GCM of DLMS frames: open them, seal them, and repair damage the 96-bit tag proves.
Sans-I/O: a pure function of bytes and the keys.

The IV is the system title and the frame counter; the additional data is the security byte and
the authentication key; the tag is cut to 12 bytes (cryptography's AESGCM takes only 16-byte
tags, hence `modes.GCM` with `min_tag_length`).

Repair. GCM is CTR mode and GHASH, and GHASH is linear in the ciphertext over GF(2¹²⁸): flipping
bits Δ of the ciphertext changes the tag it gives by L(Δ), which depends on the bits' positions
and the key only, never on the data (and a flipped tag bit changes the received tag by itself).
So the syndrome S = received tag ⊕ tag of the received ciphertext names the damage: a hypothesis
is tested by comparing its precomputed L(Δ) with S, one integer lookup instead of a decryption.
The tables are built once per key and frame length. Hypotheses, in order, each step complete
(two fits refuse): every change of one byte (ciphertext or tag); two bytes, each with a flipped
bit or two cleared bits (the line clears bits, 1–3 a telegram); reverting one, two or three
bytes to the last telegram's plaintext (CTR maps plaintext byte i to ciphertext byte i, so a
plaintext template is a
ciphertext template), or one such revert and one flipped bit. Each tested hypothesis is falsely
accepted with probability 2⁻⁹⁶; a Smarty frame (1.2 KiB) tests about 2²⁷ of them, a frame of
MAX_REPAIR_LENGTH at most 2³¹: a false repair is less likely than 2⁻⁶⁵ per frame, against about
2⁻¹⁶ per candidate for a telegram whose only check is its CRC. A fit is verified by a real
decryption before it is returned.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from agent.core.dlms import SECURITY, TAG_LENGTH

# The key every Luxmetering Smarty authenticates with (public, in its P1 specification); the
# meters that authenticate under a key of their own get it from their grid operator too.
LUXEMBOURG_AUTHENTICATION_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
KEY_LENGTH = 16
MAX_REPAIR_LENGTH = 4096  # ciphertext bytes: a telegram is 1–3 KiB; the tables grow with it
MAX_TEMPLATE_CHANGES = 128  # plaintext bytes that differ from the template, for its reverts
_R = 0xE1 << 120  # GCM's reduction polynomial, in its bit order (bit 0 is the MSB)
_TAG_BITS = 8 * TAG_LENGTH
# Per byte value: every pair of its 0 bits, as the mask that sets them again.
_CLEARED_PAIRS = [
    [
        1 << a | 1 << b
        for a in range(8)
        for b in range(a + 1, 8)
        if not byte >> a & 1 | byte >> b & 1
    ]
    for byte in range(256)
]
_TABLES_KEPT = 2  # frame lengths whose tables are kept (a meter's frames keep one length)


class GcmKeys(NamedTuple):
    encryption: bytes
    authentication: bytes = LUXEMBOURG_AUTHENTICATION_KEY

    def __repr__(self) -> str:
        return "GcmKeys(****)"  # never a key in a log line or traceback


def iv(title: bytes, counter: int) -> bytes:
    return title + counter.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class GcmRepair:
    """A repaired frame: its plaintext, the ciphertext and tag bytes changed (offsets into
    ciphertext and tag, so into the plaintext where below its length) and the hypotheses tested."""

    plaintext: bytes
    changes: tuple[tuple[int, int, int], ...]  # (offset, received byte, restored byte)
    hypotheses: int


def _gmul(x: int, y: int) -> int:
    """Multiplication in GF(2¹²⁸), GCM's bit order (NIST SP 800-38D, algorithm 1)."""
    z, v = 0, y
    for i in range(127, -1, -1):
        if x >> i & 1:
            z ^= v
        v = (v >> 1) ^ _R if v & 1 else v >> 1
    return z


class _Tables:
    """For one ciphertext length: the tag change (top 96 bits) of every single bit of
    ciphertext and tag, and of every nibble of every byte, with reverse indexes."""

    def __init__(self, powers: list[int], n: int) -> None:
        blocks = -(-n // 16)
        bits = [0] * (8 * (n + TAG_LENGTH))
        for j in range(blocks):
            v = powers[blocks + 1 - j]  # block j is multiplied by H^(blocks + 1 - j)
            for k in range(min(128, 8 * (n - 16 * j))):
                bits[128 * j + k] = v >> 32
                v = (v >> 1) ^ _R if v & 1 else v >> 1  # times x: the next bit
        for k in range(_TAG_BITS):
            bits[8 * n + k] = 1 << (_TAG_BITS - 1 - k)
        self.n = n
        self.bits = bits
        self.bit_index = {value: g for g, value in enumerate(bits)}
        self.low: list[int] = []  # [16 * byte + nibble]: nibble as the byte's low bits
        self.high: list[int] = []  # the same as its high bits
        for i in range(n + TAG_LENGTH):
            b = bits[8 * i : 8 * i + 8]  # MSB first
            for table, half in ((self.high, b[:4]), (self.low, b[4:])):
                for d in range(16):
                    table.append(
                        (half[0] if d & 8 else 0)
                        ^ (half[1] if d & 4 else 0)
                        ^ (half[2] if d & 2 else 0)
                        ^ (half[3] if d & 1 else 0)
                    )
        self.low_index = {v: e for e, v in enumerate(self.low) if e & 15}
        self.high_index = {v: e for e, v in enumerate(self.high) if e & 15}

    def byte(self, i: int, delta: int) -> int:
        return self.low[16 * i + (delta & 15)] ^ self.high[16 * i + (delta >> 4)]


class GcmOpener:
    """Opens, seals and repairs frames under one pair of keys."""

    def __init__(self, keys: GcmKeys) -> None:
        if len(keys.encryption) != KEY_LENGTH or len(keys.authentication) != KEY_LENGTH:
            raise ValueError("AES-128 keys are 16 bytes")
        self.keys = keys
        # cryptography is imported in the methods that use it: a plain meter's replay or run
        # never loads it (a good part of the start-up of every command).
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

        self._aes = algorithms.AES(keys.encryption)
        ecb = Cipher(self._aes, modes.ECB()).encryptor()
        self._h = int.from_bytes(ecb.update(bytes(16)) + ecb.finalize())
        self._powers = [1, self._h]  # H^p at index p
        self._tables: dict[int, _Tables] = {}

    def _aad(self, security: int) -> bytes:
        return bytes([security]) + self.keys.authentication

    def seal(self, title: bytes, counter: int, plaintext: bytes, security: int = SECURITY) -> bytes:
        """Ciphertext and tag."""
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        encryptor = Cipher(self._aes, modes.GCM(iv(title, counter))).encryptor()
        encryptor.authenticate_additional_data(self._aad(security))
        ciphertext = encryptor.update(plaintext) + encryptor.finalize()
        return ciphertext + encryptor.tag[:TAG_LENGTH]

    def open(
        self, title: bytes, counter: int, ciphertext: bytes, tag: bytes, security: int = SECURITY
    ) -> bytes | None:
        """The plaintext if the tag proves it, else None."""
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        mode = modes.GCM(iv(title, counter), tag, min_tag_length=TAG_LENGTH)
        decryptor = Cipher(self._aes, mode).decryptor()
        decryptor.authenticate_additional_data(self._aad(security))
        plaintext = decryptor.update(ciphertext)
        try:
            return plaintext + decryptor.finalize()
        except InvalidTag:
            return None

    def unverified(self, title: bytes, counter: int, ciphertext: bytes) -> bytes:
        """The plaintext without checking the tag: CTR from the IV's counter block 2."""
        from cryptography.hazmat.primitives.ciphers import Cipher, modes

        ctr = modes.CTR(iv(title, counter) + (2).to_bytes(4, "big"))
        decryptor = Cipher(self._aes, ctr).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()

    def repair(
        self,
        title: bytes,
        counter: int,
        ciphertext: bytes,
        tag: bytes,
        template: bytes | None = None,
        security: int = SECURITY,
    ) -> GcmRepair | None:
        """The one small change of ciphertext and tag the tag proves (see the module's doc), or
        None when none fits, two do, or the frame is too long to search."""
        n = len(ciphertext)
        if not 0 < n <= MAX_REPAIR_LENGTH or len(tag) != TAG_LENGTH:
            return None
        plain = self.unverified(title, counter, ciphertext)
        # The tag the received ciphertext gives: sealing its plaintext again reproduces it.
        computed = self.seal(title, counter, plain, security)[n:]
        syndrome = int.from_bytes(tag) ^ int.from_bytes(computed)
        tables = self._tables_for(n)
        received = ciphertext + tag
        search = _Search(tables, syndrome, received, _reverts(plain, template))
        hypotheses = 0
        for step in _STEPS:
            fits, tried = step(search)
            hypotheses += tried
            if len(fits) > 1:
                return None
            if fits:
                return self._verified(title, counter, received, fits.pop(), hypotheses)
        return None

    def _verified(
        self,
        title: bytes,
        counter: int,
        received: bytes,
        fix: Fix,
        hypotheses: int,
    ) -> GcmRepair | None:
        fixed = bytearray(received)
        for offset, delta in fix:
            fixed[offset] ^= delta
        n = len(received) - TAG_LENGTH
        opened = self.open(title, counter, bytes(fixed[:n]), bytes(fixed[n:]))
        if opened is None:
            return None  # cannot happen if the tables are right; never trust them blindly
        # The bytes as the line carried them: its damage (cleared bits) shows in the ciphertext.
        changes = tuple((offset, received[offset], fixed[offset]) for offset, _ in sorted(fix))
        return GcmRepair(opened, changes, hypotheses)

    def _tables_for(self, n: int) -> _Tables:
        tables = self._tables.get(n)
        if tables is None:
            blocks = -(-n // 16)
            while len(self._powers) <= blocks + 1:
                self._powers.append(_gmul(self._powers[-1], self._h))
            if len(self._tables) >= _TABLES_KEPT:
                del self._tables[next(iter(self._tables))]
            tables = self._tables[n] = _Tables(self._powers, n)
        return tables

    # -- the hypotheses: each returns the fits (sets of (offset, xor)) and how many it tested


@dataclass(frozen=True, slots=True)
class _Search:
    tables: _Tables
    syndrome: int
    received: bytes  # ciphertext and tag
    reverts: list[tuple[int, int]]  # (offset, xor) back to the template


def _one_byte(search: _Search) -> tuple[set[Fix], int]:
    """Any change of any one byte: 16 lookups a byte (its high nibble, then the low one)."""
    tables, s = search.tables, search.syndrome
    fits: set[Fix] = set()
    high_only = tables.high_index.get(s)
    if high_only is not None:
        fits.add(frozenset({(high_only >> 4, (high_only & 15) << 4)}))
    low_index = tables.low_index
    for e, h in enumerate(tables.high):
        found = low_index.get(s ^ h)
        if found is not None and found >> 4 == e >> 4:
            fits.add(frozenset({(e >> 4, (e & 15) << 4 | found & 15)}))
    return fits, 255 * len(tables.high) // 16


def _two_bytes(search: _Search) -> tuple[set[Fix], int]:
    """Two bytes, each with one flipped bit or two cleared ones (the line clears bits): one
    lookup per pattern, in the key's table of bits and this frame's of cleared pairs."""
    tables, s = search.tables, search.syndrome
    low, high, bit_index = tables.low, tables.high, tables.bit_index
    pairs = {}
    for i, byte in enumerate(search.received):
        for mask in _CLEARED_PAIRS[byte]:
            pairs[low[16 * i + (mask & 15)] ^ high[16 * i + (mask >> 4)]] = (i, mask)

    def pattern(value: int) -> tuple[int, int] | None:
        g = bit_index.get(value)
        return _bit(g) if g is not None else pairs.get(value)

    fits: set[Fix] = set()
    for g, value in enumerate(tables.bits):
        other = pattern(s ^ value)
        if other is not None and other[0] != g >> 3:
            fits.add(frozenset({_bit(g), other}))
    for value, change in pairs.items():
        other = pattern(s ^ value)
        if other is not None and other[0] != change[0]:
            fits.add(frozenset({change, other}))
    count = len(tables.bits) + len(pairs)
    return fits, count * count // 2


def _template(search: _Search) -> tuple[set[Fix], int]:
    """Two or three bytes back to the template, or one and a flipped bit."""
    tables, s, reverts = search.tables, search.syndrome, search.reverts
    fits: set[Fix] = set()
    values = [tables.byte(i, delta) for i, delta in reverts]
    index = {value: k for k, value in enumerate(values)}
    bit_index = tables.bit_index
    for a, va in enumerate(values):
        pair = index.get(s ^ va)
        if pair is not None and pair > a:
            fits.add(frozenset({reverts[a], reverts[pair]}))
        bit = bit_index.get(s ^ va)
        if bit is not None and bit >> 3 != reverts[a][0]:
            fits.add(frozenset({reverts[a], _bit(bit)}))
        for b in range(a + 1, len(values)):
            third = index.get(s ^ va ^ values[b])
            if third is not None and third > b:
                fits.add(frozenset({reverts[a], reverts[b], reverts[third]}))
    m = len(values)
    return fits, m * m * m // 6 + m * len(tables.bits)


_STEPS = (_one_byte, _two_bytes, _template)


Fix = frozenset[tuple[int, int]]  # (offset into ciphertext and tag, xor of its byte)


def _bit(g: int) -> tuple[int, int]:
    return g >> 3, 0x80 >> (g & 7)


def _reverts(plain: bytes, template: bytes | None) -> list[tuple[int, int]]:
    """(offset, xor) making the received plaintext's bytes the template's, where they differ."""
    if template is None or len(template) != len(plain):
        return []
    changes = list(_differing(plain, template))
    return changes if len(changes) <= MAX_TEMPLATE_CHANGES else []


def _differing(a: bytes, b: bytes) -> Iterator[tuple[int, int]]:
    x = int.from_bytes(a) ^ int.from_bytes(b)
    n = len(a)
    while x:
        low = (x & -x).bit_length() - 1
        byte = n - 1 - low // 8
        yield byte, a[byte] ^ b[byte]
        x &= ~(0xFF << (8 * (n - 1 - byte)))
