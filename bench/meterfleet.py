"""Many simulated TCP meters in one process, for bench_agent_fleet.py (run as a script).

    python bench/meterfleet.py --meters 200 --rounds 240 [--interval 1.0]

Listens on one loopback port per meter, as a P1-to-TCP bridge does, and prints
`{"ports": [...]}` on stdout. Once every port has its client (the agent), it writes one DSMR 5
telegram per meter per `--interval` seconds for `--rounds` rounds, the meters spread evenly over
each interval as independent meters would be, and prints `{"round": N, "late": S}` after each
round: N telegrams have been written to every meter, and S is the furthest behind schedule a
write has started so far (a write blocks when the agent stops reading and the socket's buffers
are full, so lateness reveals a backlog the counts might hide). Then `{"done": N}`, and the
links stay open until stdin closes, so the agent sees no disconnect while it is measured.

It runs apart from the benchmark so its CPU is not charged to the agent. Each meter has its own
serial (hence equipment identifier) and seed; its clock starts at the current second and
advances 1 s per telegram, and telegrams are generated as they are due (~25 µs each).
"""

from __future__ import annotations

import argparse
import json
import selectors
import socket
import sys
import time
from datetime import UTC, datetime

from agent.simulate import SimulatedMeter

ACCEPT_TIMEOUT = 60.0


def say(message: dict[str, object]) -> None:
    print(json.dumps(message), flush=True)


def accept_all(listeners: list[socket.socket]) -> list[socket.socket]:
    """One connection per listener, in the listeners' order, whatever order they arrive in."""
    conns: dict[int, socket.socket] = {}
    with selectors.DefaultSelector() as selector:
        for index, listener in enumerate(listeners):
            selector.register(listener, selectors.EVENT_READ, index)
        deadline = time.monotonic() + ACCEPT_TIMEOUT
        while len(conns) < len(listeners):
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"only {len(conns)} of {len(listeners)} meters connected")
            for key, _ in selector.select(left):
                index = key.data
                conns[index], _ = listeners[index].accept()
                selector.unregister(listeners[index])
    return [conns[i] for i in range(len(listeners))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--meters", type=int, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(args.meters)]
    say({"ports": [listener.getsockname()[1] for listener in listeners]})
    conns = accept_all(listeners)
    now = datetime.now(UTC)
    meters = [
        SimulatedMeter("dsmr5", start=now, interval=1.0, serial=f"{8_000_001 + i}", seed=i + 1)
        for i in range(args.meters)
    ]
    start = time.monotonic()
    late = 0.0
    for n in range(args.rounds):
        for i, (conn, meter) in enumerate(zip(conns, meters, strict=True)):
            due = start + (n + i / args.meters) * args.interval
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                late = max(late, -wait)
            conn.sendall(meter.next_telegram())
        say({"round": n + 1, "late": round(late, 3)})
    say({"done": args.rounds})
    sys.stdin.read()


if __name__ == "__main__":
    main()
