"""The sub-commands behind the CLI, each building its settings and calling into the modules."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.pipeline import MeterPipeline
from agent.telegram import MeterZone

if TYPE_CHECKING:
    from agent.noise import NoisyChannel


def replay_command(args: argparse.Namespace) -> int:
    from agent.replay import open_output, replay, total_size

    pipeline = MeterPipeline(zone=MeterZone(args.meter_timezone), max_frame=args.max_frame)
    for path in args.paths:
        if path != "-":
            with open(path, "rb"):
                pass  # fail early, with the path, before any output is written
    bar: Any = None
    progress = lambda n: None  # noqa: E731
    if sys.stderr.isatty() and not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(
            total=total_size(args.paths), unit="B", unit_scale=True, desc="replay", leave=False
        )
        progress = bar.update
    out = open_output(args.output)
    try:
        summary = replay(args.paths, args.format, out, pipeline, progress)
    finally:
        if bar is not None:
            bar.close()
        if args.output != "-":
            out.close()
    for line in summary.lines():
        sys.stderr.write(line + "\n")
    return 0


def simulate_command(args: argparse.Namespace) -> int:
    from agent.simulate import SimulatedMeter

    start = None
    if args.start:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise ValueError(f"start time {args.start!r} is not ISO 8601") from None
        if start.tzinfo is None:
            raise ValueError(f"start time {args.start!r} needs an offset, e.g. {args.start}+00:00")
    if args.count < 0:
        raise ValueError("count must not be negative")
    meter = SimulatedMeter(args.flavour, start=start, interval=args.interval, seed=args.seed)
    first = meter.next_telegram()
    channel = _noisy_channel(args, first)
    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
    try:
        n = 0
        next_at = time.monotonic()
        while not args.count or n < args.count:
            if args.realtime:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += meter.interval
            telegram = first if n == 0 else meter.next_telegram()
            out.write(telegram if channel is None else channel.transmit(telegram))
            if args.realtime:
                out.flush()
            n += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
        else:
            out.flush()
        if channel is not None:
            sys.stderr.write(f"simulate: {channel.summary()}\n")
    return 0


def _noisy_channel(args: argparse.Namespace, telegram: bytes) -> NoisyChannel | None:
    """The line's noise from --noise-rate and --noise (which overrides single modes), or None."""
    from agent.noise import (
        NoisyChannel,
        applicable_modes,
        check_rates,
        parse_rate,
        parse_rates,
        spread_rate,
    )

    if args.noise is None and args.noise_rate is None:
        return None
    modes = applicable_modes(telegram)
    rates: dict[str, float] = {}
    if args.noise_rate is not None:
        rates.update(spread_rate(parse_rate(args.noise_rate, "noise rate"), modes))
    if args.noise is not None:
        explicit = parse_rates(args.noise)
        for mode, rate in explicit.items():
            if rate and mode not in modes:
                raise ValueError(f"noise mode {mode} does not apply to {args.flavour} telegrams")
        rates.update(explicit)
    check_rates(rates)
    # Its own random stream: the meter's values are the same with and without noise.
    return NoisyChannel(rates, f"noise-{args.seed}")


def run_command(args: argparse.Namespace) -> int:
    from agent import config
    from agent.logs import configure
    from agent.run import run

    try:
        settings = config.load(vars(args))
        MeterZone(settings.meter_timezone)
    except config.ConfigError as exc:
        raise ValueError(str(exc)) from None
    configure(settings.log_level)
    return run(settings)
