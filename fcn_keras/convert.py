"""Converting VIA annotations into class-index masks (the "folder" format's `masks/`).

For every image of one or more VIA JSON files this writes ``<output-dir>/<image stem>.png``, an
index PNG (pixel = class index, 0 = background) whose palette holds the class colours, plus
``classes.json`` and one split list ``<json stem>.txt`` (one image stem a line) per JSON file.
Nothing is written unless every file checks out; then every write is atomic and files whose
bytes would not change are left alone, so a re-run is idempotent.

Class indices (background is always 0; a region named ``background`` paints 0):

- with ``classes`` (``a,b,c``): ``a`` = 1, ``b`` = 2, ``c`` = 3 (a leading ``background`` entry is
  taken as index 0; a `ClassInfo` is used as it is, index 0 first); an integer name that is not
  a class name is the index itself (the book's ``"1"``, ``"2"`` with ``water,soda``); any other
  name is an error;
- without it, from the names used in all the given JSON files together (so a train and a test
  file converted in one call agree): if every name is an integer (``"1"``, ``"2"``, as in the
  book's drinks dataset) the index is that integer; otherwise the names sorted (case-sensitive
  code-point order) get 1..K.

The pixel convention and the overlap order are those of `fcn_keras.rasterize`.
"""

from __future__ import annotations

import collections
import difflib
import io
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError
from fcn_keras.io_utils import MASK_PNG_COMPRESSION, atomic_write_bytes, check_image
from fcn_keras.rasterize import AREA_SHAPES, DRAW_ORDERS, degenerate_reason, rasterize
from fcn_keras.via import ViaImage, format_problems, parse_via, read_json

BACKGROUND = "background"
MAX_CLASS_INDEX = 254   # 255 is the ignore index
_INTEGER = re.compile(r"^[0-9]+$")


@dataclass
class ConversionResult:
    """What a conversion produced; `stems` maps each JSON file's stem to its images' stems."""

    output_dir: Path
    class_info: ClassInfo
    stems: dict[str, list[str]] = field(default_factory=dict)
    image_paths: dict[str, Path] = field(default_factory=dict)
    mask_paths: dict[str, Path] = field(default_factory=dict)
    skipped_missing: int = 0
    warnings: list[str] = field(default_factory=list)
    written: int = 0       # files (re)written; the others already had the same bytes


@dataclass
class _Job:
    """One image to convert: its entry, where it came from and its size."""

    image: ViaImage
    json_stem: str
    stem: str
    path: Path
    size: tuple[int, int] = (0, 0)
    exif_rotated: bool = False
    drawn: list = field(default_factory=list)   # the regions that will be painted


# ---------------------------------------------------------------------------------------------
# Class mapping

class ClassMap:
    """Class name -> index, and the `ClassInfo` written as classes.json.

    A name is looked up among the class names; an integer name that is not one of them is
    taken as the index itself when there is such a class (the book's ``"1"``, ``"2"`` with
    ``--classes water,soda``).
    """

    def __init__(self, info: ClassInfo):
        self.info = info
        self._index = {name: i for i, name in enumerate(info.names)}
        self._index.setdefault(BACKGROUND, 0)

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
    """`classes` as given to `convert_via`: None, ``"a,b,c"``, a list of names or a ClassInfo."""
    if classes is None or isinstance(classes, ClassInfo):
        return classes
    if isinstance(classes, str):
        classes = classes.split(",")
    names = [str(n).strip() for n in classes]
    if not names or any(not n for n in names):
        raise DataError(f"--classes: empty class name in {','.join(names)!r}")
    if names[0].casefold() != BACKGROUND:
        names = [BACKGROUND] + names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataError(f"--classes: class names given twice: {', '.join(duplicates)}")
    if len(names) - 1 > MAX_CLASS_INDEX:
        raise DataError(f"--classes: {len(names) - 1} classes; at most {MAX_CLASS_INDEX} fit "
                        "in a mask (255 is the ignore index)")
    return ClassInfo(names)


def class_map_from_names(names: set[str], problems: list[str]) -> ClassMap:
    """The documented default rule: integer names are their own index, else sorted names."""
    names = {n for n in names if n != BACKGROUND}
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


# ---------------------------------------------------------------------------------------------
# The job

