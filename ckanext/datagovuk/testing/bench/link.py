"""The 100 Mbit/s link between the two "hosts": a token-bucket TCP proxy on
loopback in front of the remote's sshd."""
from __future__ import annotations

import asyncio
import threading
import time

LINK_BYTES_PER_SECOND = 12_500_000      # 100 Mbit/s, each direction
PROXY_LIFETIME = 6 * 3600


class TokenBucket:
    """Paces a byte stream at ``rate`` bytes/s, with a burst of ``burst``
    bytes (what a link's buffers let through at once)."""

    def __init__(self, rate: float, burst: int = 64 * 1024):
        self.rate = float(rate)
        self.burst = burst
        self._next = 0.0        # when the link is free again (monotonic)

    def delay_for(self, size: int, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._next = max(self._next, now - self.burst / self.rate) + size / self.rate
        return max(0.0, self._next - now)


class ThrottledProxy:
    """A TCP proxy on loopback that forwards to ``target_port`` and limits
    each direction of each connection to ``rate`` bytes/s: the network
    between two hosts.  It runs its own event loop in a thread and shuts
    itself down after ``lifetime`` seconds at the latest."""

    CHUNK = 64 * 1024

    def __init__(self, target_port: int, rate: float = LINK_BYTES_PER_SECOND,
                 target_host: str = "127.0.0.1", lifetime: float = PROXY_LIFETIME):
        self.target_host = target_host
        self.target_port = target_port
        self.rate = rate
        self.lifetime = lifetime
        self.port: int | None = None
        self.bytes_forwarded = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self) -> "ThrottledProxy":
        self._thread = threading.Thread(target=self._run, name="throttled-proxy",
                                        daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error or self.port is None:
            raise RuntimeError(f"throttled proxy did not start: {self._error}")
        return self

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as error:      # reported through start()
            self._error = error
            self._ready.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._stopping = asyncio.Event()
        self._loop.call_later(self.lifetime, self._stopping.set)
        self._ready.set()
        await self._stopping.wait()
        self._server.close()
        for writer in list(self._connections):
            writer.close()
        await self._server.wait_closed()

    async def _handle(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(
                self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        self._connections.update((client_writer, server_writer))
        try:
            await asyncio.gather(
                self._pump(client_reader, server_writer, TokenBucket(self.rate)),
                self._pump(server_reader, client_writer, TokenBucket(self.rate)))
        finally:
            for writer in (client_writer, server_writer):
                self._connections.discard(writer)
                writer.close()

    async def _pump(self, reader, writer, bucket: TokenBucket) -> None:
        try:
            while True:
                data = await reader.read(self.CHUNK)
                if not data:
                    break
                delay = bucket.delay_for(len(data))
                if delay:
                    await asyncio.sleep(delay)
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()

    def stop(self) -> None:
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self) -> "ThrottledProxy":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

