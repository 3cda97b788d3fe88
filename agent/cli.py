"""Command line: argument parsing only; the work happens in the modules it calls."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from agent.noise import MODES as NOISE_MODES

EPILOG = "Every `run` option is also read from a P1_* environment variable (see README)."


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p1-agent",
        description="Read, repair and deliver smart-meter P1 telegrams (DSMR and its variants).",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="the live agent: sources → local store, with Prometheus metrics",
        description="Read meters and keep every accepted reading in the local store "
        "(DATA_DIR/store.sqlite), serving Prometheus metrics and /healthz.",
    )
    run.add_argument(
        "--source",
        action="append",
        metavar="URL",
        help="`simulator[:dsmr5|hu][,noise=RATE]` or `file:PATH`; repeat for several meters "
        "(P1_SOURCE, comma-separated; default: simulator)",
    )
    run.add_argument(
        "--data-dir", metavar="DIR", help="local store and state (P1_DATA_DIR; default: ./data)"
    )
    run.add_argument(
        "--metrics-address",
        metavar="HOST:PORT",
        help="Prometheus /metrics and /healthz (P1_METRICS_ADDRESS; default: 127.0.0.1:9224)",
    )
    run.add_argument(
        "--meter-timezone",
        metavar="ZONE",
        help="meter clock zone (P1_METER_TIMEZONE; default: Europe/Amsterdam)",
    )
    run.add_argument(
        "--max-frame",
        metavar="BYTES",
        help="drop frames longer than this (P1_MAX_FRAME; default: 16384)",
    )
    run.add_argument(
        "--log-level", metavar="LEVEL", help="debug, info, warning or error (P1_LOG_LEVEL)"
    )

    replay = sub.add_parser(
        "replay",
        help="convert raw captures and terminal logs to CSV, JSONL or line protocol",
        description="Decode raw captures (serial dumps, PuTTY logs, gzip files; `-` for stdin) "
        "and write one record per telegram. A summary goes to stderr.",
    )
    replay.add_argument(
        "paths", nargs="+", metavar="PATH", help="capture files, gzip or plain; - for stdin"
    )
    replay.add_argument(
        "--format",
        choices=("csv", "jsonl", "line-protocol"),
        default="csv",
        help="output format (default: csv)",
    )
    replay.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="output file, - for stdout (default)"
    )
    replay.add_argument(
        "--meter-timezone",
        default="Europe/Amsterdam",
        metavar="ZONE",
        help="meter clock zone (default: Europe/Amsterdam; Irish meters: Europe/Dublin)",
    )
    replay.add_argument(
        "--max-frame",
        type=int,
        default=16 * 1024,
        metavar="BYTES",
        help="drop frames longer than this (default: 16384)",
    )
    replay.add_argument(
        "--no-progress", action="store_true", help="no progress bar, even on a terminal"
    )

    simulate = sub.add_parser(
        "simulate",
        help="a simulated meter writing telegrams to stdout or a file",
        description="Generate telegrams of a simulated meter (E.ON Hungary or DSMR 5), "
        "optionally through a noisy line (--noise, --noise-rate; a count of the corrupted "
        "telegrams then goes to stderr).",
    )
    simulate.add_argument(
        "--flavour", choices=("hu", "dsmr5"), default="dsmr5", help="meter flavour (default: dsmr5)"
    )
    simulate.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="stop after N telegrams (default: run forever)",
    )
    simulate.add_argument(
        "--interval",
        type=float,
        metavar="SECONDS",
        help="meter interval (default: 10 for hu, 1 for dsmr5)",
    )
    simulate.add_argument(
        "--realtime",
        action="store_true",
        help="pace output at the interval instead of as fast as possible",
    )
    simulate.add_argument(
        "--start",
        metavar="ISO",
        help="meter time of the first telegram (default: 2024-06-01T00:00:00Z)",
    )
    simulate.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    simulate.add_argument(
        "--noise",
        metavar="MODE=RATE[,MODE=RATE...]",
        help="corrupt telegrams: each meets MODE with probability RATE (their sum at most 1); "
        f"modes: {', '.join(NOISE_MODES)}",
    )
    simulate.add_argument(
        "--noise-rate",
        metavar="RATE",
        help="corrupt this share of the telegrams, spread equally over every mode the flavour "
        "has (ff_run is hu only); --noise then overrides single modes",
    )
    simulate.add_argument(
        "--output", "-o", default="-", metavar="FILE", help="output file, - for stdout (default)"
    )
    return parser


def _fail(message: str) -> int:
    sys.stderr.write(f"p1-agent: error: {message}\n")
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "replay":
            from agent.commands import replay_command

            return replay_command(args)
        if args.command == "simulate":
            from agent.commands import simulate_command

            return simulate_command(args)
        from agent.commands import run_command

        return run_command(args)
    except ValueError as exc:
        return _fail(str(exc))
    except BrokenPipeError:
        # The reader went away (`| head`): not an error; keep the interpreter from complaining.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        name = f" {exc.filename}" if exc.filename else ""
        return _fail(f"{exc.strerror or exc}{':' if name else ''}{name}")
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
