"""The runner: executes the six notebooks in order with papermill and records the run.

Each stage's notebook writes only under ``outputs/<profile>/<stage>/`` and reads only earlier stages.
A stage is skipped on a re-run when its key (profile hash + notebook + package source + the keys of
the stages before it) is unchanged and its completion marker is present; ``--force`` re-runs it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import progress
from .config import REPO_ROOT, STAGES, Profile, default_out_dir, load_profile, profile_path, stage_dir
from .files import read_json, write_json
from .repro import git_commit, package_versions, set_seed

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PACKAGE_DIR = Path(__file__).resolve().parent
MARKER = ".stage.json"


class StageFailed(RuntimeError):
    pass


class PeakMemory:
    """The largest resident memory of this process and every process below it (the notebook's kernel, the
    sandboxes it starts), sampled every ``every`` seconds while the block runs: ``peak_mib``.

    Why sampled and summed: a stage runs in a separate kernel process with children of its own, so neither
    the runner's ``ru_maxrss`` nor the kernel's alone is the machine's memory during the stage (DESIGN.md's
    8 GiB budget); a spike shorter than ``every`` can be missed."""

    def __init__(self, every: float = 0.25) -> None:
        self.every, self.peak_mib = every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        import psutil

        me = psutil.Process()
        while True:
            total = 0
            try:
                procs = [me, *me.children(recursive=True)]
            except psutil.Error:  # a child ended while the tree was listed: sample again next time
                procs = []
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:  # ended between the listing and the reading
                    pass
            self.peak_mib = max(self.peak_mib, total / 2**20)
            if self._stop.wait(self.every):
                return


def notebook_for(stage: str) -> Path:
    return NOTEBOOK_DIR / f"{stage}.ipynb"


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(hashlib.sha256(p).digest())
    return h.hexdigest()[:16]


def package_source_hash() -> str:
    files = sorted(
        p for p in PACKAGE_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    return _digest(*(str(p.relative_to(PACKAGE_DIR)).encode() + p.read_bytes() for p in files))


def stage_key(stage: str, profile: Profile, upstream: str, src_hash: str) -> str:
    return _digest(profile.hash().encode(), notebook_for(stage).read_bytes(), src_hash.encode(), upstream.encode())


def is_complete(out_dir: Path, stage: str, key: str) -> bool:
    marker = out_dir / stage / MARKER
    try:
        return read_json(marker).get("key") == key
    except (FileNotFoundError, ValueError):
        return False


def start_stage(stage: str, profile: str, out_dir: str | None, overrides: dict | None) -> tuple[Profile, Path, Path]:
    """What each notebook's first code cell calls: validate the profile, seed everything, make dirs.

    Returns (profile, out_dir, this stage's dir).
    """
    cfg = load_profile(profile, overrides or {})
    set_seed(cfg.seed)
    out = Path(out_dir).resolve() if out_dir else default_out_dir(cfg)
    sdir = stage_dir(out, stage)
    print(f"[{stage}] profile={cfg.name} ({cfg.hash()}) out={out.name}/{stage}")
    return cfg, out, sdir


def kernel_manager_class():
    """The kernel manager each stage's kernel starts under: on Linux and macOS it talks to the runner over
    Unix sockets instead of TCP ports.

    Why: with TCP, jupyter_client picks five free ports and the kernel binds them a moment later. Once, in a
    ``small`` run here, another process took the heartbeat's port in between ("ZMQError: Address already in
    use"): the notebook still ran to its end, but closing the heartbeat channel then waited forever, and the
    run hung after stage 03. Unix sockets are files named after the kernel: nothing else can take them."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix":
        return AsyncKernelManager

    class IPCKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("transport", "ipc")
            super().__init__(**kwargs)

    return IPCKernelManager


def _execute(stage: str, nb_out: Path, params: dict[str, Any]) -> None:
    """Run one stage's notebook; its kernel inherits ``INSTRUCTCODER_PROGRESS=lines`` (unless set), so its
    progress bars print lines that papermill's log forwards (see ``progress``)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    before = os.environ.get(progress.ENV)
    os.environ[progress.ENV] = before or "lines"
    try:
        pm.execute_notebook(
            str(notebook_for(stage)),
            str(nb_out),
            parameters=params,
            kernel_name="python3",
            language="python",
            cwd=str(NOTEBOOK_DIR),
            progress_bar=sys.stderr.isatty(),
            log_output=False,  # True would also pass stderr to papermill's logger: every line twice
            stdout_file=sys.stdout,
            stderr_file=sys.stderr,
            kernel_manager_class=kernel_manager_class(),
        )
    except PapermillExecutionError as exc:
        raise StageFailed(
            f"stage {stage} failed in cell {exc.exec_count or exc.cell_index}: {exc.ename}: {exc.evalue}\n"
            f"  executed notebook with the traceback: {nb_out}"
        ) from None
    finally:
        if before is None:
            os.environ.pop(progress.ENV, None)


def _summary(out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """outputs/<profile>/summary.json: dataset size, total time, peak memory, base vs tuned pass@1 per set."""
    summary: dict[str, Any] = {"profile": manifest["profile_name"], "total_seconds": manifest["total_seconds"]}
    peaks = [s["peak_rss_mib"] for s in manifest["stages"].values() if s.get("peak_rss_mib") is not None]
    summary["peak_rss_mib"] = max(peaks) if peaks else None  # the largest stage's (stages run one at a time)
    try:
        report = read_json(out / "03_filtering" / "filter_report.json")
        summary["dataset_size"] = report.get("final", report.get("splits"))
    except FileNotFoundError:
        summary["dataset_size"] = None
    try:
        summary["evaluation"] = read_json(out / "05_evaluation" / "scores.json").get("sets", {})
    except FileNotFoundError:
        summary["evaluation"] = {}
    summary["report"] = "06_analysis/report.html" if (out / "06_analysis" / "report.html").is_file() else None
    return summary


def needs_editeval(cfg: Profile, wanted: set[str]) -> None:
    """Find or fetch EditEval before any stage starts when a wanted stage reads it (03 decontaminates
    against it; 05 scores it): a missing file then stops the run with one message, not a failed notebook
    half way through."""
    if "03_filtering" in wanted or ("05_evaluation" in wanted and "editeval" in cfg.evaluation.sets):
        from .tasks import editeval_file

        editeval_file(cfg)


def run(
    profile: str,
    out_dir: str | None = None,
    only: list[str] | None = None,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run the stages; returns the manifest written to run.json. Raises ProfileError / StageFailed."""
    cfg = load_profile(profile, overrides or {})
    profile_file = str(profile_path(profile))
    out = Path(out_dir).resolve() if out_dir else default_out_dir(cfg)
    (out / "notebooks").mkdir(parents=True, exist_ok=True)
    stages = [s for s in STAGES if notebook_for(s).is_file()]
    if only:
        unknown = [s for s in only if s not in STAGES and not any(s == x.split("_", 1)[1] for x in STAGES)]
        if unknown:
            raise ValueError(f"--only {', '.join(unknown)}: unknown stage; stages: {', '.join(STAGES)}")
        wanted = {s for s in STAGES if s in only or s.split("_", 1)[1] in only}
    else:
        wanted = set(stages)
    needs_editeval(cfg, wanted)
    src_hash = package_source_hash()
    t_start = time.time()
    manifest: dict[str, Any] = {
        "profile_name": cfg.name,
        "profile_file": Path(profile_file).name,
        "profile_hash": cfg.hash(),
        "overrides": overrides or {},
        "profile": cfg.model_dump(mode="json"),
        "seed": cfg.seed,
        "git_commit": git_commit(REPO_ROOT),
        "package_source_hash": src_hash,
        "packages": package_versions(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "stages": {},
    }
    run_json = out / "run.json"
    upstream = ""
    print(f"instructcoder run: profile {cfg.name} ({cfg.hash()}) -> {out}")
    try:
        for stage in stages:
            key = stage_key(stage, cfg, upstream, src_hash)
            upstream = key
            entry: dict[str, Any] = {"key": key}
            manifest["stages"][stage] = entry
            if stage not in wanted:
                entry["status"] = "not selected"
                continue
            if not force and is_complete(out, stage, key):
                done = read_json(out / stage / MARKER)
                entry.update(status="skipped (unchanged)", seconds=done.get("seconds"), peak_rss_mib=done.get("peak_rss_mib"))
                print(f"[{stage}] unchanged since the last run: skipped (use --force to re-run)")
                continue
            (stage_dir(out, stage) / MARKER).unlink(missing_ok=True)
            entry["status"] = "running"
            write_json(run_json, manifest)
            t0 = time.time()
            print(f"[{stage}] running {notebook_for(stage).name} ...", flush=True)
            params = {"profile": profile_file, "out_dir": str(out), "overrides": overrides or {}}
            memory = PeakMemory()
            try:
                with memory:
                    _execute(stage, out / "notebooks" / notebook_for(stage).name, params)
            except StageFailed:
                entry.update(status="failed", seconds=round(time.time() - t0, 2), peak_rss_mib=round(memory.peak_mib))
                raise
            secs, peak = round(time.time() - t0, 2), round(memory.peak_mib)
            entry.update(status="ok", seconds=secs, peak_rss_mib=peak)
            write_json(out / stage / MARKER, {"key": key, "seconds": secs, "peak_rss_mib": peak, "finished": time.time()})
            print(f"[{stage}] done in {secs:.1f}s, peak memory {peak} MiB", flush=True)
    finally:
        manifest["total_seconds"] = round(time.time() - t_start, 2)
        manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_json(run_json, manifest)
    summary = _summary(out, manifest)
    write_json(out / "summary.json", summary)
    print(json.dumps(summary, indent=2))
    if summary.get("report"):
        print(f"report: {out / summary['report']}")
    return manifest
