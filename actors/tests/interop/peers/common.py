"""What both Python peers share: message contents, a permessage-deflate that records what
crossed the wire, and JSON-line output.

The peers are driven by actors/tests/interop_python.rs; they only report, the Rust tests
decide what is right.
"""

import json
import random
import sys

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT

WORDS = (
    "alpha beta gamma delta price symbol quote bid ask volume user room message hello "
    "there update state tick player score level ready true false null id name text"
).split()


def make_message(kind: str, size: int, seed: int = 0) -> "str | bytes":
    """Deterministic content that compresses the way real traffic does: JSON-like text from a
    small vocabulary, or binary made of near repeats and slices of a 16 KiB pool of random bytes.
    Either has matches at every distance up to the largest window, so a compressor that used a
    larger window than it agreed on produces data its peer cannot inflate; and either compresses
    at any window, so every message from the threshold up is sent compressed."""
    rng = random.Random(f"{kind}/{size}/{seed}")
    if kind == "text":
        parts = []
        total = 0
        i = 0
        while total < size:
            part = (
                f'{{"id":{i},"user":"{rng.choice(WORDS)}{rng.randrange(50)}",'
                f'"text":"{" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 6)))}",'
                f'"n":{rng.randrange(100000)}}},'
            )
            parts.append(part)
            total += len(part)
            i += 1
        return "".join(parts)[:size]
    pool = rng.randbytes(16384)
    out = bytearray()
    while len(out) < size:
        r = rng.random()
        if r < 0.1 or len(out) < 16:
            out += rng.randbytes(rng.randrange(1, 8))
        elif r < 0.6:
            # A near repeat: compresses at any window, down to 256 bytes.
            back = rng.randrange(8, min(256, len(out) + 1))
            start = len(out) - back
            out += out[start : start + rng.randrange(4, back)]
        else:
            start = rng.randrange(len(pool) - 64)
            out += pool[start : start + rng.randrange(4, 64)]
    return bytes(out[:size])


class Recording(PerMessageDeflate):
    """PerMessageDeflate that notes, for every data message, whether it crossed the wire
    compressed (RSV1) and how many payload bytes it took there."""

    def start_recording(self) -> None:
        self.rx = []  # [rsv1, wire bytes] per message received
        self.tx = []  # [rsv1, wire bytes] per message sent

    def decode(self, frame, *, max_size=None):
        if frame.opcode in (OP_TEXT, OP_BINARY):
            self.rx.append([frame.rsv1, len(frame.data)])
        elif frame.opcode is OP_CONT and self.rx:
            self.rx[-1][1] += len(frame.data)
        return super().decode(frame, max_size=max_size)

    def encode(self, frame):
        out = super().encode(frame)
        if out.opcode in (OP_TEXT, OP_BINARY):
            self.tx.append([out.rsv1, len(out.data)])
        elif out.opcode is OP_CONT and self.tx:
            self.tx[-1][1] += len(out.data)
        return out


def recording(extension: PerMessageDeflate) -> Recording:
    """Turns a negotiated extension into a recording one, keeping its state."""
    extension.__class__ = Recording
    extension.start_recording()
    return extension


def agreed(extension) -> "dict | None":
    """The parameters this side runs with after negotiation."""
    if extension is None:
        return None
    return {
        "remote_no_context_takeover": extension.remote_no_context_takeover,
        "local_no_context_takeover": extension.local_no_context_takeover,
        "remote_max_window_bits": extension.remote_max_window_bits,
        "local_max_window_bits": extension.local_max_window_bits,
    }


def emit(obj) -> None:
    """One JSON document per line on stdout, flushed at once: the Rust side reads line by line."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()
