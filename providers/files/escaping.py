"""How names and other outside text are shown: escaped for people,
lossless in JSON.

Another user chooses the names of the files root backs up and what a hook
prints: a newline in a name must not forge a line of `diff`, an escape
sequence must not reach root's terminal. A name that is not plain printable
text is shown as the manifests write it (manifest.py): a backslash and its
JSON string, bytes that are not UTF-8 as their surrogate escapes (`\\udcff`
for the byte 0xff), so `os.fsencode(json.loads(shown[1:]))` gives back the
bytes, as rsync's `\\#ooo` does. Free text (hook output, messages) gets each
character that is not printable escaped the same way, in place.

Names reach Python through os.fsdecode, which keeps bytes that are not UTF-8
as lone surrogates; JSON carries them as `\\udcff`, which jq and most
decoders turn into U+FFFD, losing the name. So a JSON string that is not
valid UTF-8 is printed with U+FFFD in their place beside a `KEY_base64`
field holding its bytes.
"""

from __future__ import annotations

import json
from typing import Any

# What a JSON string field that is not UTF-8 gets beside it: its bytes.
BASE64_SUFFIX = "_base64"


def escape_name(name: str) -> str:
    """Given a name or relative path as os.fsdecode gives it, return it as
    hardsnap writes and prints it: unchanged when it is printable text
    without a tab or a backslash, else a backslash and its JSON string."""
    if name.isprintable() and "\\" not in name:
        return name
    return "\\" + json.dumps(name, ensure_ascii=True)


def escape_text(text: str) -> str:
    """Given a line of free text (hook output, a message), return it with
    every character that is not printable but a tab (control characters,
    newlines included, and undecodable bytes) escaped as in a JSON string."""
    if text.isprintable():
        return text
    return "".join(
        character
        if character.isprintable() or character == "\t"
        else json.dumps(character, ensure_ascii=True)[1:-1]
        for character in text
    )


def error_text(error: OSError) -> str:
    """What an OSError says, with the file it names escaped: `Permission
    denied (NAME)`."""
    if not error.filename:
        return str(error.strerror)
    return f"{error.strerror} ({escape_name(str(error.filename))})"


def lossless_json(document: Any) -> Any:
    """Given a JSON-able document, return it with every string that is not
    valid UTF-8 shown with U+FFFD for its undecodable bytes and, where it is
    the value of a key (or an item of a list that is), a sibling
    `KEY_base64` holding its bytes (for a list, one item per item, null
    where the item is UTF-8)."""
    if isinstance(document, dict):
        result: dict[str, Any] = {}
        for key, value in document.items():
            key = _replaced(key) if isinstance(key, str) else key
            result[key] = lossless_json(value)
            raw = _raw_bytes(value)
            if raw is not None:
                result[key + BASE64_SUFFIX] = raw
        return result
    if isinstance(document, list | tuple):
        return [lossless_json(item) for item in document]
    if isinstance(document, str):
        return _replaced(document)
    return document


def _raw_bytes(value: Any) -> Any:
    """The base64 of a string that is not UTF-8 (for a list of strings, a
    list of them, null for each that is), or None when none is needed."""
    if isinstance(value, str):
        return None if is_utf8(value) else _base64(value)
    if isinstance(value, list | tuple) and any(
        isinstance(item, str) and not is_utf8(item) for item in value
    ):
        return [
            _base64(item) if isinstance(item, str) and not is_utf8(item) else None for item in value
        ]
    return None


def is_utf8(text: str) -> bool:
    """Whether `text` encodes to UTF-8: no lone surrogates (a name's bytes that are not UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _bytes_of(text: str) -> bytes:
    """The bytes os.fsdecode read `text` from (a surrogate it cannot have
    made, kept as UTF-8 would write it)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def _base64(text: str) -> str:
    import base64

    return base64.b64encode(_bytes_of(text)).decode("ascii")


def _replaced(text: str) -> str:
    if is_utf8(text):
        return text
    return _bytes_of(text).decode("utf-8", "replace")


def format_bytes(count: int) -> str:
    """Return a byte count for humans, 1024-based: '512 B', '1.5 GiB'."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"
