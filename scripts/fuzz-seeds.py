#!/usr/bin/env python3
"""Writes a small seed corpus for each fuzz target: fuzz-seeds.py OUTDIR -> OUTDIR/<target>/<name>.

Seeds are well-formed inputs in each target's input layout (the comment at the top of each
engine/fuzz/fuzz_targets/*.rs), so a short run starts past the first parse and reaches the
states behind it: whole frames (RFC 6455's own examples among them), fragmented and interleaved
messages, close frames, compressed messages (RFC 7692's examples, and others compressed here by
Python's zlib, an implementation independent of ringsock's), extension offers and handshake
heads. A target this script does not know gets no seeds and starts from an empty corpus.

They are written by a script rather than checked in as files, so that each one says what it
is; scripts/fuzz-run.sh replays them (and engine/fuzz/corpus/<target>/ when there is one)
before fuzzing. Standard library only.
"""

import os
import struct
import sys
import zlib

MASK = bytes([0x37, 0xFA, 0x21, 0x3D])  # RFC 6455 section 5.7's masking key


def frame(opcode, payload, fin=True, rsv1=False, masked=False):
    """One frame, built here byte by byte (not by the code under test)."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([b0, n])
    elif n < 1 << 16:
        head = bytes([b0, 126]) + struct.pack(">H", n)
    else:
        head = bytes([b0, 127]) + struct.pack(">Q", n)
    if not masked:
        return head + payload
    head = bytes([head[0], head[1] | 0x80]) + head[2:]
    return head + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def close(code, reason=b"", masked=False):
    return frame(0x8, struct.pack(">H", code) + reason, masked=masked)


def deflate(message, wbits=15):
    """permessage-deflate's payload: raw DEFLATE, sync-flushed, the trailing 00 00 ff ff cut."""
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def frame_header():
    seeds = {
        # RFC 6455 section 5.7.
        "rfc-text-hello": frame(0x1, b"Hello"),
        "rfc-masked-text-hello": frame(0x1, b"Hello", masked=True),
        "rfc-first-fragment": frame(0x1, b"Hel", fin=False),
        "rfc-last-fragment": frame(0x0, b"lo"),
        "rfc-ping": frame(0x9, b"Hello"),
        "rfc-masked-pong": frame(0xA, b"Hello", masked=True),
        "rfc-binary-256-header": frame(0x2, bytes(256))[:4],
        "rfc-binary-64k-header": frame(0x2, bytes(65536))[:10],
        "masked-binary-64k-header": frame(0x2, bytes(65536), masked=True)[:14],
        "compressed-text": frame(0x1, deflate(b"Hello"), rsv1=True),
        "close-1000": close(1000),
        "reserved-opcode": bytes([0x83, 0x00]),
        "rsv-bits": bytes([0xF1, 0x00]),
        "non-minimal-length": bytes([0x82, 126, 0x00, 0x05]) + b"Hello",
    }
    return seeds


