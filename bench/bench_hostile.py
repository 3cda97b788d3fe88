"""`p1-agent replay` on hostile input: exit code, summary, CPU time and peak RSS.

    python bench/bench_hostile.py [--size-mib 100]

Three files of `--size-mib` MiB each, written (seeded, so reproducible) into a temporary
directory one at a time and deleted after use:
- random: random bytes (they hold a `/` every 256 bytes and a rare `!XX\\r` by chance);
- open-frame: `/` followed by `1-0:1.8.0(000001.000*kWh)\\r\\n` repeated, never a `!`;
- slashes: random bytes with one byte in 64 overwritten by `/` (many short truncated frames).
Each is run once through `p1-agent replay FILE --format jsonl -o /dev/null`. The script exits
non-zero when a run exits non-zero, prints a traceback, or peaks above `--max-rss-mib` in RSS
(memory must not grow with the input); the markdown section is printed either way.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from benchenv import header, log, p1_agent
from childproc import floor_mib, measure

CHUNK = 1 << 20
LINE = b"1-0:1.8.0(000001.000*kWh)\r\n"


def random_chunks(rng: random.Random) -> Iterator[bytes]:
    while True:
        yield rng.randbytes(CHUNK)


def open_frame_chunks(rng: random.Random) -> Iterator[bytes]:
    block = LINE * (CHUNK // len(LINE))
    yield b"/" + block
    while True:
        yield block


def slash_chunks(rng: random.Random) -> Iterator[bytes]:
    for chunk in random_chunks(rng):
        data = bytearray(chunk)
        for position in rng.sample(range(CHUNK), CHUNK // 64):
            data[position] = 0x2F  # `/`
        yield bytes(data)


KINDS: dict[str, tuple[str, Callable[[random.Random], Iterator[bytes]]]] = {
    "random": ("random bytes", random_chunks),
    "open-frame": ("`/` then a repeated OBIS line, no `!`", open_frame_chunks),
    "slashes": ("random bytes, 1 byte in 64 set to `/`", slash_chunks),
}


def write(path: Path, chunks: Iterator[bytes], size: int) -> None:
    with open(path, "wb") as out:
        written = 0
        for chunk in chunks:
            part = chunk[: size - written]
            out.write(part)
            written += len(part)
            if written >= size:
                break


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size-mib", type=int, default=100, help="size of each file")
    parser.add_argument("--max-rss-mib", type=float, default=64, help="peak RSS allowed")
    args = parser.parse_args()
    size = args.size_mib << 20
    limit_mib = args.max_rss_mib
    agent = p1_agent()
    floor = floor_mib()
    rows = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="p1-hostile-") as tmp:
        for seed, (name, (description, chunks)) in enumerate(KINDS.items(), start=1):
            path = Path(tmp, f"{name}.bin")
            log(f"writing {args.size_mib} MiB of {description} to {path}")
            write(path, chunks(random.Random(seed)), size)
            log(f"replay {path.name} --format jsonl -o /dev/null")
            run = measure([agent, "replay", str(path), "--format", "jsonl", "-o", "/dev/null"])
            path.unlink()
            problems = [
                *([f"exit {run.exit_code}"] if run.exit_code != 0 else []),
                *(["traceback"] if "Traceback" in run.stderr else []),
                *([f"RSS > {limit_mib:.0f} MiB"] if run.max_rss_mib > limit_mib else []),
            ]
            failed = failed or bool(problems)
            summary = " / ".join(run.stderr.strip().splitlines()[:2]) or "(no stderr)"
            if len(summary) > 300:
                summary = summary[:300] + " …"
            rows.append(
                f"| {name}: {description} | {run.exit_code} | {run.cpu_s:.1f} | {run.wall_s:.1f} "
                f"| {run.max_rss_mib:.0f} | {'FAIL: ' + ', '.join(problems) if problems else 'ok'} "
                f"| {summary.replace('|', '/')} |"
            )
            if problems:
                log(f"{name}: {', '.join(problems)}\n{run.stderr[-2000:]}")

    print(header("Hostile input", "python bench/bench_hostile.py"))
    print(
        f"`p1-agent replay FILE --format jsonl -o /dev/null` once per {args.size_mib} MiB file; "
        "CPU = user + sys of the child (os.wait4); peak RSS = its ru_maxrss "
        f"({floor:.0f} MiB is the launcher's floor). A run passes when it exits 0 with a summary "
        f"and no traceback and stays below {limit_mib:.0f} MiB RSS. The files are deleted "
        "afterwards.\n"
    )
    print("| input | exit | CPU s | wall s | peak RSS MiB | result | stderr summary |")
    print("|---|---:|---:|---:|---:|---|---|")
    print("\n".join(rows))
    print()
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
