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
from array import array
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcn_keras.annotations import read_source, via
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
    EvenSample,
    atomic_write_bytes,
    check_image,
    encode_index_png,
    quick_header,
)


@dataclass
class ConversionResult:
    """What a conversion produced; `stems` maps each split list's name to its images' stems,
    `image_paths` / `mask_paths` each image's stem to its image and mask (mappings that make
    a `Path` when asked, so a conversion of 100,000 images does not hold 200,000 of them)."""

    output_dir: Path
    class_info: ClassInfo
    stems: dict[str, list[str]] = field(default_factory=dict)
    image_paths: Mapping[str, Path] = field(default_factory=dict)
    mask_paths: Mapping[str, Path] = field(default_factory=dict)
    skipped_missing: int = 0
    warnings: list[str] = field(default_factory=list)
    written: int = 0       # files (re)written; the others already had the same bytes
    formats: dict[str, str] = field(default_factory=dict)   # input -> format read


class PathsByStem(Mapping):
    """stem -> `Path`, made on demand: ``folder / names[stem]``, or ``folder / pattern.format(
    stem)`` when a pattern is given (the masks: one name per stem, nothing stored); `paths`
    holds the few whole paths that are elsewhere (images a LabelMe file embeds)."""

    def __init__(self, folder: Path, names: dict[str, str], pattern: str | None = None,
                 paths: dict[str, Path] | None = None):
        self.folder, self.names, self.pattern = folder, names, pattern
        self.paths = {} if paths is None else paths

    def __getitem__(self, stem: str) -> Path:
        name = self.names[stem]
        if self.pattern:
            return self.folder / self.pattern.format(stem)
        return self.paths.get(stem) or self.folder / name

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


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
    ordinal: int = 0                            # its place among all jobs


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

    Memory: a VIA file of `via.STREAM_BYTES` or more is read one entry at a time, twice (to
    check everything, then to write): checking holds 25 bytes an image (its names' hashes,
    its size and flags), writing also its stem and name for the result, never its
    annotations (docs/bad-input.md, "Long input lists").
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

    reading = _Reading(data_path, attribute, fmt)
    jobs = reading.jobs(paths)
    problems, checked = _check_names_once(reading, jobs, skip_missing)
    class_map = _class_map(jobs, checked.names, given_info, reading.declared, problems)
    if problems:
        raise DataError(format_problems(problems.all()))

    result = ConversionResult(output_dir, class_map.info, skipped_missing=checked.skipped.count,
                              formats=reading.formats, warnings=reading.warnings)
    result.stems = {name: [] for name in reading.list_names}
    npy_path = _inside(data_path, save_filename) if save_filename else None
    kept = (job for job in jobs if job.ordinal not in checked.skipped_ordinals)
    try:
        tallies = _write_outputs(kept, jobs.count - checked.skipped.count, data_path, class_map,
                                 result, draw_order, npy_path, show, progress)
    except OSError as exc:
        raise DataError(f"{output_dir}: cannot write the masks ({exc})") from None
    outside = tallies.outside.message("region(s) lie entirely outside their image")
    result.warnings = (_warnings(checked.skipped, tallies) + result.warnings
                       + ([outside] if tallies.outside else []))
    return result


def convert_via(json_paths, data_path, output_dir=None, **options) -> ConversionResult:
    """`convert_annotations` for VIA JSON files (the book's converter)."""
    return convert_annotations(json_paths, data_path, output_dir, fmt="via", **options)


def _check_names_once(reading: _Reading, jobs: _Jobs, skip_missing: bool):
    """The checking pass, with image names compared by their hashes (`_Reading.job`): when
    no hash repeats, no two names are equal, which is the usual case, and the pass held 16
    bytes an image for it. Otherwise (two images named alike, or two names with one hash)
    the pass is made again comparing the names themselves, so that the clashing images are
    left out of every check, as the messages say."""
    for exact in (False, True):
        problems = _Problems()
        reading.start(problems.reading, exact)
        jobs.restart()
        checked = _check(jobs, skip_missing, problems)
        if exact or not reading.names_may_clash():
            break
    reading.start(problems.reading, exact=False)   # frees the names
    return problems, checked


