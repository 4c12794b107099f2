"""How long validation takes on long input lists, and how much memory (docs/bad-input.md).

    python benchmarks/long_lists.py --entries 100000 --folder /tmp/long   # ~4 min here

Builds, once, in `--folder`: a `folder` dataset whose `train.txt` lists N stems (images and
masks are hard links to a few small files, so building takes seconds) and a VIA 2.x file with N
image entries of one polygon each, whose last entry names a missing image; then times
`load_dataset` (every image and mask checked) and `convert_via` (the whole file parsed and
checked; it stops with the one problem before writing a mask). Peak memory is the process's
maximum resident set size and, with `--trace`, Python's own peak (tracemalloc, which slows
Python about 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LINKS_PER_FILE = 50_000   # ext4 allows 65,000 hard links to one file


def linked(source: Path, target: Path, index: int) -> None:
    """Hard-link `target` to a copy of `source` shared by at most LINKS_PER_FILE names."""
    copy = source.with_name(f"{source.stem}{index // LINKS_PER_FILE}{source.suffix}")
    if not copy.exists():
        copy.write_bytes(source.read_bytes())
    os.link(copy, target)


def make_folder(root: Path, n: int) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(root / "src.png")
    Image.fromarray(rng.integers(0, 3, (24, 32)).astype(np.uint8), "L").save(root / "srcm.png")
    for i in range(n):
        linked(root / "src.png", root / "images" / f"i{i:06d}.png", i)
        linked(root / "srcm.png", root / "masks" / f"i{i:06d}.png", i)
    (root / "train.txt").write_text("".join(f"i{i:06d}\n" for i in range(n)))
    (root / "val.txt").write_text("i000000\n")
    (root / "classes.json").write_text(json.dumps({"names": ["a", "b", "c"]}))


def make_via(root: Path, n: int) -> None:
    root.mkdir(parents=True)
    image = np.random.default_rng(0).integers(0, 255, (24, 32, 3), dtype=np.uint8)
    Image.fromarray(image).save(root / "src.jpg")
    entries = {}
    for i in range(n):
        name = f"i{i:06d}.jpg"
        if i < n - 1:
            linked(root / "src.jpg", root / name, i)
        entries[f"{name}123"] = {
            "filename": name, "size": 123, "file_attributes": {},
            "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": [2, 20, 10],
                                              "all_points_y": [2, 4, 20]},
                         "region_attributes": {"name": "cat"}}]}
    (root / "v.json").write_text(json.dumps(entries))


def measure(label: str, run, trace: bool) -> None:
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    outcome = run()
    seconds = time.perf_counter() - start
    peak = f", Python peak {tracemalloc.get_traced_memory()[1] / 2 ** 20:.0f} MB" if trace else ""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{label}: {seconds:.1f} s, max RSS {rss:.0f} MB{peak}; {outcome}", flush=True)
    if trace:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--trace", action="store_true", help="also Python's peak (slower)")
    args = parser.parse_args()
    from fcn_keras.convert import convert_via
    from fcn_keras.datasets import load_dataset
    from fcn_keras.errors import DataError

    folder, via = args.folder / f"folder-{args.entries}", args.folder / f"via-{args.entries}"
    if not folder.exists():
        make_folder(folder, args.entries)
    if not via.exists():
        make_via(via, args.entries)
    print(f"max RSS after imports {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}"
          " MB", flush=True)
    measure(f"folder dataset, {args.entries} list entries",
            lambda: f"{len(load_dataset(folder, 'folder').split('train'))} samples", args.trace)

    def convert():
        try:
            convert_via("v.json", via, output_dir=via / "masks")
        except DataError as exc:
            return str(exc).splitlines()[0]
        return "no problem found"
    measure(f"VIA file, {args.entries} entries", convert, args.trace)


if __name__ == "__main__":
    main()
