"""A TCP proxy that a test can cut and heal: a network partition on one link, for real.

``cut()`` stops moving bytes in both directions on every connection, and new connections are
accepted but not forwarded: nothing is refused or reset, packets just stop arriving, which is
what a partition looks like to the endpoints (a refused connection would be noticed at once).
``heal()`` moves bytes again: what was sent meanwhile arrives late, as retransmissions would
deliver it, and waiting connections are forwarded.
"""

import asyncio
import contextlib
import threading

from tests.server import free_port


class CuttableProxy:
    def __init__(self, target_host: str, target_port: int):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._open: asyncio.Event | None = None
        self._server = None
        self._connections: set = set()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="tcp-proxy", daemon=True)
        self._thread.start()
        ready.wait(5)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)

        async def start():
            self._open = asyncio.Event()
            self._open.set()
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

        self._loop.run_until_complete(start())
        ready.set()
        self._loop.run_forever()

    async def _accept(self, client_reader, client_writer) -> None:
        # Ends quietly when close() cancels it (asyncio logs a cancelled connection callback).
        with contextlib.suppress(asyncio.CancelledError):
            await self._forward(client_reader, client_writer)

    async def _forward(self, client_reader, client_writer) -> None:
        await self._open.wait()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.close()
            return
        self._connections |= {client_writer, upstream_writer}
        await asyncio.gather(
            self._pump(client_reader, upstream_writer),
            self._pump(upstream_reader, client_writer),
            return_exceptions=True,
        )
        for writer in (client_writer, upstream_writer):
            self._connections.discard(writer)
            writer.close()

    async def _pump(self, reader, writer) -> None:
        while True:
            await self._open.wait()
            data = await reader.read(65536)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            await self._open.wait()  # read during a cut: held until the link heals
            writer.write(data)
            await writer.drain()

    def cut(self) -> None:
        self._loop.call_soon_threadsafe(self._open.clear)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._open.set)

    def close(self) -> None:
        async def shut():
            self._server.close()
            for writer in list(self._connections):
                writer.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._loop.stop()

        self._loop.call_soon_threadsafe(lambda: self._loop.create_task(shut()))
        self._thread.join(5)
        self._loop.close()