def convert_via(json_paths, data_path, output_dir=None, classes=None, attribute=None,
                skip_missing=False, draw_order="area", save_filename=None, show=False,
                progress=False) -> ConversionResult:
    """Convert VIA JSON file(s) into index masks; one `DataError` lists every problem found.

    json_paths: one path or a list; a path not found as given is looked up in `data_path`.
    data_path: the folder holding the images (VIA file names are relative to it).
    output_dir: where masks, classes.json and the split lists go (default ``data_path/masks``).
    classes: ``"a,b,c"``, a list of names or a ClassInfo; None applies the default rule.
    attribute: the region-attribute key holding the class name (default: auto-detected).
    skip_missing: leave out images that are missing or unreadable instead of failing.
    draw_order: ``"area"`` (larger regions first) or ``"file"`` (the file's order).
    save_filename: also write the book's pickled ``{filename: one-hot HxWxC uint8}`` .npy
        (a relative path is taken inside `data_path`, where the book's scripts look).
    show: also write ``<output_dir>/show/<stem>.png`` (image | colour mask) for a visual check.
    """
    data_path = Path(data_path)
    if draw_order not in DRAW_ORDERS:
        raise DataError(f"draw order must be one of {', '.join(DRAW_ORDERS)}, got {draw_order!r}")
    if not _is_dir(data_path):
        raise DataError(f"{data_path}: data folder not found")
    paths = [json_paths] if isinstance(json_paths, (str, Path)) else list(json_paths)
    if not paths:
        raise DataError("no VIA JSON file given")
    if save_filename is not None and len(paths) > 1:
        raise DataError("--save-filename writes the book's .npy for one JSON file at a time; "
                        f"got {len(paths)} JSON files")
    output_dir = Path(output_dir) if output_dir is not None else data_path / "masks"
    given_info = parse_classes(classes)

    problems: list[str] = []
    jobs = _read_jobs(paths, data_path, attribute, problems)
    class_map = _class_map(jobs, given_info, problems)
    skipped = _read_sizes(jobs, skip_missing, problems)
    if problems:
        raise DataError(format_problems(problems))

    result = ConversionResult(output_dir, class_map.info, skipped_missing=len(skipped))
    result.stems = {stem: [] for stem in _json_stems(paths)}
    skipped_ids = {id(job) for job in skipped}
    jobs = [job for job in jobs if id(job) not in skipped_ids]
    npy_path = _inside(data_path, save_filename) if save_filename else None
    try:
        _write_outputs(jobs, class_map, result, draw_order, npy_path, show, progress)
    except OSError as exc:
        raise DataError(f"{output_dir}: cannot write the masks ({exc})") from None
    result.warnings = _warnings(jobs, skipped, result.warnings)
    return result


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _inside(data_path: Path, name) -> Path:
    path = Path(name)
    return path if path.is_absolute() else data_path / path


def _json_stems(paths) -> list[str]:
    return [Path(p).stem for p in paths]


def _resolve_json(path, data_path: Path) -> Path | None:
    for candidate in (Path(path), data_path / path):
        try:
            if candidate.is_file():
                return candidate
        except (OSError, ValueError):
            pass
    return None


def _read_jobs(paths, data_path: Path, attribute, problems: list[str]) -> list[_Job]:
    """Parse every JSON file; one job per image entry, with clashing names reported."""
    jobs, seen_json, by_name, by_stem = [], {}, {}, {}
    for given in paths:
        json_stem = Path(given).stem
        if json_stem in seen_json:
            problems.append(f"{given}: two JSON files named '{json_stem}' would both write "
                            f"'{json_stem}.txt'")
            continue
        seen_json[json_stem] = given
        path = _resolve_json(given, data_path)
        if path is None:
            problems.append(f"{given}: VIA JSON file not found (looked for {Path(given)} and "
                            f"{data_path / given})")
            continue
        try:
            data = read_json(path)
        except DataError as exc:
            problems.append(str(exc))
            continue
        images, found = parse_via(data, path.name, attribute)
        problems.extend(found)
        for image in images:
            name = PurePosixPath(image.filename.replace("\\", "/"))
            where = f"{path.name}: {image.filename}"
            if str(name) in by_name:
                problems.append(f"{where}: listed twice (also in {by_name[str(name)]}); "
                                "one mask per image")
                continue
            if name.stem in by_stem:
                problems.append(f"{where}: its mask {name.stem}.png would overwrite the one of "
                                f"{by_stem[name.stem]}")
                continue
            by_name[str(name)] = path.name
            by_stem[name.stem] = image.filename
            jobs.append(_Job(image, json_stem, name.stem, data_path / name,
                             drawn=_drawn(image)))
    return jobs


