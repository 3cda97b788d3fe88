"""A simulated encrypted meter (Luxembourg's Smarty) and the noisy line it sends over. Sans-I/O.

`smarty` is the `lux` flavour's telegram sealed in a DLMS general-global-ciphering frame under
the keys given, with the frame counter counting up as the meter's does. Its line damages what it
carries, ciphertext: bits cleared in one to three bytes (`bit_clear`, `bit_clear_2`,
`bit_clear_3`) and blocks lost to a receive-buffer overrun (`overrun_block`), the modes of a bad
line (`agent.noisyline`) that apply to binary frames.
"""

from __future__ import annotations

from datetime import datetime

from agent.core.dlms import TITLE_LENGTH, content_start, encode_frame
from agent.core.gcm import GcmKeys, GcmOpener
from agent.noisyline import (
    BAD_LINE,
    BAD_LINE_DAMAGE,
    BAD_LINE_MIX,
    Corruption,
    Edit,
    NoisyChannel,
    _cleared,
    check_rates,
    parse_rate,
    parse_rates,
    spread_rate,
)
from agent.simulate import SimulatedMeter

ENCRYPTED_FLAVOURS = {"smarty": "lux"}  # flavour → the plain flavour whose telegram it seals
CIPHER_MODES = ("bit_clear", "bit_clear_2", "bit_clear_3", "overrun_block")
_OVERRUN = (16, 400)  # bytes a receive-buffer overrun loses


class EncryptedMeter(SimulatedMeter):
    """`next_telegram()` gives the next frame; `plaintext` is the telegram it sealed."""

    def __init__(
        self,
        flavour: str,
        keys: GcmKeys,
        *,
        start: datetime | None = None,
        interval: float | None = None,
        seed: int = 1,
        serial: str = "1234567",
        counter: int = 0x1000,
    ) -> None:
        if flavour not in ENCRYPTED_FLAVOURS:
            raise ValueError(f"{flavour!r} is not an encrypted flavour")
        plain = ENCRYPTED_FLAVOURS[flavour]
        super().__init__(plain, start=start, interval=interval, seed=seed, serial=serial)
        self.opener = GcmOpener(keys)
        # Sagemcom's manufacturer id and the serial number, as the Smarty's system title holds.
        self.title = (b"SAG" + int(serial).to_bytes(5, "big"))[:TITLE_LENGTH]
        self.frame_counter = counter
        self.plaintext = b""

    def next_telegram(self) -> bytes:
        self.plaintext = super().next_telegram()
        self.frame_counter += 1
        sealed = self.opener.seal(self.title, self.frame_counter, self.plaintext)
        return encode_frame(self.title, self.frame_counter, sealed)


class CipherChannel(NoisyChannel):
    """A noisy line for encrypted frames: the damage falls on the frame counter, ciphertext and
    tag (a damaged header loses the frame outright, which the overruns already show)."""

    def corrupt(self, telegram: bytes) -> Corruption | None:
        self.telegrams += 1
        mode = self._draw()
        if mode is None:
            return None
        start = content_start(telegram) + 1  # the frame counter's first byte
        if mode == "overrun_block":
            size = self.rng.randint(_OVERRUN[0], min(_OVERRUN[1], len(telegram) - start - 1))
            at = self.rng.randint(start, len(telegram) - size)
            edits = [Edit(at, telegram[at : at + size], b"")]
        else:
            count = 1 if mode == "bit_clear" else int(mode[-1])
            sites = [i for i in range(start, len(telegram)) if telegram[i]]
            edits = [
                Edit(at, telegram[at : at + 1], bytes([_cleared(telegram[at], self.rng)]))
                for at in sorted(self.rng.sample(sites, count))
            ]
        data = bytearray(telegram)
        for edit in reversed(edits):
            data[edit.offset : edit.offset + len(edit.old)] = edit.new
        self.counts[mode] += 1
        return Corruption(mode, bytes(data), tuple(edits))


def cipher_channel(noise: str | None, noise_rate: str | None, seed: str) -> CipherChannel | None:
    """`simulate`'s --noise and --noise-rate for an encrypted flavour (see `CIPHER_MODES`)."""
    if noise is None and noise_rate is None:
        return None
    if noise == BAD_LINE:
        if noise_rate is not None:
            raise ValueError(f"--noise {BAD_LINE} is a whole line: it takes no --noise-rate")
        total = sum(BAD_LINE_MIX[mode] for mode in CIPHER_MODES)
        rates = {mode: BAD_LINE_DAMAGE * BAD_LINE_MIX[mode] / total for mode in CIPHER_MODES}
        return CipherChannel(rates, seed)
    rates = {}
    if noise_rate is not None:
        rates.update(spread_rate(parse_rate(noise_rate, "noise rate"), CIPHER_MODES))
    if noise is not None:
        explicit = parse_rates(noise)
        for mode, rate in explicit.items():
            if rate and mode not in CIPHER_MODES:
                raise ValueError(
                    f"noise mode {mode} does not apply to encrypted frames "
                    f"(choose from {', '.join(CIPHER_MODES)})"
                )
        rates.update(explicit)
    check_rates(rates)
    return CipherChannel(rates, seed)
