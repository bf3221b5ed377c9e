"""TLS on an already accepted or connected asyncio stream."""

from __future__ import annotations

import asyncio
import ssl

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def upgrade(
    writer: asyncio.StreamWriter,
    context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    timeout_s: float = 10.0,
) -> Streams | None:
    """Run the handshake on `writer`'s connection; new streams over TLS, or None when the peer left right after it.

    Fresh streams rather than StreamWriter.start_tls: that one leaves its writer without a
    transport when the peer is already gone, and keeps treating the stream as plain TCP at
    EOF. Keep `writer` referenced while the new streams are in use: its finaliser closes
    the connection underneath.
    """
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    protocol = asyncio.StreamReaderProtocol(reader)
    secured = await loop.start_tls(
        writer.transport, protocol, context, server_side=server_side, server_hostname=server_hostname,
        ssl_handshake_timeout=timeout_s,
    )
    if secured is None:
        writer.transport.abort()
        return None
    protocol.connection_made(secured)
    return reader, asyncio.StreamWriter(secured, protocol, reader, loop)
