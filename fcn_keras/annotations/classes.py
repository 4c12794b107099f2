"""Class names -> mask indices, the one rule every annotation format shares.

Background is index 0 and the ignore index (255) marks pixels no loss or metric looks at. In
order of precedence:

1. ``--classes a,b,c`` (or a classes file): ``a`` = 1, ``b`` = 2, ``c`` = 3 (a leading
   ``background`` entry is index 0; a `ClassInfo` is used as it is); an integer name that is not
   a class name is the index itself (the book's ``"1"``, ``"2"`` with ``water,soda``); any other
   name is an error.
2. The list the annotation file itself declares, in its own order: COCO's categories sorted by
   ``id`` (ids with gaps such as 1, 3, 7 become 1, 2, 3), CVAT's ``<labels>`` in project order, a
   mask folder's ``labelmap.txt`` (background first). Several files are merged in the order given.
3. Otherwise (VIA, LabelMe) the names used in all the given files together: if every name is an
   integer (``"1"``, ``"2"``, as in the book) the index is that integer, else the names sorted
   (case-sensitive code-point order) get 1..K.

Names that mean "no class": ``background`` and LabelMe's ``_background_`` paint 0; LabelMe's
``__ignore__`` paints the ignore index.

Class files (`read_class_file`): a ``classes.json`` (`ClassInfo`), a CVAT / datumaro
``labelmap.txt`` (``name:r,g,b:parts:actions`` lines) or a plain text list, one name a line
(labelme2voc's ``labels.txt``, ``class_names.txt``).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from fcn_keras.classes import IGNORE_INDEX, ClassInfo, parse_class_names, voc_colormap
from fcn_keras.errors import DataError

BACKGROUND = "background"
BACKGROUND_NAMES = ("background", "_background_")
IGNORE_NAMES = ("__ignore__",)
MAX_CLASS_INDEX = IGNORE_INDEX - 1
_INTEGER = re.compile(r"^[0-9]+$")


class ClassMap:
    """Class name -> index, and the `ClassInfo` written as classes.json.

    A name is looked up among the class names; an integer name that is not one of them is
    taken as the index itself when there is such a class (the book's ``"1"``, ``"2"`` with
    ``--classes water,soda``).
    """

    def __init__(self, info: ClassInfo):
        self.info = info
        self._index = {name: i for i, name in enumerate(info.names)}
        for name in BACKGROUND_NAMES:
            self._index.setdefault(name, 0)
        for name in IGNORE_NAMES:
            self._index.setdefault(name, info.ignore_index)

    def index(self, name: str) -> int | None:
        index = self._index.get(name)
        number = integer_name(name)
        if index is None and number is not None and number < self.info.n_classes:
            index = number
        return index

    def unknown_message(self, name: str) -> str:
        known = [n for n in self.info.names if n != BACKGROUND]
        hint = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        folded = [n for n in known if n.casefold() == name.casefold()]
        hint = folded or hint
        text = (f"unknown class '{name}' (classes: {', '.join(known) or 'none'}; or an "
                f"integer index below {self.info.n_classes})")
        return text + (f"; did you mean '{hint[0]}'?" if hint else "")


def integer_name(name: str) -> int | None:
    """The value of an all-ASCII-digit class name, else None. Values past 10**9 are capped
    (only whether they fit in a mask matters, and int() refuses more than 4300 digits)."""
    if not _INTEGER.fullmatch(name):
        return None
    digits = name.lstrip("0")
    return int(digits or "0") if len(digits) <= 9 else 10 ** 9


def parse_classes(classes) -> ClassInfo | None:
    """`classes` as given to the converter: None, ``"a,b,c"``, a list of names (background
    first, added when missing) or a ClassInfo (used as it is)."""
    if classes is None or isinstance(classes, ClassInfo):
        return classes
    return _info_from_names(parse_class_names(classes), "--classes")


def _info_from_names(names: list[str], origin: str,
                     colors: list[tuple[int, int, int]] | None = None) -> ClassInfo:
    """Background first (added when missing), no duplicates, at most 254 classes."""
    if names[0].casefold() not in BACKGROUND_NAMES:
        names = [BACKGROUND] + names
        colors = [(0, 0, 0)] + colors if colors else colors
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"{origin}: class names given twice: {', '.join(duplicates)}")
    if len(names) - 1 > MAX_CLASS_INDEX:
        raise DataError(f"{origin}: {len(names) - 1} classes; at most {MAX_CLASS_INDEX} fit "
                        "in a mask (255 is the ignore index)")
    return ClassInfo(names, colors or [])


def class_map_from_names(names: set[str], problems: list[str]) -> ClassMap:
    """The rule for files without a class list: integer names are their own index, else
    sorted names."""
    names = {n for n in names if n not in BACKGROUND_NAMES + IGNORE_NAMES}
    if names and all(integer_name(n) is not None for n in names):
        top_name = max(names, key=integer_name)
        top = integer_name(top_name)
        if top > MAX_CLASS_INDEX:
            shown = top_name if len(top_name) <= 20 else top_name[:17] + "..."
            problems.append(f"class '{shown}' is above {MAX_CLASS_INDEX}: integer class names "
                            f"are mask values, and 255 is the ignore index")
            top = MAX_CLASS_INDEX
        return ClassMap(ClassInfo([BACKGROUND] + [str(i) for i in range(1, top + 1)]))
    ordered = sorted(names)
    if len(ordered) > MAX_CLASS_INDEX:
        problems.append(f"{len(ordered)} class names; at most {MAX_CLASS_INDEX} fit in a mask")
        ordered = ordered[:MAX_CLASS_INDEX]
    return ClassMap(ClassInfo([BACKGROUND] + ordered))


def class_map_from_declared(declared: list[tuple[str, tuple | None]], problems: list[str]
                            ) -> ClassMap:
    """The files' own class list (name, colour or None) in order; a region whose class is not
    declared is then reported as unknown (a typo, or a label deleted from the project)."""
    names, colors = [], []
    for name, color in declared:
        if name in IGNORE_NAMES or name in names:
            continue
        if name in BACKGROUND_NAMES:
            if not names:
                names.append(BACKGROUND)
                colors.append(color)
            continue
        names.append(name)
        colors.append(color)
    if not names or names[0] != BACKGROUND:
        names.insert(0, BACKGROUND)
        colors.insert(0, (0, 0, 0))
    if len(names) - 1 > MAX_CLASS_INDEX:
        problems.append(f"{len(names) - 1} classes; at most {MAX_CLASS_INDEX} fit in a mask")
        names, colors = names[:MAX_CLASS_INDEX + 1], colors[:MAX_CLASS_INDEX + 1]
    return ClassMap(ClassInfo(names, _fill_colors(colors)))


def _fill_colors(colors: list) -> list[tuple[int, int, int]]:
    """Declared colours where there are some, VOC's colour of the index elsewhere."""
    defaults = voc_colormap(len(colors))
    return [tuple(c) if c is not None else defaults[i] for i, c in enumerate(colors)]