def _drawn(image: ViaImage):
    """The regions that will be painted: area shapes that enclose something."""
    return [r for r in image.regions if r.shape in AREA_SHAPES and not degenerate_reason(r)]


def _class_map(jobs: list[_Job], given: ClassInfo | None, problems: list[str]) -> ClassMap:
    names, missing = set(), []
    for job in jobs:
        for region in job.drawn:
            where = f"{job.image.source}: {job.image.filename}: region {region.index}"
            if region.class_problem:
                problems.append(f"{where}: {region.class_problem}")
            elif region.class_name is None:
                keys = ", ".join(repr(k) for k in region.attributes) or "none"
                missing.append(f"{where}: no class name (region attributes: {keys}); name the "
                               "attribute with --attribute KEY")
            else:
                names.add(region.class_name)
    problems.extend(missing)
    class_map = ClassMap(given) if given is not None else class_map_from_names(names, problems)
    for job in jobs:
        for region in job.drawn:
            if region.class_name is not None and class_map.index(region.class_name) is None:
                problems.append(f"{job.image.source}: {job.image.filename}: region "
                                f"{region.index}: {class_map.unknown_message(region.class_name)}")
    return class_map


def exif_rotated(path: Path) -> bool:
    """Whether a photo carries an EXIF orientation other than 'upright' (header only)."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(0x0112, 1) not in (0, 1)
    except Exception:   # noqa: BLE001 - a best-effort hint; a broken EXIF block is no error
        return False


def _read_sizes(jobs: list[_Job], skip_missing: bool, problems: list[str]) -> list[_Job]:
    """Image sizes from the file headers (after `check_image`'s cheap truncation checks, so a
    broken image fails here, before anything is written); returns the jobs skipped for a
    missing or unreadable image."""
    skipped = []
    for job in jobs:
        try:
            width, height = check_image(job.path, pipeline=False)
            if width <= 0 or height <= 0:
                raise DataError(f"{job.path}: image has no pixels ({width}x{height})")
        except DataError as exc:
            if skip_missing:
                skipped.append(job)
            else:
                problems.append(f"{job.image.source}: {job.image.filename}: {exc}")
            continue
        except (OSError, ValueError) as exc:   # odd names the OS refuses to look up
            if skip_missing:
                skipped.append(job)
            else:
                problems.append(f"{job.image.source}: {job.image.filename}: cannot open the "
                                f"image ({exc})")
            continue
        job.size = (height, width)
        job.exif_rotated = exif_rotated(job.path)
    return skipped


# ---------------------------------------------------------------------------------------------
# Writing

def _write_outputs(jobs, class_map: ClassMap, result: ConversionResult, draw_order,
                   npy_path: Path | None, show: bool, progress: bool) -> None:
    from tqdm import tqdm

    output_dir = result.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    palette = class_map.info.palette()
    book = {} if npy_path is not None else None
    outside = []

    def render(job):
        """Rasterize and PNG-encode one image's mask (numpy and zlib release the GIL)."""
        regions = job.drawn
        indices = [class_map.index(r.class_name) for r in regions]
        hidden: list[int] = []
        mask = rasterize(regions, indices, *job.size, draw_order=draw_order, outside=hidden)
        return mask, encode_index_png(mask, palette), hidden

    rendered = _ordered_map(render, jobs)
    for job, (mask, png, hidden) in tqdm(zip(jobs, rendered), total=len(jobs), desc="masks",
                                         unit="image", disable=not progress, leave=False):
        regions = job.drawn
        outside.extend(f"{job.image.filename} region {regions[i].index}" for i in hidden)
        mask_path = output_dir / f"{job.stem}.png"
        result.written += write_if_changed(mask_path, png)
        result.stems[job.json_stem].append(job.stem)
        result.image_paths[job.stem] = job.path
        result.mask_paths[job.stem] = mask_path
        if book is not None:
            book[job.image.filename] = one_hot(mask, class_map.info.n_classes)
        if show:
            result.written += write_if_changed(output_dir / "show" / f"{job.stem}.png",
                                               side_by_side(job.path, mask, palette))
    for json_stem, stems in result.stems.items():
        text = "".join(f"{s}\n" for s in stems)
        result.written += write_if_changed(output_dir / f"{json_stem}.txt",
                                           text.encode("utf-8", "surrogateescape"))
    classes_json = output_dir / "classes.json"
    if _read_bytes(classes_json) != _classes_bytes(class_map.info):
        class_map.info.save(classes_json)
        result.written += 1
    if book is not None:
        buffer = io.BytesIO()
        np.save(buffer, book, allow_pickle=True)
        result.written += write_if_changed(npy_path, buffer.getvalue())
    if outside:
        result.warnings.append(_counted(outside, "region(s) lie entirely outside their image"))


