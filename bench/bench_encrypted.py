"""Encrypted meters: decrypt + decode per frame against dsmr_parser, and repair proven by the tag.

    python bench/bench_encrypted.py [--count 1000] [--repeat 5] [--damaged 10000] [--seed 1]

Frames are the simulated Smarty's (`agent.encryptedmeter.EncryptedMeter`: the `lux` telegram
sealed under AES-128-GCM in a general-global-ciphering frame), consecutive frame counters.
- Speed: the median of `--repeat` runs over `--count` frames, µs per frame, five ways: our GCM
  open alone; our `DecryptingPipeline.feed(frame)` (framing, GCM, CRC, decoding, derived
  values); `MeterPipeline.feed` of the plaintext (the same without the encryption);
  dsmr_parser's `TelegramParser(MSN).parse(hex, encryption_key, authentication_key)`, which
  decrypts (dlms-cosem, tag checked) and parses; and its parse of the plaintext alone.
- Repair: `--damaged` frames per mode, each right after a clean one in one pipeline, with one
  ciphertext byte damaged (1–3 bits cleared, as a bad line does; or replaced by any other byte),
  and a fifth as many with two and three bytes cleared: recovered (accepted and byte-identical
  to the sealed telegram), rejected, miscorrected (accepted and different: must be 0), latency
  of the damaged frame's `feed()` p50/p99. Exits 1 on any miscorrection.
The markdown section goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import gc
import logging
import random
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable

from benchenv import header, log
from dsmr_parser import telegram_specifications  # type: ignore[import-untyped]
from dsmr_parser.parsers import TelegramParser  # type: ignore[import-untyped]

from agent.core.decrypting import DecryptingPipeline
from agent.core.dlms import content_start
from agent.core.gcm import LUXEMBOURG_AUTHENTICATION_KEY, GcmKeys, GcmOpener
from agent.core.pipeline import MeterPipeline
from agent.encryptedmeter import EncryptedMeter
from agent.noisyline import _cleared

KEY = bytes.fromhex("8E2D4A61C07B93F5A1D2E3F405162738")
KEYS = GcmKeys(KEY)
PLAIN_MSN = dict(telegram_specifications.MSN, general_global_cipher=False)


def frames(count: int, seed: int) -> tuple[list[bytes], list[bytes]]:
    meter = EncryptedMeter("smarty", KEYS, seed=seed)
    sealed, plain = [], []
    for _ in range(count):
        sealed.append(meter.next_telegram())
        plain.append(meter.plaintext)
    return sealed, plain


def per_frame(run: Callable[[], None], count: int, repeat: int) -> float:
    """Median µs per frame over `repeat` runs."""
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) / count * 1e6)
    return statistics.median(times)


def speed(count: int, repeat: int, seed: int) -> list[str]:
    sealed, plain = frames(count, seed)
    opener = GcmOpener(KEYS)
    parsed = [(f, content_start(f)) for f in sealed]

    def ours_open() -> None:
        for frame, at in parsed:
            body = frame[at + 5 :]
            assert opener.open(
                frame[2:10], int.from_bytes(frame[at + 1 : at + 5]), body[:-12], body[-12:]
            )

    def ours_pipeline() -> None:
        pipeline = DecryptingPipeline(KEYS)
        for frame in sealed:
            assert pipeline.feed(frame)[0].accepted

    def ours_plain() -> None:
        pipeline = MeterPipeline()
        for telegram in plain:
            assert pipeline.feed(telegram)[0].accepted

    parser = TelegramParser(telegram_specifications.MSN)
    key_hex, auth_hex = KEY.hex(), LUXEMBOURG_AUTHENTICATION_KEY.hex()

    def theirs() -> None:
        for frame in sealed:
            parser.parse(frame.hex(), encryption_key=key_hex, authentication_key=auth_hex)

    plain_parser = TelegramParser(PLAIN_MSN)
    texts = [t.decode("latin-1") for t in plain]

    def theirs_plain() -> None:
        for text in texts:
            plain_parser.parse(text)

    rows = {}
    for name, run in (
        ("ours: GCM open", ours_open),
        ("ours: DecryptingPipeline.feed", ours_pipeline),
        ("ours: MeterPipeline.feed of the plaintext", ours_plain),
        ("dsmr_parser: decrypt + parse", theirs),
        ("dsmr_parser: parse of the plaintext", theirs_plain),
    ):
        log(f"speed: {name}")
        rows[name] = per_frame(run, count, repeat)
    pipeline_us = rows["ours: DecryptingPipeline.feed"]
    out = [
        f"{count} consecutive frames of {len(sealed[0])} bytes ({len(plain[0])}-byte telegram), "
        f"median of {repeat} runs.",
        "",
        "| what | µs per frame | dsmr_parser decrypt + parse ÷ this |",
        "|---|---:|---:|",
    ]
    for name, us in rows.items():
        out.append(f"| {name} | {us:.1f} | {rows['dsmr_parser: decrypt + parse'] / us:.1f}× |")
    out += ["", f"Decrypt + decode: ours **{pipeline_us:.0f} µs**, dsmr_parser "
            f"{rows['dsmr_parser: decrypt + parse']:.0f} µs per frame."]  # fmt: skip
    return out


def _damage(frame: bytes, mode: str, rng: random.Random) -> bytes:
    """One, two or three ciphertext bytes damaged (frame counter, title and tag untouched)."""
    start = content_start(frame) + 5
    data = bytearray(frame)
    count = {"1 byte, bits cleared": 1, "1 byte replaced": 1, "2 bytes, bits cleared": 2}.get(
        mode, 3
    )
    for at in rng.sample([i for i in range(start, len(frame) - 12) if frame[i]], count):
        if mode == "1 byte replaced":
            data[at] = rng.choice([b for b in range(256) if b != frame[at]])
        else:
            data[at] = _cleared(frame[at], rng)
    return bytes(data)


def repair(damaged: int, seed: int) -> tuple[list[str], int]:
    modes = {
        "1 byte, bits cleared": damaged,
        "1 byte replaced": damaged,
        "2 bytes, bits cleared": max(1, damaged // 5),
        "3 bytes, bits cleared": max(1, damaged // 5),
    }
    rng = random.Random(seed)
    out = [
        "",
        "| damage | frames | recovered % | rejected % | miscorrected | p50 ms | p99 ms "
        "| hypotheses tested (median) | rejected frames |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    miscorrected_total = 0
    for mode, n in modes.items():
        log(f"repair: {mode}, {n} frames")
        sealed, plain = frames(2 * n, seed + len(mode))
        pipeline = DecryptingPipeline(KEYS)
        recovered = miscorrected = 0
        latencies, hypotheses = [], []
        reasons: Counter[str] = Counter()
        for i in range(0, 2 * n, 2):
            assert pipeline.feed(sealed[i])[0].accepted
            bad = _damage(sealed[i + 1], mode, rng)
            start = time.perf_counter()
            result = pipeline.feed(bad)[0]
            latencies.append((time.perf_counter() - start) * 1000)
            if result.accepted:
                if result.frame.text + b"\r\n" == plain[i + 1]:
                    recovered += 1
                    assert result.repair is not None
                    hypotheses.append(result.repair.candidates)
                else:
                    miscorrected += 1
            else:
                reasons[result.reason or "?"] += 1
        miscorrected_total += miscorrected
        cuts = statistics.quantiles(latencies, n=100)
        rejected = n - recovered - miscorrected
        shown = ", ".join(f"{k} {v}" for k, v in reasons.most_common()) or "–"
        out.append(
            f"| {mode} | {n} | {100 * recovered / n:.2f} | {100 * rejected / n:.2f} | "
            f"{miscorrected} | {statistics.median(latencies):.2f} | {cuts[98]:.2f} | "
            f"{statistics.median(hypotheses) if hypotheses else 0:.0f} | {shown} |"
        )
    return out, miscorrected_total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--damaged", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger("dsmr_parser").setLevel(logging.CRITICAL)
    command = "python bench/bench_encrypted.py" + "".join(
        f" --{k} {v}" for k, v in vars(args).items() if v != parser.get_default(k)
    )
    lines = [
        header("Encrypted meters: decrypt + decode, and repair proven by the GCM tag", command)
    ]
    lines += speed(args.count, args.repeat, args.seed)
    table, miscorrected = repair(args.damaged, args.seed)
    lines += table
    lines += [
        "",
        "recovered = accepted and byte-identical to the telegram the meter sealed (status "
        "`repaired`, method `gcm`); each tested hypothesis is falsely accepted with probability "
        "2⁻⁹⁶ (the tag), against 2⁻¹⁶ for a CRC-checked telegram repair. Latency: the damaged "
        "frame's `feed()`, tables built on the first one (per key and frame length) included.",
    ]
    print("\n".join(lines))
    return 1 if miscorrected else 0


if __name__ == "__main__":
    sys.exit(main())
