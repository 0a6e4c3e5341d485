"""Text from events and entries, made safe to print on an operator's terminal.

A sender controls event types, ids, emails, names and Stripe's messages; printed raw, an
ESC sequence clears the screen or recolours it, a CR or LF forges a line, and a bidi
override (U+202E) reverses what follows. `printable` writes each such character as its
Python escape (`\\x1b`, `\\n`, `\\u202e`), so one entry is one line and shows what was sent.
Lone surrogates (which cannot be written to a UTF-8 terminal) are escaped the same way.
"""

from __future__ import annotations

# C0 controls and DEL, C1 controls (ECMA-48: CSI is also U+009B), the Unicode line and
# paragraph separators, and the bidi embedding, override and isolate controls plus the
# marks (Unicode Standard Annex #9, "Explicit Directional Formatting Characters").
_UNSAFE = [
    *range(0x00, 0x20),
    0x7F,
    *range(0x80, 0xA0),
    0x061C,
    0x200E,
    0x200F,
    0x2028,
    0x2029,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    *range(0xD800, 0xE000),
]
_ESCAPES = {code: (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}") for code in _UNSAFE} | {
    0x09: "\\t",
    0x0A: "\\n",
    0x0D: "\\r",
}


def printable(text: object) -> str:
    """`text` with every control, line-breaking and bidi character escaped."""
    return str(text).translate(_ESCAPES)
