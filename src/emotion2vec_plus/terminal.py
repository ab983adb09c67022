"""Text from outside (file names, error messages that quote them) made safe to print on a terminal.

A file name may hold newlines, carriage returns or ANSI escape sequences; printed raw, it can
forge extra result lines, erase earlier ones or change the terminal's state. Every such
character is shown as a Python-style escape instead (``\\n``, ``\\x1b``, ``\\u202e``).
"""

from __future__ import annotations

import unicodedata


def terminal_safe(text: object) -> str:
    """``text`` with control and bidirectional-override characters escaped; other text unchanged."""
    out = []
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char != " ":
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)
