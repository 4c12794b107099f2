"""The converter: annotations of any supported format -> class-index masks.

For every image of the given annotation files (or folders) this writes
``<output-dir>/<image stem>.png``, an index PNG (pixel = class index, 0 = background, 255 =
ignore) whose palette holds the class colours, plus ``classes.json`` and one split list
``<name>.txt`` (one image stem a line) per input (named after the file, or the split the format
gives: a CVAT subset, a mask folder's ImageSets list). Images that a LabelMe file embeds
(``imageData``) while the image file is missing are written to ``<output-dir>/images/``.

Guarantees, whatever the format: every problem of every input (bad files, shapes, classes,
paths leaving the data folder, missing or unreadable images, sizes that disagree with the
image headers) is reported together in one `DataError`, and nothing is written unless all of
them check out; then every write is atomic and files whose bytes would not change are left
alone, so a re-run is idempotent.

Class numbering: `fcn_keras.annotations.classes`. Pixels and overlaps: `rasterize` (larger
regions are painted first so a small object on a larger one stays visible; ``draw_order="file"``
keeps the file's order).
"""

from __future__ import annotations

import collections
import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcn_keras.annotations import read_source
from fcn_keras.annotations.classes import (
    ClassMap,
    class_map_from_declared,
    class_map_from_names,
    parse_classes,
)
from fcn_keras.annotations.rasterize import AREA_SHAPES, DRAW_ORDERS, degenerate_reason, rasterize
from fcn_keras.annotations.records import AnnotatedImage, Source, format_problems
from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError
from fcn_keras.io_utils import (
    FULL_CHECK_LIMIT,
    atomic_write_bytes,
    check_image,
    encode_index_png,
    quick_header,
    spread,
)


@dataclass
class ConversionResult:
    """What a conversion produced; `stems` maps each split list's name to its images' stems."""

    output_dir: Path
    class_info: ClassInfo
    stems: dict[str, list[str]] = field(default_factory=dict)
    image_paths: dict[str, Path] = field(default_factory=dict)
    mask_paths: dict[str, Path] = field(default_factory=dict)
    skipped_missing: int = 0
    warnings: list[str] = field(default_factory=list)
    written: int = 0       # files (re)written; the others already had the same bytes
    formats: dict[str, str] = field(default_factory=dict)   # input -> format read


@dataclass(slots=True)
class _Job:
    """One image to convert: its record, its split list, where its file is and its size."""

    image: AnnotatedImage
    list_name: str
    stem: str
    path: Path
    size: tuple[int, int] = (0, 0)
    exif_rotated: bool = False
    embedded: bool = False                      # the image comes from the annotation file
    drawn: list = field(default_factory=list)   # the regions that will be painted


# ---------------------------------------------------------------------------------------------
# The job

def convert_annotations(inputs, data_path, output_dir=None, classes=None, attribute=None,
                        skip_missing=False, draw_order="area", save_filename=None, show=False,
                        progress=False, fmt="auto") -> ConversionResult:
    """Convert annotation file(s) or folder(s) into index masks; one `DataError` lists every
    problem found.

    inputs: one path or a list; a path not found as given is looked up in `data_path`.
    data_path: the folder holding the images (image names in the files are relative to it;
        LabelMe's are relative to the JSON file, which must then lie inside it).
    output_dir: where masks, classes.json and the split lists go (default ``data_path/masks``).
    classes: ``"a,b,c"``, a list of names or a ClassInfo; None applies the default rule.
    attribute: the VIA region-attribute key holding the class name (default: auto-detected).
    skip_missing: leave out images that are missing or unreadable instead of failing.
    draw_order: ``"area"`` (larger regions first) or ``"file"`` (the file's order).
    save_filename: also write the book's pickled ``{filename: one-hot HxWxC uint8}`` .npy
        (a relative path is taken inside `data_path`, where the book's scripts look).
    show: also write ``<output_dir>/show/<stem>.png`` (image | colour mask) for a visual check.
    fmt: ``auto`` (from each file) or one of `fcn_keras.annotations.FORMATS`.
    """
    data_path = Path(data_path)
    if draw_order not in DRAW_ORDERS:
        raise DataError(f"draw order must be one of {', '.join(DRAW_ORDERS)}, got {draw_order!r}")
    if not _is_dir(data_path):
        raise DataError(f"{data_path}: data folder not found")
    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not paths:
        raise DataError("no annotation file given")
    if save_filename is not None and len(paths) > 1:
        raise DataError("--save-filename writes the book's .npy for one annotation file at a "
                        f"time; got {len(paths)} files")
    output_dir = Path(output_dir) if output_dir is not None else data_path / "masks"
    given_info = parse_classes(classes)

    problems: list[str] = []
    reading = _Reading(data_path, attribute, fmt)
    jobs = reading.jobs(paths, problems)
    class_map = _class_map(jobs, given_info, reading.declared, problems)
    skipped = _read_sizes(jobs, skip_missing, problems)
    if problems:
        raise DataError(format_problems(problems))

    result = ConversionResult(output_dir, class_map.info, skipped_missing=len(skipped),
                              formats=reading.formats, warnings=reading.warnings)
    result.stems = {name: [] for name in reading.list_names}
    skipped_ids = {id(job) for job in skipped}
    jobs = [job for job in jobs if id(job) not in skipped_ids]
    npy_path = _inside(data_path, save_filename) if save_filename else None
    try:
        _write_outputs(jobs, class_map, result, draw_order, npy_path, show, progress)
    except OSError as exc:
        raise DataError(f"{output_dir}: cannot write the masks ({exc})") from None
    result.warnings = _warnings(jobs, skipped, result.warnings)
    return result