class _Problems:
    """Every problem found, by kind, listed in this order: reading the files (and clashing
    names), regions' classes, regions without a class, numbering the classes, classes not
    among them, images and their sizes."""

    def __init__(self):
        self.reading, self.classes, self.missing = [], [], []
        self.numbering, self.unknown, self.images = [], [], []

    def all(self) -> list[str]:
        return (self.reading + self.classes + self.missing + self.numbering + self.unknown
                + self.images)

    def __bool__(self) -> bool:
        return any(self.all())


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
    """Reads every input into a `_Part` and, on the jobs' first pass, checks their names
    (clashes are reported); keeps what the files declare: formats, class lists, warnings,
    split list names. Problems go to `problems` in the inputs' order."""

    def __init__(self, data_path: Path, attribute, fmt: str):
        self.data_path, self.attribute, self.fmt = data_path, attribute, fmt
        self.problems: list[str] = []
        self.formats: dict[str, str] = {}
        self.declared: list[tuple[str, tuple | None]] = []
        self.warnings: list[str] = []
        self.list_names: list[str] = []
        self.start(self.problems, exact=False)

    def start(self, problems: list[str], exact: bool) -> None:
        """Begin a first pass over the jobs: its problems go to `problems`; names are compared
        by their hashes (`exact` False: 16 bytes an image, nothing left out) or themselves
        (clashing images are reported and left out)."""
        self.problems, self.exact = problems, exact
        self.by_name: dict[str, str] = {}
        self.by_stem: dict[str, str] = {}
        self.name_hashes, self.stem_hashes = array("q"), array("q")

    def names_may_clash(self) -> bool:
        """Whether a name or mask stem hash repeats (after a hashed first pass)."""
        return any(len(np.unique(np.frombuffer(hashes, np.int64))) < len(hashes)
                   for hashes in (self.name_hashes, self.stem_hashes) if len(hashes))

    def jobs(self, paths) -> _Jobs:
        jobs, seen = _Jobs(), {}
        for given in paths:
            stem = Path(given).stem or Path(given).name
            if stem in seen:
                jobs.parts.append(_Part(self, stem, problems=[
                    f"{given}: two inputs named '{stem}' would both write '{stem}.txt'"]))
                continue
            seen[stem] = given
            jobs.parts.append(self._read_one(given, stem))
        return jobs

    def _read_one(self, given, stem: str) -> _Part:
        path = _resolve_input(given, self.data_path)
        if path is None:
            return _Part(self, stem, problems=[
                f"{given}: annotation file not found (looked for {Path(given)} and "
                f"{self.data_path / given})"])
        if self.fmt in ("auto", "via") and path.suffix.lower() == ".json" and \
                via.streamable(path):
            self.formats[str(given)] = "via"
            self._list(stem)
            return _Part(self, stem, path=path)
        try:
            fmt, found = read_source(Source(path, self.data_path, self.attribute), self.fmt)
        except DataError as exc:
            return _Part(self, stem, problems=[str(exc)])
        self.formats[str(given)] = fmt
        self.declared += found.declared
        self.warnings += found.warnings
        if not found.images or any(image.split is None for image in found.images):
            self._list(stem)
        for image in found.images:
            self._list(image.split or stem)
        return _Part(self, stem, images=found.images, problems=found.problems)

    def _list(self, name: str) -> None:
        if name not in self.list_names:
            self.list_names.append(name)

    def job(self, image: AnnotatedImage, stem: str, problems: list[str]) -> _Job | None:
        """The job of an image read for the first time; None (and a line in `problems`) when
        its name or its mask's clashes with an image read before."""
        name = PurePosixPath(image.filename.replace("\\", "/"))
        if not self.exact:
            self.name_hashes.append(hash(str(name)))
            self.stem_hashes.append(hash(name.stem))
            return self.again(image, stem, name)
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
        return self.again(image, stem, name)

    def again(self, image: AnnotatedImage, stem: str, name: PurePosixPath | None = None
              ) -> _Job:
        """The job of an image whose name was checked on the first pass."""
        name = name or PurePosixPath(image.filename.replace("\\", "/"))
        return _Job(image, image.split or stem, name.stem, self.data_path / name,
                    drawn=_drawn(image))



