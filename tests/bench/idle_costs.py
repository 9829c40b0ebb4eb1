"""What this machine charges a process for having been idle: the same small operation timed
right after another (hot) and after a pause, as a service waiting on convert runs it.

    python -m tests.bench.idle_costs [--runs 40]

Three operations, each on the path of every RPC and upload the services handle:
- a loopback TCP send of 500 bytes to a peer process blocked in recv, and its answer;
- a thread hop (asyncio.to_thread of a function that does nothing);
- a 100 KB file written and fsynced in a fresh file.

On a virtual machine whose idle vCPUs halt, and whose caches the host shares, the paused
figures are several times the hot ones: that is the cost a workflow of many short exchanges
pays when its processes sit idle between them (tests/bench/conversion.py), and what a busy
loop of exchanges (tests/bench/welcome.py) mostly does not."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from collections.abc import Callable

PAUSES = (0.0, 0.01, 0.1)


def _timed(operation: Callable[[], object], pause: float, runs: int) -> tuple[float, float]:
    """(median, 90th percentile) seconds of `operation`, each run after `pause` seconds."""
    times = []
    for _ in range(runs):
        if pause:
            time.sleep(pause)
        started = time.perf_counter()
        operation()
        times.append(time.perf_counter() - started)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9) - 1]


def _loopback_exchange() -> tuple[Callable[[], object], Callable[[], None]]:
    """A send to a forked echo peer and its answer; and how to stop the peer."""
    server = socket.create_server(("127.0.0.1", 0))
    pid = os.fork()
    if pid == 0:  # the peer: answers each piece, until the connection closes
        connection, _ = server.accept()
        while connection.recv(65536):
            connection.sendall(b"ok")
        os._exit(0)
    server_port = server.getsockname()[1]
    server.close()
    client = socket.create_connection(("127.0.0.1", server_port))
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    message = b"x" * 500

    def exchange() -> object:
        client.sendall(message)
        return client.recv(16)

    def stop() -> None:
        client.close()
        os.waitpid(pid, 0)

    return exchange, stop


def _thread_hop() -> tuple[Callable[[], object], Callable[[], None]]:
    loop = asyncio.new_event_loop()

    async def hop() -> None:
        await asyncio.to_thread(lambda: None)

    return (lambda: loop.run_until_complete(hop())), loop.close


def _file_written_and_synced(directory: str) -> Callable[[], object]:
    data = os.urandom(100_000)
    names = iter(range(10**9))

    def write() -> object:
        path = os.path.join(directory, f"object-{next(names)}")
        descriptor = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        try:
            os.write(descriptor, data)
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return path

    return write


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    exchange, stop_peer = _loopback_exchange()
    hop, close_loop = _thread_hop()
    with tempfile.TemporaryDirectory(prefix="mcsv-idle-costs-") as directory:
        operations = {
            "loopback send + answer": exchange,
            "thread hop (to_thread)": hop,
            "100 KB write + fsync": _file_written_and_synced(directory),
        }
        print("| operation | " + " | ".join(f"after {p * 1000:g} ms idle" for p in PAUSES) + " |")
        print("|---|" + "---|" * len(PAUSES))
        for name, operation in operations.items():
            operation()  # its first run pays for setting up
            cells = []
            for pause in PAUSES:
                median, p90 = _timed(operation, pause, args.runs)
                cells.append(f"{median * 1e6:,.0f} us (p90 {p90 * 1e6:,.0f})")
            print(f"| {name} | " + " | ".join(cells) + " |")
    stop_peer()
    close_loop()


if __name__ == "__main__":
    main()
