"""Benchmark the embedded Toxiproxy-compatible server.

Prints, from one run:

1. throughput of a bulk transfer through the proxy with no toxics vs a direct
   loopback connection (MB/s, ratio; target >= 500 MB/s);
2. accuracy of the latency toxic: p50/p99 error of the measured round trip vs
   the configured latency (50 ms downstream), baseline round trip subtracted.

The traffic generator (client + sink) runs in a child process so the proxy's
event-loop thread does not compete with it for the GIL. Finishes in well under
60 s. Run: ``python bench/bench_proxy.py``.
"""

from __future__ import annotations

import multiprocessing as mp
import socket
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reliability.chaos.proxy import ProxyServer

TRANSFER = 1 << 30  # bytes per throughput run
ROUNDS = 3
BLOCK = 1 << 20
LATENCY_MS = 50
SAMPLES = 60
TARGET_MBPS = 500.0


# -- traffic generator (child process) ------------------------------------------------------


def _sink(listener: socket.socket) -> None:
    """Accept connections; read to EOF, then answer with the byte count."""
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            buf = bytearray(BLOCK)
            total = 0
            while n := conn.recv_into(buf):
                total += n
            conn.sendall(total.to_bytes(8, "big"))


def _send(address: tuple[str, int], size: int) -> float:
    """Send ``size`` bytes to ``address``; seconds until the sink confirmed them."""
    block = b"\x00" * BLOCK
    with socket.create_connection(address) as conn:
        start = time.perf_counter()
        sent = 0
        while sent < size:
            conn.sendall(block)
            sent += BLOCK
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while len(reply) < 8:
            chunk = conn.recv(8 - len(reply))
            if not chunk:
                raise RuntimeError("sink closed early")
            reply += chunk
        elapsed = time.perf_counter() - start
    if int.from_bytes(reply, "big") != size:
        raise RuntimeError("sink did not receive every byte")
    return elapsed


def _generator(pipe: Connection) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=_sink, args=(listener,), daemon=True).start()
    pipe.send(listener.getsockname()[1])
    while (request := pipe.recv()) is not None:
        host, port, size = request
        pipe.send(_send((host, port), size))
    listener.close()


# -- measurements ---------------------------------------------------------------------------


def _throughput(pipe: Connection, host: str, port: int) -> float:
    """Best MB/s over ROUNDS transfers to ``host:port``."""
    best = 0.0
    for _ in range(ROUNDS):
        pipe.send((host, port, TRANSFER))
        best = max(best, TRANSFER / pipe.recv() / 1e6)
    return best


def _echo_server() -> socket.socket:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    return listener


def _round_trips(address: tuple[str, int], count: int) -> list[float]:
    times = []
    with socket.create_connection(address) as conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(count):
            start = time.perf_counter()
            conn.sendall(b"ping")
            received = 0
            while received < 4:
                received += len(conn.recv(64))
            times.append(time.perf_counter() - start)
    return times


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _split(listen: str) -> tuple[str, int]:
    host, port = listen.rsplit(":", 1)
    return host, int(port)


def main() -> int:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    generator = ctx.Process(target=_generator, args=(child,), daemon=True)
    generator.start()
    sink_port = parent.recv()
    echo = _echo_server()
    started = time.perf_counter()
    try:
        with ProxyServer(port=0) as server:
            client = server.client()
            bulk = client.create(upstream=f"127.0.0.1:{sink_port}", name="bulk")
            direct = _throughput(parent, "127.0.0.1", sink_port)
            proxied = _throughput(parent, *_split(bulk.listen))

            echo_proxy = client.create(upstream=f"127.0.0.1:{echo.getsockname()[1]}", name="echo")
            address = _split(echo_proxy.listen)
            baseline = statistics.median(_round_trips(address, 20))
            echo_proxy.add_toxic(type="latency", attributes={"latency": LATENCY_MS})
            errors = [
                (rtt - baseline) * 1000 - LATENCY_MS for rtt in _round_trips(address, SAMPLES)
            ]
    finally:
        parent.send(None)
        generator.join(10)
        echo.close()

    ratio = proxied / direct
    verdict = "PASS" if proxied >= TARGET_MBPS else "FAIL"
    print("embedded toxiproxy benchmark")
    print(f"  throughput, direct loopback   : {direct:10.1f} MB/s")
    print(f"  throughput, proxy (no toxics) : {proxied:10.1f} MB/s   "
          f"ratio {ratio:.2f}   target >= {TARGET_MBPS:.0f} MB/s: {verdict}")
    print(f"  latency toxic {LATENCY_MS} ms, {SAMPLES} round trips "
          f"(baseline rtt {baseline * 1000:.3f} ms subtracted):")
    print(f"    error p50 {_percentile(errors, 0.50):+.2f} ms   "
          f"p99 {_percentile(errors, 0.99):+.2f} ms   "
          f"max |err| {max(abs(e) for e in errors):.2f} ms")
    print(f"  total bench time {time.perf_counter() - started:.1f} s")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