class _Part:
    """One input's images: read whole (`images`) or, for a large VIA file (`path`), read again
    from the file on every pass. The first pass turns the images into jobs, checking their
    names (`_Reading.job`) and reporting the reader's problems; later passes make the same
    jobs (a streamed file: from its entries again, leaving out those the first pass dropped)."""

    def __init__(self, reading: _Reading, stem: str, images=(), problems=(), path=None):
        self.reading, self.stem, self.path = reading, stem, path
        self.images, self.problems = list(images), list(problems)
        self.stamp = None
        self.restart()

    def restart(self) -> None:
        """The next pass is a first pass again."""
        self.jobs: list[_Job] | None = None    # whole: the jobs, once made
        self.dropped: set[int] | None = None   # streamed: entries that make no job

    def __iter__(self):
        return self._streamed() if self.path is not None else self._whole()

    def _whole(self):
        if self.jobs is None:
            self.reading.problems.extend(self.problems)
            jobs = (self.reading.job(image, self.stem, self.reading.problems)
                    for image in self.images)
            self.jobs = [job for job in jobs if job is not None]
        yield from self.jobs

    def _streamed(self):
        first = self.dropped is None
        if first and self.stamp is None:
            self.stamp = _stamp(self.path)
        if first:
            self.dropped = set()
        if _stamp(self.path) != self.stamp:
            raise DataError(f"{self.path}: the annotation file changed while it was being "
                            "converted; run the conversion again")
        entries = via.stream_via(self.path, self.path.name, self.reading.attribute)
        index, clashes = -1, []   # reported after the reader's problems, as for a whole file
        try:
            for item in entries:
                if isinstance(item, str):           # a problem (reported on the first pass)
                    if first:
                        self.reading.problems.append(item)
                    continue
                index += 1
                if not first:
                    if index not in self.dropped:
                        yield self.reading.again(item, self.stem)
                    continue
                job = self.reading.job(item, self.stem, clashes)
                if job is None:
                    self.dropped.add(index)
                else:
                    yield job
        except DataError as exc:                  # not valid JSON further on
            if not first:
                raise
            self.reading.problems.append(str(exc))
        self.reading.problems.extend(clashes)


def _stamp(path: Path) -> tuple[int, int] | None:
    """What tells that a file changed between two passes (None: it is gone)."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


class _Jobs:
    """Every input's jobs, in order, numbered the same way on every pass (`_Job.ordinal`).
    What the checking pass learns of a job (its size, EXIF rotation, whether the annotation
    file embeds the image) is kept here in arrays, a few bytes a job, and given back on later
    passes, where a streamed input's jobs are made afresh."""

    def __init__(self):
        self.parts: list[_Part] = []
        self.restart()

    def restart(self) -> None:
        """Forget what was learnt: the next pass is a first pass again."""
        self.count = 0
        self._heights, self._widths, self._flags = array("i"), array("i"), bytearray()
        for part in self.parts:
            part.restart()

    def __iter__(self):
        ordinal = 0
        for part in self.parts:
            for job in part:
                job.ordinal = ordinal
                if ordinal < len(self._flags):
                    job.size = (self._heights[ordinal], self._widths[ordinal])
                    job.exif_rotated = bool(self._flags[ordinal] & 1)
                    job.embedded = bool(self._flags[ordinal] & 2)
                yield job
                ordinal += 1
        self.count = ordinal

    def remember(self, job: _Job) -> None:
        """Keep what was learnt of `job` (on the checking pass, jobs come in order)."""
        if job.ordinal == len(self._flags):
            self._heights.append(0)
            self._widths.append(0)
            self._flags.append(0)
        self._heights[job.ordinal], self._widths[job.ordinal] = job.size
        self._flags[job.ordinal] = job.exif_rotated | 2 * job.embedded


def _drawn(image: AnnotatedImage):
    """The regions that will be painted: area shapes that enclose something."""
    return [r for r in image.regions if r.shape in AREA_SHAPES and not degenerate_reason(r)]


@dataclass
class _Checked:
    """What the checking pass found beside problems: the class names used, the images
    skipped (`--skip-missing`)."""

    names: set = field(default_factory=set)
    skipped: _Tally = field(default_factory=lambda: _Tally())
    skipped_ordinals: set = field(default_factory=set)

    def skip(self, job: _Job) -> None:
        self.skipped.add(job.image.filename)
        self.skipped_ordinals.add(job.ordinal)


