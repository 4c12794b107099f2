"""How long validation takes on long input lists, and how much memory (docs/bad-input.md).

    python benchmarks/long_lists.py --entries 100000 --folder /tmp/long   # ~30 s here

Builds, once, in `--folder`: a `folder` dataset whose `train.txt` lists N stems (images and
masks are hard links to a few small files, so building takes seconds) and a VIA 2.x file with N
image entries of one polygon each, whose last entry names a missing image; then times, each in
a process of its own, `load_dataset` (the checks of `datasets.checks`), `convert_via` (the
whole file parsed and checked; it stops with the one problem before writing a mask), the same
conversion with `--skip-missing` (every other mask written, then removed) and, as baselines,
the same list loaded without validation (the sample list alone) and the VIA file's
`json.loads` alone (`--cases` picks some). Memory is the process's peak resident set size
beyond what it held after the imports and, with `--trace`, Python's own peak (tracemalloc,
which slows Python about 2x).
The figures go to `--json` (default benchmarks/long_lists.json). `--repo` measures another
checkout's fcn_keras (e.g. the one before a change) with the same harness.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

CASES = ("folder", "folder-list", "via", "via-write", "via-json")
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


def max_rss_mb() -> float:
    """This process's peak resident set size (VmHWM: getrusage's maximum would include the
    parent's, which a process keeps across exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(case: str, folder: Path, trace: bool) -> dict:
    """One measurement, in this process (started for it alone by `main`)."""
    from fcn_keras.annotations.convert import convert_via
    from fcn_keras.datasets import load_dataset
    from fcn_keras.errors import DataError

    def folder_dataset(validate=True):
        dataset = load_dataset(folder, "folder", validate=validate)
        return f"{len(dataset.split('train'))} samples"

    def via_document():
        from fcn_keras.annotations.records import read_json
        return f"{len(read_json(folder / 'v.json'))} entries"

    def via_file():
        try:
            convert_via("v.json", folder, output_dir=folder / "masks")
        except DataError as exc:
            return str(exc).splitlines()[-1].strip()
        return "no problem found"

    def via_written():
        import shutil
        shutil.rmtree(folder / "written", ignore_errors=True)
        result = convert_via("v.json", folder, output_dir=folder / "written", skip_missing=True)
        masks = len(result.mask_paths)
        shutil.rmtree(folder / "written")
        return f"{masks} masks written, {result.skipped_missing} image skipped"

    run = {"folder": folder_dataset, "via": via_file, "via-json": via_document,
           "via-write": via_written,
           "folder-list": lambda: folder_dataset(validate=False)}[case]
    imports = max_rss_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    outcome = run()
    seconds = time.perf_counter() - start
    result = {"seconds": round(seconds, 2), "max_rss_mb": round(max_rss_mb()),
              "rss_after_imports_mb": round(imports),
              "rss_growth_mb": round(max_rss_mb() - imports), "outcome": outcome}
    if trace:
        result["python_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2 ** 20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--trace", action="store_true", help="also Python's peak (slower)")
    parser.add_argument("--json", type=Path, default=REPO / "benchmarks" / "long_lists.json")
    parser.add_argument("--repo", type=Path, default=REPO,
                        help="the checkout whose fcn_keras is measured (default: this one)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"which to run, comma-separated (default: all of {', '.join(CASES)})")
    parser.add_argument("--case", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(args.repo.resolve()))
    folder, via = args.folder / f"folder-{args.entries}", args.folder / f"via-{args.entries}"
    if args.case:
        print(json.dumps(run_case(args.case, folder if args.case.startswith("folder") else via,
                                  args.trace)))
        return
    if not folder.exists():
        make_folder(folder, args.entries)
    if not via.exists():
        make_via(via, args.entries)
    results = {}
    labels = {"folder": f"train.txt with {args.entries} entries (load_dataset)",
              "folder-list": "the same, validate=False (the sample list alone)",
              "via": f"VIA file with {args.entries} entries (convert_via: the checks)",
              "via-write": "the same converted with --skip-missing (every mask written)",
              "via-json": "the same file's json.loads alone (read_json)"}
    for case in args.cases.split(","):
        label = labels[case]
        command = [sys.executable, __file__, "--case", case, "--entries", str(args.entries),
                   "--folder", str(args.folder), "--repo", str(args.repo)]
        command += ["--trace"] if args.trace else []
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results[case] = {"input": label, **json.loads(output.strip().splitlines()[-1])}
        r = results[case]
        peak = f", Python peak {r['python_peak_mb']} MB" if "python_peak_mb" in r else ""
        print(f"{label}: {r['seconds']} s, {r['rss_growth_mb']} MB resident beyond the imports "
              f"(max RSS {r['max_rss_mb']} MB){peak}; {r['outcome']}", flush=True)
    report = {"command": " ".join(["python", "benchmarks/long_lists.py", *sys.argv[1:]]),
              "entries": args.entries, "trace": args.trace,
              "date": time.strftime("%Y-%m-%d", time.gmtime()),
              "machine": f"{platform.machine()}, {os.cpu_count()} CPUs (os.cpu_count), "
                         f"load average {os.getloadavg()[0]:.1f} at the end",
              "python": platform.python_version(), "results": results}
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
