"""A websockets client that runs the cases it reads on stdin against ringsock servers.

Input: one JSON document, {"cases": [case, ...]}, each case
    {"name": str, "url": "ws://127.0.0.1:...", "deflate": null | {factory arguments},
     "messages": [["text" | "binary", size], ...]}
where the factory arguments are those of websockets' ClientPerMessageDeflateFactory
(server_no_context_takeover, client_no_context_takeover, server_max_window_bits,
client_max_window_bits: int or true, compress_settings). `deflate: null` offers no extension.

Output: a line {"ready": true, "websockets": version}, then one line per case, in order:
    {"name", "error": null | str, "extensions": the response's Sec-WebSocket-Extensions or null,
     "agreed": the parameters websockets runs with, or null,
     "messages": [{"kind", "size", "echo_ok", "rx": [rsv1, wire bytes] | null,
                   "tx": [rsv1, wire bytes] | null}]}
A case that fails reports its error and the run goes on with the next one.
"""

import functools
import json
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

from common import agreed, emit, make_message, recording

STEP = 10  # seconds any one wait may take


class RecordingClientFactory(ClientPerMessageDeflateFactory):
    def process_response_params(self, params, accepted_extensions):
        return recording(super().process_response_params(params, accepted_extensions))


content = functools.lru_cache(maxsize=None)(make_message)


def run_case(case: dict) -> dict:
    deflate = case.get("deflate")
    extensions = None if deflate is None else [RecordingClientFactory(**deflate)]
    result = {"name": case["name"], "error": None, "extensions": None, "agreed": None,
              "messages": []}
    with connect(case["url"], compression=None, extensions=extensions, max_size=None,
                 open_timeout=STEP, close_timeout=STEP) as ws:
        result["extensions"] = ws.response.headers.get("Sec-WebSocket-Extensions")
        ext = next(iter(ws.protocol.extensions), None)
        result["agreed"] = agreed(ext)
        for kind, size in case["messages"]:
            message = content(kind, size)
            ws.send(message)
            echo = ws.recv(timeout=STEP)
            result["messages"].append({"kind": kind, "size": size, "echo_ok": echo == message})
        if ext is not None:
            for entry, rx, tx in zip(result["messages"], ext.rx, ext.tx):
                entry["rx"], entry["tx"] = rx, tx
    return result


def main() -> None:
    emit({"ready": True, "websockets": websockets.__version__})
    for case in json.load(sys.stdin)["cases"]:
        try:
            emit(run_case(case))
        except Exception as e:  # reported, the Rust side fails the case
            emit({"name": case["name"], "error": f"{type(e).__name__}: {e}"})


if __name__ == "__main__":
    main()