def connection():
    # Byte 0: how many split sizes follow; then the sizes; then the stream, fed in those pieces.
    # Server role reads masked frames, client role unmasked ones; the target runs both on each.
    def whole(stream):
        return b"\x00" + stream

    def split(sizes, stream):
        return bytes([len(sizes)] + sizes) + stream

    seeds = {}
    for masked, tag in ((True, "masked"), (False, "unmasked")):
        hello = frame(0x1, b"Hello", masked=masked)
        fragmented = (
            frame(0x1, b"Hel", fin=False, masked=masked)
            + frame(0x9, b"ping in between", masked=masked)
            + frame(0x0, b"lo", masked=masked)
        )
        seeds[f"{tag}-text-then-close"] = whole(hello + close(1000, b"bye", masked))
        seeds[f"{tag}-fragments-around-a-ping"] = split([1, 3, 7], fragmented + close(1001, masked=masked))
        seeds[f"{tag}-binary-300"] = whole(frame(0x2, bytes(range(256)) + bytes(44), masked=masked))
        seeds[f"{tag}-utf8-split-in-a-character"] = split(
            [5], frame(0x1, "Grüße, κόσμε".encode(), masked=masked)
        )
        seeds[f"{tag}-invalid-utf8"] = whole(frame(0x1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xed\xa0\x80", masked=masked))
        seeds[f"{tag}-too-long-4097"] = whole(frame(0x2, bytes(4097), masked=masked))
        seeds[f"{tag}-close-no-code"] = whole(frame(0x8, b"", masked=masked))
        seeds[f"{tag}-close-bad-code"] = whole(close(1005, masked=masked))
        seeds[f"{tag}-pong-then-text"] = whole(frame(0xA, b"", masked=masked) + hello)
    return seeds


def deflate_connection():
    # Byte 0 picks role (bit 0: 1 is client), context takeover (bit 1) and, from the higher
    # bits, window bits 8 + (pick >> 4) % 8, memLevel and strategy; the stream is fed in pieces
    # of 37. 0x7_ picks a 15-bit window; a server reads masked frames, a client unmasked ones.
    seeds = {}
    for pick, role in ((0x71, "client"), (0x73, "client-takeover"), (0x70, "server"),
                       (0x72, "server-takeover")):
        masked = role.startswith("server")

        def f(opcode, payload, fin=True, rsv1=True):
            return frame(opcode, payload, fin=fin, rsv1=rsv1, masked=masked)

        p = bytes([pick])
        # RFC 7692 section 7.2.3: "Hello" compressed, then again with the shared window.
        rfc = f(0x1, bytes.fromhex("f248cdc9c90700"))
        if role.endswith("takeover"):
            rfc += f(0x1, bytes.fromhex("f200110000"))
        seeds[f"{role}-rfc-hello"] = p + rfc
        # RFC 7692: a compressed message in two fragments (RSV1 on the first only).
        seeds[f"{role}-rfc-fragmented"] = p + f(0x1, bytes.fromhex("f248cd"), fin=False) + \
            f(0x0, bytes.fromhex("c9c90700"), rsv1=False)
        # RFC 7692: "Hello" in a stored (uncompressed) DEFLATE block.
        seeds[f"{role}-rfc-stored-block"] = p + f(0x1, bytes.fromhex("000500faff48656c6c6f00"))
        text = b'{"match":42,"home":1,"away":0,"minute":67,"events":["goal","card","corner"]}' * 3
        seeds[f"{role}-json-and-ping"] = p + f(0x1, deflate(text)) + frame(0x9, b"p", masked=masked) + \
            f(0x2, deflate(bytes(range(256)) * 2))
        # Inflates past the target's 4096-byte limit: must close with 1009, not allocate it.
        seeds[f"{role}-inflates-past-the-limit"] = p + f(0x2, deflate(bytes(8192)))
        seeds[f"{role}-uncompressed-then-close"] = p + f(0x1, b"plain", rsv1=False) + \
            close(1000, masked=masked)
    # A smaller window (8 bits, pick 0x01: client), with data compressed for it.
    seeds["client-window-8"] = b"\x01" + frame(0x1, deflate(b"abcdefgh" * 64, wbits=9), rsv1=True)
    return seeds


def deflate_params():
    offers = [
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12",
        "permessage-deflate; client_max_window_bits=8, permessage-deflate",
        'permessage-deflate; server_max_window_bits="15"',
        "x-webkit-deflate-frame, permessage-deflate; client_max_window_bits, foo; bar=baz",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; unknown_param=1",
    ]
    return {f"offer-{i:02}": o.encode() for i, o in enumerate(offers)}


def handshake():
    request = (
        b"GET /chat HTTP/1.1\r\n"
        b"Host: server.example.com\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Origin: http://example.com\r\n"
        b"Sec-WebSocket-Protocol: chat, a\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"\r\n"
    )
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaq9kYGzzhZRbK+xOo=\r\n"
        b"Sec-WebSocket-Protocol: a\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
        b"\r\n"
    )
    return {
        "rfc-request": request,
        "rfc-response": response,
        "request-version-8": request.replace(b"Version: 13", b"Version: 8"),
        "request-no-key": request.replace(b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", b""),
        "request-post": request.replace(b"GET", b"POST", 1),
        "request-folded-connection": request.replace(b"Connection: Upgrade", b"Connection: keep-alive, Upgrade"),
        "request-partial": request[:40],
        "response-403": b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
    }


SEEDS = {
    "frame_header": frame_header,
    "connection": connection,
    "deflate_connection": deflate_connection,
    "deflate_params": deflate_params,
    "handshake": handshake,
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: fuzz-seeds.py OUTDIR")
    out = sys.argv[1]
    for target, make in SEEDS.items():
        os.makedirs(os.path.join(out, target), exist_ok=True)
        for name, data in make().items():
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