# ---------------------------------------------------------------------------------------------
# Class files

CLASS_FILES = ("labelmap.txt", "class_names.txt", "classes.json")


def read_class_file(path: str | Path) -> ClassInfo:
    """A classes.json, a labelmap.txt (names and colours) or a plain list of names."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return ClassInfo.load(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: classes file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read the classes file ({exc})") from None
    entries = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if any(":" in entry for entry in entries):
        names, colors = zip(*[_labelmap_line(entry, path, number)
                              for number, entry in enumerate(entries, 1)]) if entries else ((), ())
        return _info_from_names(list(names), str(path), list(colors))
    names = [name for name in entries if name not in IGNORE_NAMES]
    if not names:
        raise DataError(f"{path}: no class names in the file")
    return _info_from_names(names, str(path))


def _labelmap_line(entry: str, path: Path, number: int) -> tuple[str, tuple[int, int, int]]:
    """``name:r,g,b:parts:actions`` (CVAT / datumaro's labelmap.txt)."""
    fields = entry.split(":")
    try:
        color = tuple(int(v) for v in fields[1].split(","))
        if len(color) != 3 or not all(0 <= v <= 255 for v in color):
            raise ValueError
    except (IndexError, ValueError):
        raise DataError(f"{path}:{number}: expected 'name:r,g,b:parts:actions', got "
                        f"'{entry}'") from None
    name = fields[0].strip()
    if not name:
        raise DataError(f"{path}:{number}: empty class name")
    return name, color


def find_class_file(*folders: Path) -> Path | None:
    """The first labelmap.txt, class_names.txt or classes.json in `folders`."""
    for folder in folders:
        for name in CLASS_FILES:
            if (folder / name).is_file():
                return folder / name
    return None

