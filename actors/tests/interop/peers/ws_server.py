"""A websockets echo server whose permessage-deflate settings each connection chooses.

It listens on 127.0.0.1 (an ephemeral port) and prints {"ready": true, "websockets": version,
"port": N}. It serves until its stdin closes (the Rust test dropping it) or after 300 s.

Each connection's query string configures the server for that connection:
    deflate=0          no permessage-deflate (an offer is declined)
    snct=1, cnct=1     server_no_context_takeover / client_no_context_takeover
    smwb=N, cmwb=N     server_max_window_bits / client_max_window_bits
    level=N, mem=N     zlib compress level / memLevel of the server's compressor
    respond=HEADER     replace the negotiated Sec-WebSocket-Extensions answer with HEADER
                       (or drop it when empty): a server that ignores or oversteps the offer
Data messages are echoed. The text message "stats?" is answered with a JSON document
{"agreed": ..., "rx": [[rsv1, wire bytes], ...], "tx": [...]} for the messages before it.
"""

import json
import sys
import threading
from urllib.parse import parse_qs, urlsplit

import websockets
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import serve

from common import agreed, emit, recording

STEP = 10


class RecordingServerFactory(ServerPerMessageDeflateFactory):
    def process_request_params(self, params, accepted_extensions):
        response, extension = super().process_request_params(params, accepted_extensions)
        return response, recording(extension)


def query(request) -> dict:
    return {k: v[-1] for k, v in parse_qs(urlsplit(request.path).query,
                                          keep_blank_values=True).items()}


def process_request(connection, request):
    q = query(request)
    if q.get("deflate") == "0":
        connection.protocol.available_extensions = []
        return None
    settings = {}
    if "level" in q:
        settings["level"] = int(q["level"])
    if "mem" in q:
        settings["memLevel"] = int(q["mem"])
    connection.protocol.available_extensions = [RecordingServerFactory(
        server_no_context_takeover=q.get("snct") == "1",
        client_no_context_takeover=q.get("cnct") == "1",
        server_max_window_bits=int(q["smwb"]) if "smwb" in q else None,
        client_max_window_bits=int(q["cmwb"]) if "cmwb" in q else None,
        compress_settings=settings or None,
    )]
    return None


def process_response(connection, request, response):
    q = query(request)
    if "respond" in q:
        if "Sec-WebSocket-Extensions" in response.headers:
            del response.headers["Sec-WebSocket-Extensions"]
        if q["respond"]:
            response.headers["Sec-WebSocket-Extensions"] = q["respond"]
    return None


def handler(ws) -> None:
    ext = next(iter(ws.protocol.extensions), None)
    try:
        echo(ws, ext)
    except websockets.ConnectionClosed:
        pass  # a client that refused the handshake answer, or went away: nothing to report


def echo(ws, ext) -> None:
    for message in ws:
        if message == "stats?":
            stats = {"agreed": agreed(ext), "rx": [], "tx": []}
            if ext is not None:
                # The request itself is the last message received.
                stats["rx"], stats["tx"] = ext.rx[:-1], list(ext.tx)
            ws.send(json.dumps(stats))
        else:
            ws.send(message)


def main() -> None:
    with serve(handler, "127.0.0.1", 0, compression=None, max_size=None,
               process_request=process_request, process_response=process_response,
               open_timeout=STEP, close_timeout=STEP) as server:
        port = server.socket.getsockname()[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        emit({"ready": True, "websockets": websockets.__version__, "port": port})
        # Serve until the test closes our stdin (or dies, which closes it too).
        done = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
        done.wait(300)
        server.shutdown()


if __name__ == "__main__":
    main()
