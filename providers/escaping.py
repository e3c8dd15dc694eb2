"""How names and other outside text are shown to people: escaped.

Another user chooses the names of the files root backs up and what a hook
prints: a newline in a name must not forge a line of `diff`, an escape
sequence must not reach root's terminal. A name that is not plain printable
text is shown as the manifests write it (manifest.py): a backslash and its
JSON string, bytes that are not UTF-8 as their surrogate escapes (`\\udcff`
for the byte 0xff), so `os.fsencode(json.loads(shown[1:]))` gives back the
bytes, as rsync's `\\#ooo` does. Free text (hook output, messages) gets each
character that is not printable escaped the same way, in place.
"""

from __future__ import annotations

import json


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
