"""Text from outside (file names, error messages that quote them) made safe to print on a terminal
and to write as UTF-8.

A file name may hold newlines, carriage returns or ANSI escape sequences; printed raw, it can
forge extra result lines, erase earlier ones or change the terminal's state. Every such
character is shown as a Python-style escape instead (``\\n``, ``\\x1b``, ``\\u202e``).

On Linux a file name is any bytes; Python keeps the bytes that are not UTF-8 as lone surrogates
(``surrogateescape``), which cannot be written as UTF-8 at all. :func:`escape_undecodable` shows
each such byte as ``\\xNN``.
"""

from __future__ import annotations

import os
import unicodedata

#: The lone surrogates ``surrogateescape`` decodes the bytes 0x80-0xFF of a non-UTF-8 name to.
_ESCAPED_BYTES = range(0xDC80, 0xDD00)


def _escape_char(char: str) -> str:
    code = ord(char)
    if code in _ESCAPED_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape", "backslashreplace").decode("ascii")


def has_undecodable_bytes(name: str | os.PathLike) -> bool:
    """Whether ``name`` (a path as Python decoded it) holds bytes that are not valid UTF-8."""
    return any(0xD800 <= ord(char) <= 0xDFFF for char in os.fspath(name))


def escape_undecodable(name: str | os.PathLike) -> str:
    """``name`` with every byte that is not valid UTF-8 shown as ``\\xNN`` (any other lone
    surrogate as ``\\udNNN``); a valid name is returned unchanged. The result is always valid
    UTF-8, but it is a name for people: it does not open the file."""
    text = os.fspath(name)
    if not has_undecodable_bytes(text):
        return text
    return "".join(_escape_char(char) if 0xD800 <= ord(char) <= 0xDFFF else char for char in text)


def undecodable_name_error(name: str | os.PathLike) -> str | None:
    """Why a file with this name is not processed (``None`` for a valid UTF-8 name).

    Results name their file in JSON and Parquet, which hold text; a name with bytes that are not
    UTF-8 could only be written with escapes that no longer lead back to the file, so such a file
    is one error naming it with escapes, and the others run.
    """
    if not has_undecodable_bytes(name):
        return None
    return (f"{escape_undecodable(name)}: the file name is not valid UTF-8 (undecodable bytes shown as \\xNN); "
            "rename the file to process it")


def terminal_safe(text: object) -> str:
    """``text`` with control, bidirectional-override and undecodable characters escaped; other text unchanged."""
    out = []
    for char in str(text):
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") and char != " ":
            out.append(_escape_char(char))
        else:
            out.append(char)
    return "".join(out)