def convert_via(json_paths, data_path, output_dir=None, **options) -> ConversionResult:
    """`convert_annotations` for VIA JSON files (the book's converter)."""
    return convert_annotations(json_paths, data_path, output_dir, fmt="via", **options)


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _inside(data_path: Path, name) -> Path:
    path = Path(name)
    return path if path.is_absolute() else data_path / path


def _resolve_input(path, data_path: Path) -> Path | None:
    for candidate in (Path(path), data_path / path):
        try:
            if candidate.exists():
                return candidate
        except (OSError, ValueError):
            pass
    return None


class _Reading:
    """Reads every input into jobs (one per image), with clashing names reported, and keeps
    what the files declare: formats, class lists, warnings, split list names."""

    def __init__(self, data_path: Path, attribute, fmt: str):
        self.data_path, self.attribute, self.fmt = data_path, attribute, fmt
        self.formats: dict[str, str] = {}
        self.declared: list[tuple[str, tuple | None]] = []
        self.warnings: list[str] = []
        self.list_names: list[str] = []
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}

    def jobs(self, paths, problems: list[str]) -> list[_Job]:
        jobs, seen = [], {}
        for given in paths:
            stem = Path(given).stem or Path(given).name
            if stem in seen:
                problems.append(f"{given}: two inputs named '{stem}' would both write "
                                f"'{stem}.txt'")
                continue
            seen[stem] = given
            jobs += self._read_one(given, stem, problems)
        return jobs

    def _read_one(self, given, stem: str, problems: list[str]) -> list[_Job]:
        path = _resolve_input(given, self.data_path)
        if path is None:
            problems.append(f"{given}: annotation file not found (looked for {Path(given)} and "
                            f"{self.data_path / given})")
            return []
        try:
            fmt, found = read_source(Source(path, self.data_path, self.attribute), self.fmt)
        except DataError as exc:
            problems.append(str(exc))
            return []
        self.formats[str(given)] = fmt
        problems.extend(found.problems)
        self.declared += found.declared
        self.warnings += found.warnings
        if not found.images or any(image.split is None for image in found.images):
            self._list(stem)
        return [job for job in (self._job(image, stem, problems) for image in found.images)
                if job is not None]

    def _list(self, name: str) -> None:
        if name not in self.list_names:
            self.list_names.append(name)

    def _job(self, image: AnnotatedImage, stem: str, problems: list[str]) -> _Job | None:
        name = PurePosixPath(image.filename.replace("\\", "/"))
        where = f"{image.source}: {image.filename}"
        if str(name) in self.by_name:
            problems.append(f"{where}: listed twice (also in {self.by_name[str(name)]}); "
                            "one mask per image")
            return None
        if name.stem in self.by_stem:
            problems.append(f"{where}: its mask {name.stem}.png would overwrite the one of "
                            f"{self.by_stem[name.stem]}")
            return None
        self.by_name[str(name)] = image.source
        self.by_stem[name.stem] = image.filename
        list_name = image.split or stem
        self._list(list_name)
        return _Job(image, list_name, name.stem, self.data_path / name, drawn=_drawn(image))


def _drawn(image: AnnotatedImage):
    """The regions that will be painted: area shapes that enclose something."""
    return [r for r in image.regions if r.shape in AREA_SHAPES and not degenerate_reason(r)]


