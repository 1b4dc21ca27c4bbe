#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that holds every chunk for a fixed time in each direction: added
latency for scripts/bench.py's page-load rows, where this kernel has no `tc netem` (no
sch_netem module). Each direction delivers chunks in order, each no earlier than `one_way_ms`
after it arrived, with no bandwidth limit, so a round trip through it costs 2 × one_way_ms more
(as toxiproxy's latency toxic does). It passes TLS through untouched.

    delay_proxy.py LISTEN_PORT TARGET_PORT ONE_WAY_MS    (prints "ready" once listening)

It runs until killed.
"""

import asyncio
import sys


async def pump(reader, writer, delay):
    """Copies `reader` to `writer`, each chunk `delay` seconds after it was read; a half-close
    is passed on after the same delay."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def deliver():
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(chunk)
            await writer.drain()

    delivering = asyncio.create_task(deliver())
    try:
        while True:
            chunk = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await delivering
    except (ConnectionError, asyncio.CancelledError):
        delivering.cancel()


async def main(listen_port, target_port, one_way_ms):
    delay = one_way_ms / 1000

    async def relay(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay),
                             return_exceptions=True)
        for writer in (client_writer, server_writer):
            writer.close()

    server = await asyncio.start_server(relay, "127.0.0.1", listen_port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
