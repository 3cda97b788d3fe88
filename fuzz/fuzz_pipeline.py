"""Coverage-guided fuzzing of the core (atheris/libFuzzer): bytes → MeterPipeline.feed.

    python fuzz/fuzz_pipeline.py --write-seeds CORPUS_DIR [TELEGRAM_FILE...]
    python fuzz/fuzz_pipeline.py CORPUS_DIR [libFuzzer options, e.g. -max_total_time=60]

The first command seeds the corpus with the third telegram of every simulated flavour and any
telegram files given; libFuzzer mutates them. The first byte of an
input picks how the rest is cut into chunks. An input whose identification line is that of a
seed with a clock is fed after two clean telegrams of that meter 20 and 10 s earlier, so the
meter's profile is ready and damaged frames go through the repair engine (and its plausibility
checks) rather than straight to rejection.

A crash is any exception, or a broken invariant: an accepted frame whose checksum does not match
its body, counters that do not add up, or a framer buffer beyond its bound.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["agent"]):
    from agent.core.crc import crc16_arc, crc16_x25
    from agent.core.pipeline import MeterPipeline, Result
    from agent.simulate import FLAVOURS, SimulatedMeter

MAX_FRAME = 4096  # small, so oversized frames are reached too


def _simulated() -> dict[str, list[bytes]]:
    """Per flavour: two clean telegrams to learn from and the third, a seed to mutate."""
    out = {}
    for flavour in FLAVOURS:
        meter = SimulatedMeter(flavour, seed=7)
        out[flavour] = [meter.next_telegram() for _ in range(3)]
    return out


SIMULATED = _simulated()


def _header(data: bytes) -> bytes:
    start = data.find(b"/")
    end = data.find(b"\r\n", start)
    return data[start:end] if 0 <= start < end else b""


# Clean telegrams that warm a pipeline up for inputs from the same meter, by identification line.
PRIMERS = {_header(telegrams[0]): telegrams[:2] for telegrams in SIMULATED.values()}
_CLOCK = re.compile(rb"0-0:1\.0\.0\((\d{12})[SW]?\)")
_CHECKSUM = re.compile(rb"[0-9A-Fa-f]{4}")


def earlier(telegram: bytes, seconds: int) -> bytes | None:
    """The telegram as its meter sent it `seconds` earlier (clock moved back, checksum redone);
    None for one without a clock or a checksum that matches its body."""
    clock = _CLOCK.search(telegram)
    bang = telegram.rfind(b"!")
    checksum = telegram[bang + 1 : bang + 5]
    if clock is None or bang < 0 or not _CHECKSUM.fullmatch(checksum):
        return None
    body = telegram[: bang + 1]
    crc = next((f for f in (crc16_arc, crc16_x25) if f(body) == int(checksum, 16)), None)
    if crc is None:
        return None
    when = datetime.strptime(clock[1].decode(), "%y%m%d%H%M%S") - timedelta(seconds=seconds)
    body = body[: clock.start(1)] + when.strftime("%y%m%d%H%M%S").encode() + body[clock.end(1) :]
    text = b"%04X" % crc(body)
    return body + (text.lower() if checksum.islower() else text) + telegram[bang + 5 :]


def add_primers(corpus: Path) -> None:
    for seed in corpus.iterdir():
        telegram = seed.read_bytes()[1:]
        first, second = earlier(telegram, 20), earlier(telegram, 10)
        if first is not None and second is not None:
            PRIMERS.setdefault(_header(telegram), [first, second])


def _check(pipeline: MeterPipeline, results: list[Result], fed: int) -> None:
    for result in results:
        frame = result.frame
        if result.accepted and frame.checksum is not None:
            expected = int(frame.checksum, 16)
            if expected not in (crc16_arc(frame.body), crc16_x25(frame.body)):
                raise AssertionError(f"accepted a frame whose checksum fails: {frame.text!r}")
        if (result.telegram is None) != (result.status == "rejected"):
            raise AssertionError(f"status and telegram disagree: {result.status}")
    if len(pipeline.framer._buf) > MAX_FRAME + fed:
        raise AssertionError(f"framer holds {len(pipeline.framer._buf)} bytes")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    chunk = 1 + data[0] * 8  # 1 … 2041 bytes per read, as a serial link hands them over
    body = data[1:]
    pipeline = MeterPipeline(max_frame=MAX_FRAME)
    for telegram in PRIMERS.get(_header(body), []):
        pipeline.feed(telegram)
    primed = sum(pipeline.counts.values())
    results: list[Result] = []
    for start in range(0, len(body), chunk):
        fed = pipeline.feed(body[start : start + chunk])
        _check(pipeline, fed, chunk)
        results += fed
    closed = pipeline.close()
    _check(pipeline, closed, 0)
    results += closed
    if sum(pipeline.counts.values()) - primed != len(results):
        raise AssertionError("frames counted and frames returned differ")
    if pipeline.framer._buf:
        raise AssertionError("bytes left in the framer after close()")


def write_seeds(directory: Path, files: list[Path]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # The leading byte is the chunking choice; 255 gives the largest reads (2041 bytes).
    for flavour, telegrams in SIMULATED.items():
        (directory / f"simulated-{flavour}").write_bytes(b"\xff" + telegrams[2])
    for path in files:
        (directory / path.name).write_bytes(b"\xff" + path.read_bytes())


def main() -> None:
    if sys.argv[1:2] == ["--write-seeds"]:
        write_seeds(Path(sys.argv[2]), [Path(name) for name in sys.argv[3:]])
        return
    for argument in sys.argv[1:]:
        if not argument.startswith("-") and Path(argument).is_dir():
            add_primers(Path(argument))
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
