"""Faults a test injects under running processes: a TCP proxy that delays or cuts a link."""

import asyncio
import threading

from tests.processes import free_port


class TcpProxy:
    """A TCP proxy for fault tests: it can delay what the server sends back, cut the link, or freeze it."""

    def __init__(self, target_port: int) -> None:
        self.target_port, self.port = target_port, free_port()
        self.delay = 0.0
        self.flowing = asyncio.Event()  # cleared: frozen
        self.flowing.set()
        self.writers: list[asyncio.StreamWriter] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def start(self) -> "TcpProxy":
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=5)
        return self

    async def _serve(self) -> None:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", self.port)

    def cut(self) -> None:
        """Drop every connection and refuse new ones, as a server that went away would."""
        asyncio.run_coroutine_threadsafe(self._close_all(), self.loop).result(timeout=5)

    def freeze(self) -> None:
        """Stop forwarding bytes either way, closing nothing: a stalled server (or a partition) as clients see it."""
        self.loop.call_soon_threadsafe(self.flowing.clear)

    def thaw(self) -> None:
        """Forward again, held bytes first."""
        self.loop.call_soon_threadsafe(self.flowing.set)

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._serve(), self.loop).result(timeout=5)

    async def _close_all(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.close()
        pipes = asyncio.all_tasks() - {asyncio.current_task()}
        for pipe in pipes:  # one may be sleeping out a delay
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        self.writers.clear()

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            redis_reader, redis_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:  # the server is down: so is the link, as the client would see it
            client_writer.close()
            return
        self.writers += [client_writer, redis_writer]

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, slow: bool) -> None:
            while data := await reader.read(65536):
                if slow and self.delay:
                    await asyncio.sleep(self.delay)
                await self.flowing.wait()
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(
                pipe(client_reader, redis_writer, False),
                pipe(redis_reader, client_writer, True),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            pass  # cut(): the link is gone, which is the point

    def stop(self) -> None:
        self.cut()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
