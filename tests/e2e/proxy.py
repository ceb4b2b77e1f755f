"""A TCP proxy that cuts a connection after some bytes of the server's answer: a network
failure mid-stream, for the resumption tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["cutting_proxy"]


@contextmanager
def cutting_proxy(port: int, cut: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP proxy to ``port`` for one connection that forwards ``cut`` bytes of the server's
    answer, then closes both sides; yields its port and [bytes forwarded]."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(60)  # a client that never came does not hang the test
    forwarded = [0]

    def pipe_up(client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass

    def serve() -> None:
        try:
            client, _ = listener.accept()
        except OSError:
            return
        upstream = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=pipe_up, args=(client, upstream), daemon=True).start()
        try:
            while forwarded[0] < cut:
                data = upstream.recv(min(65536, cut - forwarded[0]))
                if not data:
                    break
                client.sendall(data)
                forwarded[0] += len(data)
        except OSError:
            pass
        finally:
            for end in (client, upstream):
                # shutdown, not just close: the other thread's recv holds the socket open.
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], forwarded
    finally:
        listener.close()
        thread.join(timeout=30)
