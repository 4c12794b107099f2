"""Large VIA 1.x / 2.x files read one image entry at a time (ijson), never as one document.

`json.loads` of a VIA file builds Python objects several times the file's size (166 MB for the
22 MB file of 100,000 entries in docs/bad-input.md) and holds them all while the entries are
parsed. A 1.x file or 2.x export is a JSON object of image entries, and a 2.x project keeps the
same object under `_via_img_metadata`: those entries are streamed instead, each built, parsed
into its record and dropped before the next (`StreamedVia.entries`). The file is read twice:
a first pass over the parser's events only (flat memory) checks that the whole text is JSON
and finds the top-level keys, so a broken file is refused before any entry is used, and so
that a file of another format (COCO, LabelMe, VIA 3) is recognised and loaded as before.

Used for files of at least `STREAM_BYTES` when ijson is installed (a dependency; without it,
every file is loaded whole as before). Two differences from `json.loads`, both in the safe
direction: `NaN` / `Infinity` (not JSON, accepted by Python) are refused as invalid JSON, and
an entry key given twice is read twice (the converter then reports the image as listed twice,
where `json.loads` would silently keep the last one).
"""

from __future__ import annotations

import codecs
import contextlib
from dataclasses import dataclass
from pathlib import Path

from fcn_keras.errors import DataError

STREAM_BYTES = 16 * 2 ** 20   # files this large (bytes) are streamed
METADATA_KEY = "_via_img_metadata"
# top-level keys of the formats that are loaded whole (see `annotations.detect_format`)
_WHOLE = ({"images", "annotations"}, {"shapes", "imagePath"}, {"shapes", "imageData"},
          {"metadata", "file", "view"}, {"metadata", "file", "project"})


def ijson_module():
    """The ijson module, or None when it is not installed."""
    try:
        import ijson
    except ImportError:
        return None
    return ijson


@dataclass
class StreamedVia:
    """A VIA 1.x/2.x file whose image entries are read one at a time.

    path: the file; prefix: where the entries are ('' at the top, or `_via_img_metadata`);
    metadata_type: the JSON type found under `_via_img_metadata` in a 2.x project."""

    path: Path
    prefix: str = ""
    metadata_type: str = "map"

    def entries(self):
        """(key, entry) for every image entry, in the file's order; floats as Python floats."""
        ijson = ijson_module()
        with _opened(self.path) as handle:
            try:
                yield from ijson.kvitems(handle, self.prefix, use_float=True)
            except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
                raise DataError(f"{self.path}: not valid JSON ({_first_line(exc)})") from None


def streamable(path: Path, fmt: str) -> StreamedVia | None:
    """A `StreamedVia` for a large VIA 1.x/2.x file when ijson is there; None when the file
    is to be loaded whole (small, another format, or no ijson). Raises DataError when the file
    is not valid JSON."""
    ijson = ijson_module()
    if ijson is None or fmt not in ("auto", "via"):
        return None
    try:
        if path.stat().st_size < STREAM_BYTES:
            return None
    except OSError:
        return None
    kinds = top_level_kinds(path)
    if kinds is None:                    # not an object at the top: the loader says what it is
        return None
    if fmt == "auto" and any(keys <= kinds.keys() for keys in _WHOLE):
        return None
    if METADATA_KEY in kinds:
        return StreamedVia(path, METADATA_KEY, kinds[METADATA_KEY])
    if "metadata" in kinds and "file" in kinds and ("view" in kinds or "project" in kinds):
        return None                      # VIA 3: its parts refer to each other, load it whole
    return StreamedVia(path)


def top_level_kinds(path: Path) -> dict[str, str] | None:
    """{key: JSON type of its value} of the top-level object, from one pass over the parser's
    events (nothing is built); None when the top level is not an object. DataError when the
    text is not JSON."""
    ijson = ijson_module()
    kinds: dict[str, str] = {}
    pending = None   # the top-level key whose value starts with the next event
    with _opened(path) as handle:
        try:
            events = ijson.parse(handle, use_float=True)
            first = next(events, None)
            if first is None or first[1] != "start_map":
                for _ in events:         # still check that the rest is JSON
                    pass
                return None
            for prefix, event, value in events:
                if pending is not None:
                    kinds.setdefault(pending, _kind(event))
                    pending = None
                elif event == "map_key" and prefix == "":
                    pending = value
        except (ijson.JSONError, UnicodeDecodeError, ValueError) as exc:
            raise DataError(f"{path}: not valid JSON ({_first_line(exc)})") from None
    return kinds


def _kind(event: str) -> str:
    return {"start_map": "map", "start_array": "array"}.get(event, event)


@contextlib.contextmanager
def _opened(path: Path):
    """The file in binary, past a UTF-8 byte-order mark (as `read_json` decodes utf-8-sig)."""
    try:
        handle = open(path, "rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc})") from None
    with handle:
        if handle.read(3) != codecs.BOM_UTF8:
            handle.seek(0)
        yield handle


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