def _ordered_map(fn, items, workers: int | None = None, ahead: int = 4):
    """`map(fn, items)` on a thread pool, in order, at most `ahead` results per thread pending
    (memory stays flat however many images there are). Writing stays in the caller's thread."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1 or len(items) < 2:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= workers * ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _classes_bytes(info: ClassInfo) -> bytes:
    return (json.dumps(info.to_dict(), indent=2) + "\n").encode("utf-8")


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write `data` unless the file already holds exactly these bytes."""
    if _read_bytes(path) == data:
        return False
    atomic_write_bytes(path, data)
    return True


def encode_index_png(mask: np.ndarray, palette: list[int]) -> bytes:
    """The bytes `io_utils.write_index_png` would write: a palette ('P') PNG of the indices."""
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]),
                            np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=MASK_PNG_COMPRESSION)
    return buffer.getvalue()


def one_hot(mask: np.ndarray, n_classes: int) -> np.ndarray:
    """The book's label layout: HxWxC uint8, 1 in the channel of the pixel's class."""
    return (mask[..., None] == np.arange(n_classes, dtype=np.uint8)).astype(np.uint8)


def side_by_side(image_path: Path, mask: np.ndarray, palette: list[int]) -> bytes:
    """PNG bytes of the image and its colour mask next to each other."""
    colour = Image.frombytes("P", (mask.shape[1], mask.shape[0]), mask.tobytes())
    colour.putpalette(palette)
    try:
        with Image.open(image_path) as picture:
            picture = picture.convert("RGB")
    except (OSError, ValueError) as exc:
        raise DataError(f"{image_path}: cannot decode the image for --show ({exc})") from None
    if picture.size != colour.size:
        picture = picture.resize(colour.size)
    canvas = Image.new("RGB", (2 * colour.width, colour.height))
    canvas.paste(picture, (0, 0))
    canvas.paste(colour.convert("RGB"), (colour.width, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# Warnings

def _counted(places: list[str], what: str, shown: int = 5) -> str:
    listed = "; ".join(places[:shown]) + (f"; ... ({len(places) - shown} more)"
                                         if len(places) > shown else "")
    return f"{len(places)} {what}: {listed}"


def _warnings(jobs: list[_Job], skipped: list[_Job], extra: list[str]) -> list[str]:
    not_areas, degenerate = [], []
    for job in jobs:
        for region in job.image.regions:
            where = f"{job.image.filename} region {region.index}"
            if region.shape not in AREA_SHAPES:
                not_areas.append(f"{where} ({region.shape})")
            else:
                reason = degenerate_reason(region)
                if reason:
                    degenerate.append(f"{where} ({reason})")
    warnings = []
    if skipped:
        warnings.append(_counted([j.image.filename for j in skipped],
                                 "image(s) missing or unreadable, skipped (--skip-missing)"))
    if not_areas:
        warnings.append(_counted(not_areas, "polyline/point region(s) skipped: they enclose "
                                            "no area"))
    if degenerate:
        warnings.append(_counted(degenerate, "degenerate region(s) skipped"))
    rotated = [job.image.filename for job in jobs if job.exif_rotated]
    if rotated:
        warnings.append(_counted(rotated, "image(s) have an EXIF rotation: browsers (and VIA) "
                                          "show them turned while masks follow the stored "
                                          "pixels; rotate the files before annotating"))
    return warnings + extra
