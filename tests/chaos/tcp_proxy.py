"""A TCP proxy the chaos tests steer: ``python tcp_proxy.py LISTEN UPSTREAM CONTROL``.

It runs as its own process, so the load the tests generate cannot slow it down. Each
line sent to the control port is a command, answered with ``ok``:

- ``latency SECONDS``: deliver every chunk from the upstream that much later (pipelined,
  as a slow link would); 0 for none.
- ``route PORT``: send new connections to another upstream port and close the open ones,
  so pooled client connections cannot keep talking to the old upstream.

A connection whose upstream refuses is reset, as a dead server's would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.writers: set[asyncio.StreamWriter] = set()

    async def serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter):
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        self.writers |= {client_w, upstream_w}
        try:
            await asyncio.gather(
                self.pump(client_r, upstream_w, delayed=False),
                self.pump(upstream_r, client_w, delayed=True),
            )
        finally:
            for writer in (client_w, upstream_w):
                self.writers.discard(writer)
                writer.transport.abort()

    async def pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, chunk = await queue.get()
                if not chunk:
                    return
                pause = due - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                writer.write(chunk)
                await writer.drain()

        delivery = asyncio.create_task(deliver())
        try:
            while chunk := await reader.read(65536):
                queue.put_nowait((time.monotonic() + (self.latency if delayed else 0.0), chunk))
                if delivery.done():
                    break
        except OSError:
            pass
        finally:
            queue.put_nowait((0.0, b""))
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await delivery
            writer.transport.abort()

    async def control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        while line := await reader.readline():
            command, _, value = line.decode().strip().partition(" ")
            if command == "latency":
                self.latency = float(value)
            elif command == "route":
                self.upstream_port = int(value)
                for client in list(self.writers):
                    client.transport.abort()
                self.writers.clear()
            writer.write(b"ok\n")
            await writer.drain()
        writer.close()


async def main(listen: int, upstream: int, control: int) -> None:
    proxy = Proxy(upstream)
    await asyncio.start_server(proxy.serve, "127.0.0.1", listen, backlog=1024)
    controller = await asyncio.start_server(proxy.control, "127.0.0.1", control)
    async with controller:
        await controller.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(*(int(arg) for arg in sys.argv[1:4])))
