"""Socket-level helpers for tests of the proxy and the HTTP servers: raw exchanges, echo."""

from __future__ import annotations

import contextlib
import socket
import threading


def exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a fresh connection; all the server answers until it closes."""
    with socket.create_connection((host, port), timeout=timeout) as conn:
        conn.sendall(data)
        chunks = []
        while chunk := conn.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


class EchoServer:
    """Threaded TCP echo server on loopback; closes a connection when the client half-closes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self._conns: list[socket.socket] = []
        self.received: list[bytes] = []  # what each finished connection sent us
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self._conns.append(conn)
            thread = threading.Thread(target=self._echo, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _echo(self, conn: socket.socket) -> None:
        seen = b""
        with conn:
            try:
                while data := conn.recv(65536):
                    seen += data
                    conn.sendall(data)
            except OSError:
                pass
        self.received.append(seen)

    def close(self) -> None:
        for sock in [self.listener, *self._conns]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(5)
        self.listener.close()
