"""Data loading: peak memory and frames per second of the training DataLoader, format 1 vs format 2.

Each measurement is a fresh subprocess that sets up ``TrajectoryDataModule`` (reacher-easy, 64x64
pixels, 5-frame windows, frameskip 5, batch 64) and iterates a fixed number of training batches;
peak memory is that process's max RSS (with num_workers=2, also the largest worker's), frames/s
counts the 5 frames of every window after the first batch. Implementations:

    format 1   the code of commit FORMAT1_COMMIT: every .npz shard decompressed into RAM at setup
    format 2   this code: one .npy file per shard array, each window read with positional reads
    mmap       the same .npy files through np.memmap: the rejected alternative
    hdf5       optional (--hdf5, needs h5py): per-frame gzip chunks, the compressed alternative

Datasets: the smallest size is collected with jepa_wm.data.collect (OU policy, 100 steps per episode); larger
sizes repeat its episodes (renumbered) through the same shard writer, because collecting them would
take minutes of both cores. Frames stay real reacher frames, so disk sizes are realistic. They are
kept in data= (default: a folder in the system temp directory) for the next run.

    python benchmarks/data_loading.py                          # print
    python benchmarks/data_loading.py repeats=5 --write        # and record in BENCHMARKS.md

Options: sizes=40,400 steps=100 batches=60 repeats=3 data=DIR.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from jepa_wm.cli import benchmark
from jepa_wm.config import command_line

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: a format-1 child puts the old data package first
FORMAT1_COMMIT = "532078015d438aa8b6edc45d97e5d895918810aa"  # the last commit that read format 1
FORMAT1_FILES = ("data/__init__.py", "data/storage.py", "data/dataset.py", "data/datamodule.py")
DEFAULTS = {"sizes": "40,400", "steps": "100", "batches": "60", "repeats": "3",
            "data": str(Path(tempfile.gettempdir()) / "jepa-wm-data-loading")}
CHILD_OPTIONS = {"impl": "format2", "path": "", "workers": 0, "batches": 60, "hdf5": "None"}  # one measurement
WINDOW = {"num_frames": 5, "frameskip": 5, "batch_size": 64}
POLICY = {"name": "ou", "theta": 0.15, "sigma": 0.3}


# ---------------------------------------------------------------------------------------- datasets
def collected(directory: Path, episodes: int, steps: int) -> Path:
    """Real reacher-easy episodes in format 2, collected once."""
    from jepa_wm.data.collect import collect

    from jepa_wm.config import load_group, to_dict

    path = directory / f"v2-{episodes}"
    if not (path / "manifest.json").is_file() or json.loads((path / "manifest.json").read_text())["shards"] == {}:
        print(f"collecting {episodes} episodes of {steps} steps into {path}", flush=True)
    collect(to_dict(load_group("env", "reacher-easy")), path, episodes=episodes, steps_per_episode=steps,
            policy=POLICY, seed=0, workers=2, episodes_per_shard=10, progress=False)
    return path


def shard_arrays(path: Path, shard: str, record: dict) -> dict[str, np.ndarray]:
    from jepa_wm.data.storage import shard_file

    return {key: np.load(path / shard_file(shard, key), allow_pickle=False) for key in record["files"]}


def repeated(source: Path, episodes: int) -> Path:
    """A format-2 dataset of ``episodes`` episodes that repeats those of ``source``, renumbered."""
    from jepa_wm.data.storage import new_manifest, write_shard

    from jepa_wm.files import write_json_atomic

    path = source.parent / f"v2-{episodes}"
    if (path / "manifest.json").is_file():
        return path
    print(f"writing {path} from the episodes of {source}", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((source / "manifest.json").read_text())
    pool = [shard_arrays(source, shard, record) for shard, record in sorted(manifest["shards"].items())]
    per_shard, available = len(pool[0]["episode"]), sum(len(arrays["episode"]) for arrays in pool)
    header = {key: value for key, value in manifest.items() if key not in ("shards", "header_sha256")}
    out = new_manifest({**header, "episodes": episodes})
    for index, first in enumerate(range(0, episodes, per_shard)):
        source_shard = pool[(first % available) // per_shard]
        arrays = {key: value for key, value in source_shard.items()}
        arrays["episode"] = np.arange(first, first + per_shard, dtype=np.int64)
        out["shards"][f"shard-{index:05d}"] = write_shard(path, f"shard-{index:05d}", arrays)
    write_json_atomic(path / "manifest.json", out)  # last: a killed run leaves no manifest and starts over
    return path


def as_format1(source: Path) -> Path:
    """The same episodes as a format-1 dataset: compressed .npz shards and a format-1 manifest."""
    from jepa_wm.data.storage import file_sha256

    from jepa_wm.files import write_json_atomic

    path = source.parent / source.name.replace("v2-", "v1-")
    if (path / "manifest.json").is_file():
        return path
    print(f"writing {path} (format 1)", flush=True)
    path.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((source / "manifest.json").read_text())
    shards = {}
    for shard, record in sorted(manifest["shards"].items()):
        np.savez_compressed(path / f"{shard}.npz", **shard_arrays(source, shard, record))  # as format 1 wrote them
        shards[f"{shard}.npz"] = {"episodes": record["episodes"], "sha256": file_sha256(path / f"{shard}.npz")}
    header = {key: value for key, value in manifest.items() if key not in ("shards", "header_sha256")}
    write_json_atomic(path / "manifest.json", {**header, "format_version": 1, "shards": shards})
    return path


def as_hdf5(source: Path) -> Path:
    """The same episodes as HDF5 files, one per shard: pixels in gzip-compressed chunks of one frame."""
    import h5py

    path = source.parent / source.name.replace("v2-", "h5-")
    if (path / "done").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((source / "manifest.json").read_text())
    for shard, record in sorted(manifest["shards"].items()):
        with h5py.File(path / f"{shard}.h5", "w") as file:
            for key, array in shard_arrays(source, shard, record).items():
                chunked = {"chunks": (1, 1, *array.shape[2:]), "compression": "gzip"} if key == "pixels" else {}
                file.create_dataset(key, data=array, **chunked)
    (path / "done").write_text("")
    return path


def disk_bytes(path: Path) -> int:
    return sum(file.stat().st_size for file in path.iterdir() if file.name.startswith("shard-"))


def format1_code(directory: Path) -> Path:
    """The data package of FORMAT1_COMMIT (the modules the data module needs), for the baseline."""
    path = directory / f"format1-code-{FORMAT1_COMMIT[:8]}"
    for name in FORMAT1_FILES:
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        text = subprocess.run(["git", "show", f"{FORMAT1_COMMIT}:{name}"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (path / name).write_text(text)
    return path


# ------------------------------------------------------------------------------------ measurement
def use_memory_maps() -> None:
    """Read the format-2 files through memory maps (np.memmap) instead of positional reads."""
    from jepa_wm.data.dataset import EpisodeStore

    maps = {}

    def read_rows(self, descriptors, buffers, positions):
        for fd, buffer, position in zip(descriptors.tolist(), buffers, positions.tolist()):
            path = self._fd_paths[fd]
            if path not in maps:
                maps[path] = np.memmap(path, np.uint8, "r")
            buffer.view(np.uint8)[:] = maps[path][position : position + buffer.nbytes]

    EpisodeStore._read_rows = read_rows


def use_hdf5(directory: Path) -> None:
    """Read windows from the HDF5 copy of the dataset instead of the .npy files."""
    import h5py
    from jepa_wm.data.dataset import EpisodeStore

    datasets = {}

    def open_dataset(store, path):
        """The HDF5 dataset that holds the array of ``path``, and that .npy file's layout."""
        shard, column = next((shard, column) for shard, paths in enumerate(store._paths)
                             for column, candidate in enumerate(paths) if candidate == path)
        name, key, _ = Path(path).name.split(".")
        return (h5py.File(directory / f"{name}.h5", "r")[key], int(store._offsets[shard, column]),
                int(store._row_bytes[column]), int(store._step_bytes[column]))

    def read_rows(self, descriptors, buffers, positions):
        for fd, buffer, position in zip(descriptors.tolist(), buffers, positions.tolist()):
            path = self._fd_paths[fd]
            if path not in datasets:
                datasets[path] = open_dataset(self, path)
            dataset, offset, row_bytes, step_bytes = datasets[path]
            row, within = divmod(position - offset, row_bytes)
            step = within // step_bytes
            values = dataset[row, step : step + buffer.nbytes // step_bytes]
            buffer.view(np.uint8)[:] = values.reshape(-1).view(np.uint8)

    EpisodeStore._read_rows = read_rows


def check_variants(path: Path, hdf5: Path | None) -> None:
    """The alternatives must read the very windows format 2 reads, or their timings mean nothing."""
    from jepa_wm.data.dataset import EpisodeStore, load_episodes

    original, store = EpisodeStore._read_rows, load_episodes(path, "pixels")
    windows = ([0, store.num_episodes // 2, store.num_episodes - 1], [0, 3, store.steps_per_episode - 20], 5, 5)
    expected = store.read_windows(*windows)
    for name, use in (("mmap", use_memory_maps), ("hdf5", lambda: use_hdf5(hdf5) if hdf5 else None)):
        try:
            use()
            if EpisodeStore._read_rows is not original:
                got = load_episodes(path, "pixels").read_windows(*windows)
                assert all(np.array_equal(got[key], value) for key, value in expected.items()), f"{name} reads other windows"
        finally:
            EpisodeStore._read_rows = original


def child(options: dict[str, str]) -> None:
    """One measurement in this fresh process; prints a JSON line."""
    if options["impl"] == "mmap":
        use_memory_maps()
    elif options["impl"] == "hdf5":
        use_hdf5(Path(options["hdf5"]))
    from jepa_wm.data.datamodule import TrajectoryDataModule

    start = time.perf_counter()
    module = TrajectoryDataModule(options["path"], "pixels", **WINDOW, num_workers=int(options["workers"]))
    module.setup("fit")
    setup_s = time.perf_counter() - start
    loader, batches, seen = module.train_dataloader(), int(options["batches"]), 0
    while seen < batches:
        for _ in loader:
            if seen == 1:  # from the second batch on: worker start-up and first reads excluded
                start = time.perf_counter()
            seen += 1
            if seen == batches:
                break
    timed = time.perf_counter() - start
    frames = (batches - 1) * WINDOW["batch_size"] * WINDOW["num_frames"]
    print(json.dumps({"setup_s": setup_s, "frames_per_s": frames / timed,
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_rss_mb": max(peak_rss_mb(pid) for pid in child_pids()) if int(options["workers"]) else 0}))


def child_pids() -> list[int]:
    """Processes started by this one: the persistent DataLoader workers, still alive."""
    return [int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def measure(impl: str, path: Path, workers: int, batches: int, code: Path | None, hdf5: Path | None) -> dict:
    paths = [str(code) if code else "", str(ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path for path in paths if path)}
    command = [sys.executable, __file__, "--child", f"impl={impl}", f"path={path}", f"workers={workers}",
               f"batches={batches}", f"hdf5={hdf5}"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"{impl} on {path} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    if "--child" in argv:
        return child(command_line(argv, CHILD_OPTIONS, flags=("--child",))[0])
    options, flags = command_line(argv, DEFAULTS, flags=("--hdf5", "--write"))
    from _report import machine_description, update_benchmarks_section
    from jepa_wm.data.dataset import load_episodes
    from jepa_wm.data.storage import VERIFIED_NAME

    sizes = sorted(int(size) for size in options["sizes"].split(","))
    steps, batches, repeats = int(options["steps"]), int(options["batches"]), int(options["repeats"])
    directory = Path(options["data"]) / f"steps{steps}"
    directory.mkdir(parents=True, exist_ok=True)
    base = collected(directory, sizes[0], steps)
    datasets = {size: base if size == sizes[0] else repeated(base, size) for size in sizes}
    code = format1_code(directory)
    first_load = {}
    for size, path in datasets.items():  # hash every file once, as a first training run would
        (path / VERIFIED_NAME).unlink(missing_ok=True)
        start = time.perf_counter()
        load_episodes(path, "pixels")
        first_load[size] = time.perf_counter() - start

    configs = []  # (label, impl, size, workers, dataset, code, hdf5 copy)
    for size, path in datasets.items():
        v1 = as_format1(path)
        configs += [("format 1 (npz in RAM)", "format1", size, workers, v1, code, None) for workers in (0, 2)]
        configs += [("format 2 (npy, pread)", "format2", size, workers, path, None, None) for workers in (0, 2)]
        configs.append(("mmap (npy, np.memmap)", "mmap", size, 0, path, None, None))
        if "--hdf5" in flags:
            configs.append(("hdf5 (gzip frame chunks)", "hdf5", size, 0, path, None, as_hdf5(path)))
        check_variants(path, configs[-1][6])
    load_before = os.getloadavg()[0]
    results: dict[tuple, list[dict]] = {config[:4]: [] for config in configs}
    for repeat in range(repeats):  # configurations interleaved, so drift in the machine hits all alike
        for label, impl, size, workers, path, code_dir, hdf5 in configs:
            result = measure(impl, path, workers, batches, code_dir, hdf5)
            results[(label, impl, size, workers)].append(result)
            print(f"repeat {repeat + 1}/{repeats} {label}, {size} episodes, {workers} workers: "
                  f"{result['frames_per_s']:,.0f} frames/s, {result['rss_mb']:,.0f} MB", flush=True)
    load_after = os.getloadavg()[0]

    def median(key, runs):
        return statistics.median(run[key] for run in runs)

    rows = []
    for (label, impl, size, workers), runs in results.items():
        path = next(config[4] for config in configs if config[:4] == (label, impl, size, workers))
        hdf5 = next(config[6] for config in configs if config[:4] == (label, impl, size, workers))
        worker_mb = f"{median('worker_rss_mb', runs):,.0f}" if workers else "-"
        frames = [run["frames_per_s"] for run in runs]
        rows.append(f"| {label} | {size} | {disk_bytes(hdf5 or path) / 1e6:,.1f} | {workers} | "
                    f"{median('frames_per_s', runs):,.0f} | {min(frames):,.0f}-{max(frames):,.0f} | "
                    f"{median('rss_mb', runs):,.0f} | {worker_mb} | {median('setup_s', runs):.2f} |")
    growth = []  # peak memory of the largest dataset minus that of the smallest, in one process
    for label in dict.fromkeys(config[0] for config in configs):
        peaks = [median("rss_mb", runs) for (name, _, _, workers), runs in results.items() if name == label and not workers]
        growth.append(f"{label}: {peaks[-1] - peaks[0]:+,.0f} MB")
    frames_per_step = WINDOW["batch_size"] * WINDOW["num_frames"]
    text = "\n".join([
        f"reacher-easy, 64x64 pixels, episodes of {steps} steps ({sizes[0]} collected with jepa_wm.data.collect, larger sizes "
        f"repeat them through the same shard writer); training DataLoader of TrajectoryDataModule: windows of "
        f"{WINDOW['num_frames']} frames, frameskip {WINDOW['frameskip']}, batch {WINDOW['batch_size']}, shuffled, "
        f"{batches} batches ({frames_per_step} frames each) per fresh subprocess, frames/s from the second batch on. "
        f"Peak memory: max RSS of the process that sets up the data module (and of its largest DataLoader worker). "
        f"Setup: data module setup() after the dataset was verified once; the first load of format 2 hashes every file "
        f"({', '.join(f'{first_load[size]:.2f} s for {size} episodes' for size in sizes)}), later loads read headers only. "
        f"Median of {repeats} repeats, configurations interleaved. Load average (1 min) before / after: "
        f"{load_before:.2f} / {load_after:.2f} (2 cores; one run uses up to 1 + workers of them).",
        "",
        "| implementation | episodes | disk (MB) | workers | frames / s (median) | range | peak RSS (MB) | "
        "worker peak RSS (MB) | setup (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Peak memory from {sizes[0]} to {sizes[-1]} episodes (0 workers): {'; '.join(growth)}. Memory maps count "
        f"every page they touch (and the kernel's fault-around) as the process's memory; positional reads leave "
        f"frames in the page cache only.",
    ])
    print(text)
    if "--write" in flags:
        command = "python benchmarks/data_loading.py " + " ".join(argv)
        update_benchmarks_section("Data loading", text, command, machine_description())


if __name__ == "__main__":  # the guard matters: collection's spawn pool re-imports this file
    benchmark(main)
