"""Reading a large JSON file one member at a time, with the standard library only.

`json.loads` builds the whole document: for a VIA file of 100,000 images (22 MB) that is
about 166 MB of Python objects, held while the converter checks the file and again while it
writes the masks. `JSONStream` instead walks the file's outer objects and arrays itself and
hands each member's value to `json.JSONDecoder.raw_decode` (the C decoder, on a window of
the text), so only one value at a time is ever built and the window stays about
`CHUNK_CHARS` long, whatever the file's size.

It reads what `json.loads` reads (UTF-8 with or without a byte-order mark; any JSON); on
anything else it raises `StreamError`, and callers then let `json.loads` produce its usual
message (`records.read_json`), so a broken file is reported the same way however it is read.
Unlike a `dict`, it reports a key given twice in one object twice (`json.loads` keeps the
last value silently).
"""

from __future__ import annotations

import codecs
import json
import re
from json.decoder import scanstring

CHUNK_CHARS = 1 << 20
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER_TAIL = re.compile(r"[0-9.eE+-]*")


class StreamError(ValueError):
    """The text is not JSON (or not UTF-8) at the given character offset."""


class JSONStream:
    """A cursor over the JSON text of a binary file handle.

    The caller walks containers with `members()` / `items()` (each yields when the next
    member's value is due, which the caller must then take with `value()`, `members()` or
    `items()`), reads whole values with `value()`, and calls `end()` after the top-level
    value."""

    def __init__(self, handle, chunk_chars: int | None = None):
        self._handle, self._chunk = handle, chunk_chars or CHUNK_CHARS
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._text, self._pos, self._eof = "", 0, False
        self._consumed = 0          # characters dropped from the front of the window

    # -- the window ---------------------------------------------------------------------------
    def _more(self, at_least: int = 0) -> bool:
        """Append at least one chunk (more if `at_least` characters are wanted) to the window,
        dropping what was consumed; False at the end of the file."""
        if self._eof:
            return False
        self._consumed += self._pos
        parts, size = [self._text[self._pos:]], 0
        while size <= at_least:
            data = self._handle.read(self._chunk)
            try:
                text = self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                raise StreamError(f"not UTF-8 text ({exc})") from None
            parts.append(text)
            size += len(text)
            if not data:
                self._eof = True
                break
        self._text, self._pos = "".join(parts), 0
        return True

    def _error(self, what: str) -> StreamError:
        return StreamError(f"{what} at character {self._consumed + self._pos}")

    def peek(self) -> str:
        """The next character that is not white space ('' at the end of the file)."""
        while True:
            self._pos = _SPACE.match(self._text, self._pos).end()
            if self._pos < len(self._text):
                return self._text[self._pos]
            if not self._more():
                return ""

    def _expect(self, char: str) -> None:
        if self.peek() != char:
            raise self._error(f"expected {char!r}")
        self._pos += 1

    # -- values -------------------------------------------------------------------------------
    def value(self):
        """The next whole value, parsed by the C decoder."""
        want = 0
        while True:
            self.peek()
            try:
                value, end = _DECODER.raw_decode(self._text, self._pos)
            except json.JSONDecodeError:
                end = None
            except RecursionError:
                raise self._error("too deeply nested") from None
            # a number followed by nothing but number characters up to the window's end may
            # go on beyond it ("3.25" of "3.25e-7")
            if end is not None and (self._eof or not _NUMBER_TAIL.fullmatch(self._text, end)):
                self._pos = end
                return value
            want = max(2 * want, len(self._text) - self._pos)   # a long value: double the window
            if not self._more(want):
                raise self._error("not valid JSON")

    def _key(self) -> str:
        if self.peek() != '"':
            raise self._error("expected a string key")
        while True:
            try:
                key, end = scanstring(self._text, self._pos + 1)
            except json.JSONDecodeError:
                if self._more(len(self._text)):
                    continue
                raise self._error("unterminated string") from None
            self._pos = end
            return key

    def members(self):
        """Walk an object: yields each key; the caller takes its value before the next."""
        self._expect("{")
        if self.peek() == "}":
            self._pos += 1
            return
        while True:
            key = self._key()
            self._expect(":")
            yield key
            if not self._another("}"):
                return

    def items(self):
        """Walk an array: yields each index; the caller takes its value before the next."""
        self._expect("[")
        if self.peek() == "]":
            self._pos += 1
            return
        index = 0
        while True:
            yield index
            index += 1
            if not self._another("]"):
                return

    def _another(self, close: str) -> bool:
        """After a member: True at a ',' (another follows), False at `close`."""
        char = self.peek()
        self._pos += 1
        if char == close:
            return False
        if char != ",":
            raise self._error(f"expected ',' or '{close}'")
        return True

    def end(self) -> None:
        """Nothing but white space may follow the top-level value."""
        if self.peek() != "":
            raise self._error("extra data after the JSON value")
