#!/usr/bin/env python3
"""A loopback TCP proxy that adds a fixed delay to every request (stdlib asyncio only).

    python3 bench/latency_proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS

Why: a loopback S3 server answers a small GET in well under a millisecond, while a real object
store takes tens of milliseconds to the first byte. A benchmark on loopback therefore hides what
each request costs an engine: one that issues its small GETs one after another looks as fast as
one that keeps many in flight. bench/small_files.sh --latency-ms N puts this proxy between both
engines and the server so that every request waits N ms, as it would on a real store.

Listens on 127.0.0.1:LISTEN_PORT (backlog 1024). For each accepted connection it opens one to
127.0.0.1:UPSTREAM_PORT and pipes bytes both ways:

- client -> server: each chunk is forwarded DELAY_MS after it arrived, in order. A reader task
  stamps every chunk with its due time (arrival + delay) into a queue and keeps reading; a writer
  task sleeps until each chunk is due and sends it. So a request reaches the server DELAY_MS late,
  but requests sent back to back are all delayed by the same DELAY_MS (not DELAY_MS each in
  turn) and throughput is not limited;
- server -> client: forwarded at once.

An end of stream (half-close) is passed on the same way (client -> server also DELAY_MS late);
the connection is closed when both directions have ended, or at once when either fails. Errors
on one connection are logged to stderr (except resets and broken pipes, which clients dropping
pooled connections cause) and never stop the proxy. asyncio sets TCP_NODELAY on its sockets, so
the proxy adds no delayed-ACK waits of its own.

What it does not model: the TCP connect itself is not delayed (nor a TLS handshake, which a real
store over https would add), only the bytes sent; answers are not slowed down by bandwidth. The
proxy is one Python process and costs some CPU per chunk on the machine it runs on.
"""
import argparse
import asyncio
import sys

CHUNK = 64 * 1024
QUIET_ERRORS = (ConnectionResetError, BrokenPipeError)


async def first_error(*coros):
    """Run the coroutines together until all have returned or one raises; then cancel the others
    and raise that exception (if any)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def forward(reader, writer):
    """Copy bytes from reader to writer as they come, then pass the end of stream on."""
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    writer.write_eof()


async def forward_delayed(reader, writer, delay):
    """Copy bytes from reader to writer, each chunk `delay` seconds after it arrived, in order,
    then pass the end of stream on (also `delay` late)."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def receive():
        while True:
            data = await reader.read(CHUNK)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await first_error(receive(), send())


def make_handler(upstream_port, delay):
    async def handle(client_reader, client_writer):
        peer = client_writer.get_extra_info("peername")
        upstream_writer = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
            await first_error(forward_delayed(client_reader, upstream_writer, delay),
                              forward(upstream_reader, client_writer))
        except QUIET_ERRORS:
            pass
        except Exception as e:  # one connection's trouble never stops the proxy
            print(f"latency_proxy: connection from {peer}: {e!r}", file=sys.stderr, flush=True)
        finally:
            for w in (client_writer, upstream_writer):
                if w is not None:
                    w.close()
    return handle


async def serve(listen_port, upstream_port, delay_ms):
    server = await asyncio.start_server(make_handler(upstream_port, delay_ms / 1000), "127.0.0.1",
                                        listen_port, backlog=1024)
    print(f"latency_proxy: 127.0.0.1:{listen_port} -> 127.0.0.1:{upstream_port}, "
          f"client -> server bytes delayed {delay_ms:g} ms", file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the module docstring (bench/latency_proxy.py) for details.")
    ap.add_argument("listen_port", type=int, metavar="LISTEN_PORT", help="port to listen on (127.0.0.1)")
    ap.add_argument("upstream_port", type=int, metavar="UPSTREAM_PORT", help="port of the server (127.0.0.1)")
    ap.add_argument("delay_ms", type=float, metavar="DELAY_MS",
                    help="milliseconds added to the bytes sent to the server (>= 0)")
    a = ap.parse_args()
    if a.delay_ms < 0:
        ap.error("DELAY_MS must be >= 0")
    try:
        asyncio.run(serve(a.listen_port, a.upstream_port, a.delay_ms))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
