"""The records every annotation format is read into, and the checks they all share.

A reader (one module per format) turns its file into `AnnotatedImage` records: an image file
name relative to the data folder and its `Region`s, each a shape with parameters in the file's
pixel coordinates and a class name. Everything after reading (class numbering, rasterising,
overlap order, writing) works on these records only, so a new format is one reader module.

Readers never raise on bad input: they collect one line per problem (`Bad` carries a problem
up from a nested helper) and the converter raises them together as one `DataError`.
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from fcn_keras.errors import DataError

# Coordinates beyond this are certainly wrong (no image is a billion pixels wide), and keeping
# them bounded keeps every product in the rasteriser finite.
MAX_COORDINATE = 1e9


@dataclass(slots=True)
class Region:
    """One annotated region. `params` holds floats (lists of floats for point lists)."""

    shape: str
    params: dict
    class_name: str | None
    index: int
    attributes: dict = field(default_factory=dict)
    class_problem: str | None = None


@dataclass(slots=True)
class AnnotatedImage:
    """One image of an annotation file: its file name relative to the data folder, its regions,
    and what the file says about it (`size` as (height, width), checked against the image's
    header; `image_data`, the image's bytes when the file embeds them, as LabelMe may; `split`,
    the split list it belongs to when the format says, else the annotation file's stem)."""

    filename: str
    regions: list[Region]
    file_attributes: dict = field(default_factory=dict)
    source: str = ""
    size: tuple[int, int] | None = None
    image_data: bytes | None = None
    split: str | None = None


class Bad(Exception):
    """An input problem found while parsing one item; becomes a line of the final DataError."""


def format_problems(problems: list[str], what: str = "the annotations") -> str:
    """One message listing every problem, one a line."""
    return "\n".join([f"{len(problems)} problem(s) in {what}:"] + [f"  - {p}" for p in problems])


# ---------------------------------------------------------------------------------------------
# Small typed readers: each raises Bad with a short explanation.

def number(value, what: str, limit: float | None = MAX_COORDINATE) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise Bad(f"{what} must be a number, got {describe(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise Bad(f"{what} must be a number, got {describe(value)}") from None
    if not math.isfinite(number):
        raise Bad(f"{what} is not a finite number ({value!r})")
    if limit is not None and abs(number) > limit:
        raise Bad(f"{what} = {number:g} is out of range (more than {limit:g} pixels)")
    return number


def numbers(value, what: str) -> list[float]:
    if not isinstance(value, list):
        raise Bad(f"{what} must be a list of numbers, got {describe(value)}")
    try:   # the common case in one pass; the element's name is only built for the message
        numbers = [float(v) for v in value if type(v) in (int, float)]
    except OverflowError:
        numbers = []
    if len(numbers) == len(value) and all(math.isfinite(n) and abs(n) <= MAX_COORDINATE
                                          for n in numbers):
        return numbers
    return [number(v, f"{what}[{i}]") for i, v in enumerate(value)]


def describe(value) -> str:
    text = json.dumps(value) if jsonable(value) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def jsonable(value) -> bool:
    try:
        json.dumps(value)
        return True
    except (TypeError, ValueError, RecursionError):
        return False


def numeric_order(digits: str) -> tuple[int, str]:
    """Sort key of an ASCII digit string by its value, without int() (which refuses strings of
    more than 4300 digits)."""
    digits = digits.lstrip("0")
    return len(digits), digits


def get_key(mapping: dict, key: str, what: str):
    if key not in mapping:
        raise Bad(f"{what} has no '{key}'")
    return mapping[key]


# ---------------------------------------------------------------------------------------------
# File names

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A name without separators, drive colons, NULs or line breaks: a file right in the data folder.
_PLAIN_NAME = re.compile(r"[^/\\:\x00\n\r]+")


def filename_problem(filename: str) -> str | None:
    """Why a VIA file name cannot name a file inside the data folder, or None if it can."""
    if _PLAIN_NAME.fullmatch(filename) and filename.strip() and filename != "..":
        return None   # the common case, without building three path objects
    if not filename.strip():
        return "empty file name"
    if any(ch in filename for ch in "\x00\n\r"):
        return f"file name {filename!r} contains a NUL or line-break character"
    if _URL.match(filename):
        return (f"'{filename}' is a URL; download the image into the data folder and use its "
                "file name")
    posix = PurePosixPath(filename.replace("\\", "/"))
    if posix.is_absolute() or PureWindowsPath(filename).drive or PureWindowsPath(filename).root:
        return f"'{filename}' is an absolute path; file names must be relative to the data folder"
    if ".." in posix.parts:
        return f"'{filename}' leaves the data folder ('..'); file names must stay inside it"
    return None


# ---------------------------------------------------------------------------------------------
# Files

def read_json(json_path: str | Path):
    """The parsed JSON of a file; DataError when it is missing or not valid JSON."""
    path = Path(json_path)
    try:
        with open(path, "rb") as handle:
            return json.loads(handle.read().decode("utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: annotation file not found") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc})") from None
    except (ValueError, RecursionError) as exc:   # JSONDecodeError is a ValueError
        raise DataError(f"{path}: not valid JSON ({exc})") from None


@dataclass
class Annotations:
    """What a reader returns for one input: its images, every problem found (never raised),
    the classes the file declares in its own order as (name, colour or None), and warnings."""

    images: list[AnnotatedImage] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    declared: list[tuple[str, tuple | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


SPLIT_NAMES = {"train": "train", "training": "train", "val": "val", "valid": "val",
               "validation": "val", "test": "test", "testing": "test"}


def split_name(name: str) -> str:
    """A tool's subset name as a split list name: Train/Validation/Test -> train/val/test."""
    folded = name.strip().casefold()
    return SPLIT_NAMES.get(folded, folded)


def inside_name(base: PurePosixPath, name: str) -> tuple[str | None, str | None]:
    """(`name` taken relative to the folder `base` inside the data folder, as a clean relative
    path; or None and why it cannot be used). Backslashes count as separators."""
    problem = filename_problem(name)
    if problem and "leaves the data folder" not in problem:
        return None, problem
    joined = posixpath.normpath(posixpath.join(str(base), name.replace("\\", "/")))
    if joined == ".." or joined.startswith("../") or posixpath.isabs(joined):
        return None, (f"'{name}' leaves the data folder (relative to {base}/); image paths "
                      "must stay inside it")
    return joined, None


def relative_folder(folder: Path, data_path: Path) -> PurePosixPath | None:
    """`folder` relative to `data_path` (None when it is not inside it)."""
    try:
        relative = Path(os.path.abspath(folder)).relative_to(os.path.abspath(data_path))
    except ValueError:
        return None
    return PurePosixPath(relative.as_posix())


@dataclass
class Source:
    """One input of the converter: an annotation file (or folder), the data folder that image
    names are relative to, and the region attribute that holds the class (VIA)."""

    path: Path
    data_path: Path
    attribute: str | None = None
