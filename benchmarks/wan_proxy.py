"""A user-space simulated WAN link, for machines whose kernel lacks
``sch_netem`` (so ``tc qdisc ... netem`` fails), such as the CI machine.

``WanProxy(listen_port, target_port, delay_s, rate_bps)`` forwards TCP from
``127.0.0.1:listen_port`` to ``127.0.0.1:target_port``, in both directions,
as a link with a one-way ``delay_s`` and a serialisation rate ``rate_bps``:
a chunk read at time t leaves the link at ``max(t, link_free) + bytes/rate``
and is delivered ``delay_s`` later, in order. That is netem's ``delay`` plus
``rate`` on each direction of each connection. It runs an asyncio loop on a
daemon thread.
"""

from __future__ import annotations

import asyncio
import threading
import time


class WanProxy:
    def __init__(self, listen_port: int, target_port: int, delay_s: float, rate_bps: float):
        self.listen_port, self.target_port = listen_port, target_port
        self.delay, self.rate = delay_s, rate_bps
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)
            ready.set()

        self.loop.run_until_complete(start())
        self.loop.run_forever()

    async def _accept(self, reader, writer) -> None:
        for _ in range(200):  # the target may not listen yet
            try:
                tr, tw = await asyncio.open_connection("127.0.0.1", self.target_port)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            writer.close()
            return
        asyncio.ensure_future(self._pipe(reader, tw))
        asyncio.ensure_future(self._pipe(tr, writer))

    async def _pipe(self, reader, writer) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        state = {"free": 0.0}

        async def deliver() -> None:
            while True:
                at, data = await queue.get()
                if data is None:
                    writer.close()
                    return
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()

        task = asyncio.ensure_future(deliver())
        try:
            while True:
                data = await reader.read(1 << 16)
                now = time.monotonic()
                if not data:
                    break
                state["free"] = max(state["free"], now) + len(data) * 8 / self.rate
                queue.put_nowait((state["free"] + self.delay, data))
        except OSError:
            pass
        queue.put_nowait((0.0, None))
        await task

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