def _class_map(jobs: list[_Job], given: ClassInfo | None, declared, problems: list[str]
               ) -> ClassMap:
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
    if given is not None:
        class_map = ClassMap(given)
    elif declared:
        class_map = class_map_from_declared(declared, problems)
    else:
        class_map = class_map_from_names(names, problems)
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
    broken image fails here, before anything is written), checked against the sizes the
    annotation file gives; returns the jobs skipped for a missing or unreadable image.

    Of more than `FULL_CHECK_LIMIT` images, that many (evenly spread) get `check_image`; the
    others only need their size, which `quick_header` reads from a PNG's or JPEG's first bytes
    (anything else, or anything unusual, still goes to `check_image`). A truncated image
    among them still converts, since its mask needs only the size; the dataset's checks and
    the input pipeline refuse it, naming it, before it is trained on."""
    skipped = []
    fully = {id(job) for job in spread(jobs, FULL_CHECK_LIMIT)}
    for job in jobs:
        where = f"{job.image.source}: {job.image.filename}"
        try:
            width, height = _image_size(job, full=id(job) in fully)
        except DataError as exc:
            if skip_missing:
                skipped.append(job)
            else:
                problems.append(f"{where}: {exc}")
            continue
        except (OSError, ValueError) as exc:   # odd names the OS refuses to look up
            if skip_missing:
                skipped.append(job)
            else:
                problems.append(f"{where}: cannot open the image ({exc})")
            continue
        job.size = (height, width)
        problems.extend(f"{where}: {p}" for p in _size_problems(job))
    return skipped


def _image_size(job: _Job, full: bool = True) -> tuple[int, int]:
    """(width, height) of the image file, or of the image the annotation file embeds when the
    file is missing (LabelMe's imageData); sets `job.embedded` and `job.exif_rotated`. `full`:
    `check_image`'s checks, else the header only where `quick_header` can read it."""
    if job.image.image_data is not None and not job.path.exists():
        job.embedded = True
        try:
            with Image.open(io.BytesIO(job.image.image_data)) as image:
                width, height = image.size
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"image file missing and its embedded imageData is not a "
                            f"readable image ({exc})") from None
    else:
        header = None if full else quick_header(job.path)
        if header is None:
            width, height = check_image(job.path, pipeline=False)
            job.exif_rotated = exif_rotated(job.path)
        else:
            (width, height), orientation = header[1:]
            job.exif_rotated = orientation not in (0, 1)
    if width <= 0 or height <= 0:
        raise DataError(f"{job.path}: image has no pixels ({width}x{height})")
    return width, height


def _size_problems(job: _Job) -> list[str]:
    """The annotation file's image size and RLE sizes must be the image's: else the shapes were
    drawn on another (resized, rotated) version of it."""
    height, width = job.size
    found = []
    if job.image.size is not None and tuple(job.image.size) != (height, width):
        h, w = job.image.size
        turned = " (EXIF-rotated?)" if (h, w) == (width, height) else ""
        found.append(f"the annotations are for a {w}x{h} image, but the image file is "
                     f"{width}x{height} (width x height){turned}")
    for region in job.drawn:
        if region.shape == "rle" and tuple(region.params["size"]) != (height, width):
            h, w = region.params["size"]
            found.append(f"region {region.index}: RLE of size {w}x{h} on a {width}x{height} "
                         "image (width x height)")
    return found


# ---------------------------------------------------------------------------------------------
# Writing

def _write_outputs(jobs, class_map: ClassMap, result: ConversionResult, draw_order,
                   npy_path: Path | None, show: bool, progress: bool) -> None:
    from tqdm import tqdm

    output_dir = result.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    _write_embedded_images(jobs, output_dir / "images", result)
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
        result.stems[job.list_name].append(job.stem)
        result.image_paths[job.stem] = job.path
        result.mask_paths[job.stem] = mask_path
        if book is not None:
            book[job.image.filename] = one_hot(mask, class_map.info.n_classes)
        if show:
            result.written += write_if_changed(output_dir / "show" / f"{job.stem}.png",
                                               side_by_side(job.path, mask, palette))
    for list_name, stems in result.stems.items():
        text = "".join(f"{s}\n" for s in stems)
        result.written += write_if_changed(output_dir / f"{list_name}.txt",
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


def _write_embedded_images(jobs, folder: Path, result: ConversionResult) -> None:
    """Images only the annotation file holds (LabelMe imageData) become files the dataset can
    use; the job then points at the written file."""
    for job in jobs:
        if job.embedded:
            job.path = folder / job.path.name
            result.written += write_if_changed(job.path, job.image.image_data)


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
                not_areas.append(f"{where} ({region.shape.replace('_', ' ')})")
            else:
                reason = degenerate_reason(region)
                if reason:
                    degenerate.append(f"{where} ({reason})")
    warnings = []
    if skipped:
        warnings.append(_counted([j.image.filename for j in skipped],
                                 "image(s) missing or unreadable, skipped (--skip-missing)"))
    if not_areas:
        warnings.append(_counted(not_areas, "line/point region(s) skipped: they enclose "
                                            "no area"))
    if degenerate:
        warnings.append(_counted(degenerate, "degenerate region(s) skipped"))
    rotated = [job.image.filename for job in jobs if job.exif_rotated]
    if rotated:
        warnings.append(_counted(rotated, "image(s) have an EXIF rotation: browsers (and VIA) "
                                          "show them turned while masks follow the stored "
                                          "pixels; rotate the files before annotating"))
    return warnings + extra
