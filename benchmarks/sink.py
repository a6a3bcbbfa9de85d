"""A cheap endpoint for the benchmarks: it answers every request 200 and records when it came.

The demo Lambda (`lambdaop.tools.demo`) is a threaded `http.server`, which
tops out near 1,100 requests/s on one core, so at a steady 1,000 calls/s it
measured itself rather than lambdaop. This one is a single asyncio loop
(HTTP/1.1 keep-alive, bodies read by Content-Length) and spends a fraction of
that per request. It keeps the demo's recording interface: GET /_calls lists
`{"at", "path", "query", "idempotency_key"}` of every other request, DELETE /_calls clears them.

Usage: python benchmarks/sink.py --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

_OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'


class Sink(asyncio.Protocol):
    calls: list[tuple[float, str, str, str | None]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.transport.get_extra_info("socket").setsockopt(6, 1, 1)  # TCP_NODELAY

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1")
            length, key = 0, None
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                if name == "content-length":
                    length = int(value.strip() or 0)
                elif name == "idempotency-key":
                    key = value.strip()
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            method, target, _ = head.split(" ", 2)
            path, _, query = target.partition("?")
            if path == "/_calls":
                self._calls(method)
            else:
                Sink.calls.append((time.time(), path, query, key))
                self.transport.write(_OK)

    def _calls(self, method: str) -> None:
        if method == "DELETE":
            Sink.calls.clear()
            body = b"[]"
        else:
            body = json.dumps(
                [{"at": at, "path": p, "query": q, "idempotency_key": k} for at, p, q, k in Sink.calls]
            ).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