def _check(jobs: _Jobs, skip_missing: bool, problems: _Problems) -> _Checked:
    """One pass over every job (the first: names are checked as the jobs are made): each
    region's class, each image's size from its header against what the annotations say.

    Of more than `FULL_CHECK_LIMIT` images, that many (evenly spread, `EvenSample`) also get
    `check_image`'s checks after the pass; the others only need their size, which
    `quick_header` reads from a PNG's or JPEG's first bytes (anything else, or anything
    unusual, goes to `check_image` at once). A truncated image among them still converts,
    since its mask needs only the size; the dataset's checks and the input pipeline refuse
    it, naming it, before it is trained on."""
    checked, sample = _Checked(), EvenSample(FULL_CHECK_LIMIT)
    for job in jobs:
        _check_classes(job, checked.names, problems)
        if _read_size(job, skip_missing, checked, problems.images, full=False):
            sample.offer(_slim(job))
        jobs.remember(job)
    for job in sample.chosen():
        if job.ordinal not in checked.skipped_ordinals:
            _read_size(job, skip_missing, checked, problems.images, full=True)
    return checked


def _slim(job: _Job) -> _Job:
    """`job` without its regions: all that checking its image needs (the sample of jobs kept
    for `check_image` holds no annotations)."""
    image = job.image
    return _Job(AnnotatedImage(image.filename, [], source=image.source,
                               image_data=image.image_data),
                job.list_name, job.stem, job.path, job.size, ordinal=job.ordinal)


def _check_classes(job: _Job, names: set, problems: _Problems) -> None:
    for region in job.drawn:
        where = f"{job.image.source}: {job.image.filename}: region {region.index}"
        if region.class_problem:
            problems.classes.append(f"{where}: {region.class_problem}")
        elif region.class_name is None:
            keys = ", ".join(repr(k) for k in region.attributes) or "none"
            problems.missing.append(f"{where}: no class name (region attributes: {keys}); "
                                    "name the attribute with --attribute KEY")
        else:
            names.add(region.class_name)


def _class_map(jobs: _Jobs, names: set, given: ClassInfo | None, declared,
               problems: _Problems) -> ClassMap:
    """The class numbering (given, declared by the files, or from the names used); a class
    not in it is reported at every region using it (found by one more pass, on this error
    only)."""
    if given is not None:
        class_map = ClassMap(given)
    elif declared:
        class_map = class_map_from_declared(declared, problems.numbering)
    else:
        class_map = class_map_from_names(names, problems.numbering)
    if all(class_map.index(name) is not None for name in names):
        return class_map
    for job in jobs:
        for region in job.drawn:
            if region.class_name is not None and class_map.index(region.class_name) is None:
                problems.unknown.append(
                    f"{job.image.source}: {job.image.filename}: region {region.index}: "
                    f"{class_map.unknown_message(region.class_name)}")
    return class_map


def exif_rotated(path: Path) -> bool:
    """Whether a photo carries an EXIF orientation other than 'upright' (header only)."""
    try:
        with Image.open(path) as image:
            return image.getexif().get(0x0112, 1) not in (0, 1)
    except Exception:   # noqa: BLE001 - a best-effort hint; a broken EXIF block is no error
        return False


def _read_size(job: _Job, skip_missing: bool, checked: _Checked, problems: list[str],
               full: bool) -> bool:
    """Set `job.size` from the image's header (`full`: after `check_image`'s checks, so a
    broken image fails here, before anything is written) and report sizes that disagree with
    the annotations'; a missing or unreadable image is a problem or, with `skip_missing`,
    skipped. True when only the header was read (`quick_header`)."""
    where = f"{job.image.source}: {job.image.filename}"
    try:
        width, height, quick = _image_size(job, full)
    except DataError as exc:
        if skip_missing:
            checked.skip(job)
        else:
            problems.append(f"{where}: {exc}")
        return False
    except (OSError, ValueError) as exc:   # odd names the OS refuses to look up
        if skip_missing:
            checked.skip(job)
        else:
            problems.append(f"{where}: cannot open the image ({exc})")
        return False
    if not full:
        job.size = (height, width)
        problems.extend(f"{where}: {p}" for p in _size_problems(job))
    return quick


def _image_size(job: _Job, full: bool = True) -> tuple[int, int, bool]:
    """(width, height, whether only the header was read) of the image file, or of the image
    the annotation file embeds when the file is missing (LabelMe's imageData); sets
    `job.embedded` and `job.exif_rotated`. `full`: `check_image`'s checks, else the header
    only where `quick_header` can read it."""
    header = None
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
    return width, height, header is not None


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

@dataclass
class _Tallies:
    """What the writing pass warns about: regions that are no areas, degenerate ones, regions
    entirely outside their image, EXIF-rotated photos."""

    not_areas: _Tally = field(default_factory=lambda: _Tally())
    degenerate: _Tally = field(default_factory=lambda: _Tally())
    outside: _Tally = field(default_factory=lambda: _Tally())
    rotated: _Tally = field(default_factory=lambda: _Tally())

    def count(self, job: _Job) -> None:
        for region in job.image.regions:
            where = f"{job.image.filename} region {region.index}"
            if region.shape not in AREA_SHAPES:
                self.not_areas.add(f"{where} ({region.shape.replace('_', ' ')})")
            else:
                reason = degenerate_reason(region)
                if reason:
                    self.degenerate.add(f"{where} ({reason})")
        if job.exif_rotated:
            self.rotated.add(job.image.filename)


def _write_outputs(jobs, total: int, data_path: Path, class_map: ClassMap,
                   result: ConversionResult, draw_order, npy_path: Path | None, show: bool,
                   progress: bool) -> _Tallies:
    """The writing pass: every job's mask (and image the annotation file embeds, `--show`
    picture, the book's .npy), then the split lists and classes.json."""
    from tqdm import tqdm

    output_dir = result.output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    palette = class_map.info.palette()
    book = {} if npy_path is not None else None
    tallies, names, embedded = _Tallies(), {}, {}   # stem -> image name in the data folder
    result.image_paths = PathsByStem(data_path, names, paths=embedded)
    result.mask_paths = PathsByStem(output_dir, names, "{}.png")

    def render(job):
        """Rasterize and PNG-encode one image's mask (numpy and zlib release the GIL)."""
        regions = job.drawn
        indices = [class_map.index(r.class_name) for r in regions]
        hidden: list[int] = []
        mask = rasterize(regions, indices, *job.size, draw_order=draw_order, outside=hidden)
        return job, mask, encode_index_png(mask, palette), hidden

    for job, mask, png, hidden in tqdm(_ordered_map(render, jobs), total=total, desc="masks",
                                       unit="image", disable=not progress, leave=False):
        if job.embedded:   # an image only the annotation file holds becomes a file
            job.path = output_dir / "images" / job.path.name
            result.written += write_if_changed(job.path, job.image.image_data)
        tallies.count(job)
        for i in hidden:
            tallies.outside.add(f"{job.image.filename} region {job.drawn[i].index}")
        result.written += write_if_changed(output_dir / f"{job.stem}.png", png)
        result.stems[job.list_name].append(job.stem)
        names[job.stem] = job.image.filename.replace("\\", "/")
        if job.embedded:
            embedded[job.stem] = job.path
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
    return tallies


def _ordered_map(fn, items, workers: int | None = None, ahead: int = 4):
    """`map(fn, items)` on a thread pool, in order, at most `ahead` results per thread pending
    (memory stays flat however many images there are). Writing stays in the caller's thread."""
    workers = workers or min(8, os.cpu_count() or 1)
    if workers == 1:
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

class _Tally:
    """How many of something to warn about, and the first few places (however many)."""

    def __init__(self, shown: int = 5):
        self.count, self.places, self.shown = 0, [], shown

    def add(self, place: str) -> None:
        self.count += 1
        if len(self.places) < self.shown:
            self.places.append(place)

    def __bool__(self) -> bool:
        return self.count > 0

    def message(self, what: str) -> str:
        listed = "; ".join(self.places) + (f"; ... ({self.count - self.shown} more)"
                                           if self.count > self.shown else "")
        return f"{self.count} {what}: {listed}"


def _warnings(skipped: _Tally, tallies: _Tallies) -> list[str]:
    """The skipped images and region warnings (the readers' own and the outside regions'
    follow them in `ConversionResult.warnings`)."""
    found = [(skipped, "image(s) missing or unreadable, skipped (--skip-missing)"),
             (tallies.not_areas, "line/point region(s) skipped: they enclose no area"),
             (tallies.degenerate, "degenerate region(s) skipped"),
             (tallies.rotated, "image(s) have an EXIF rotation: browsers (and VIA) show them "
                               "turned while masks follow the stored pixels; rotate the files "
                               "before annotating")]
    return [tally.message(what) for tally, what in found if tally]
