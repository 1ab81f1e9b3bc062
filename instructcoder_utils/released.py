"""The authors' released InstructCoder data as a source: stage 02's instances and stage 01's seeds.

Regenerating the paper's 114k instances costs a ChatGPT-class budget; the authors published them on the
Hugging Face hub (``likaixin/InstructCoder``: ``train.json``, ``valid.json``, ``github_seed.json``,
``additional_seed.json``, each a JSON list of ``{instruction, input, output}``). This module reads them
with ``datasets.load_dataset`` - the hub id at a pinned commit, or a local folder or file in the same
layout (``generation.published.path``) - checks every row for the three string fields, and turns the rows
into the records every stage shares, each keeping its origin (``source: published``, file and row), so
stages 03-06 run on them unchanged.

Why so strict: a row without ``output`` or a file that is not a list would otherwise surface stages later as
a confusing training error; here it stops at once with one message naming the file, the row and the field,
before anything is written.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import Profile, published_pin_problem

FIELDS = ("instruction", "input", "output")
LAYOUT = "a JSON list of objects with instruction, input and output strings (the published layout)"


class PublishedDataError(ValueError):
    """Released data that cannot be read as configured; the message names the file and what to do."""


@dataclass(frozen=True)
class Location:
    """Where the release is read from: the hub id at a commit, or a local folder or file."""

    dataset: str
    revision: str | None = None
    local: Path | None = None

    def label(self, name: str) -> str:
        """How messages and records name one file of the release."""
        if self.local is None:
            return f"{self.dataset}@{self.revision[:12]}/{name}"
        return str(self.local if self.local.is_file() else self.local / name)


def locate(cfg: Profile) -> Location:
    """The release as the profile names it; a hub id without a commit is refused (its data could move)."""
    p = cfg.generation.published
    problem = published_pin_problem(p)
    if problem:
        raise PublishedDataError(problem)
    if p.path is not None:
        local = cfg.resolve_path(p.path)
        if not local.exists():
            raise PublishedDataError(f"generation.published.path: {local} not found (expected a folder holding "
                                     f"{', '.join(p.files)} or one file of rows)")
        return Location(p.dataset, None, local)
    return Location(p.dataset, p.revision)


def offline_help(loc: Location, name: str, why: str) -> str:
    """The one message for a release that cannot be fetched: how to bring a local copy."""
    return (f"generation.published: cannot read {name} of {loc.dataset} at revision {loc.revision} from the "
            f"Hugging Face hub ({why}). On a machine that reaches the hub, download the release once - "
            f"`hf download {loc.dataset} --repo-type dataset --revision {loc.revision} --local-dir <folder>` "
            "(or huggingface_hub.snapshot_download with the same arguments) - copy the folder here and set "
            "generation.published.path: <folder> (on the command line: --set generation.published.path=<folder>)")


def check_json_list(path: Path) -> None:
    """Refuse a local file that is not a JSON list before ``datasets`` reads it: ``datasets`` would take a
    JSON object, or JSON lines, as rows of another shape and fail later, far from the cause."""
    with path.open("rb") as fh:
        head = fh.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not head:
        raise PublishedDataError(f"{path}: empty file; expected {LAYOUT}")
    if re.match(rb"\[\s*\]", head):
        raise PublishedDataError(f"{path}: an empty list, no rows; expected {LAYOUT}")
    if not head.startswith(b"["):
        raise PublishedDataError(f"{path}: not a JSON list (it starts with {head[:1].decode(errors='replace')!r}); "
                                 f"expected {LAYOUT}")


def check_layout(ds, where: str) -> None:
    """Every row has the three fields as strings; else one message naming the file, the row (0-based) and
    the field. Column-wise through Arrow, so 108k rows cost milliseconds."""
    import pyarrow.compute as pc
    from datasets import Value

    missing = [f for f in FIELDS if f not in ds.column_names]
    if missing:
        raise PublishedDataError(f"{where}: no row has {', '.join(missing)} (columns found: "
                                 f"{', '.join(ds.column_names)}); expected {LAYOUT}")
    for name in FIELDS:
        if ds.features[name] != Value("string"):
            bad = next(i for i, v in enumerate(ds[name]) if not isinstance(v, str))
            raise PublishedDataError(f"{where}: row {bad} (0-based): {name} is "
                                     f"{type(ds[bad][name]).__name__}, not a string; expected {LAYOUT}")
        column = ds.data.column(name)
        if column.null_count:
            bad = pc.index(pc.is_null(column), True).as_py()
            raise PublishedDataError(f"{where}: row {bad} (0-based): missing {name}; expected {LAYOUT}")


def _stem(name: str) -> str:
    """A file's name as a word (``train.json`` -> ``train``): its split name and the middle of its rows' ids."""
    return re.sub(r"\W+", "_", Path(name).stem)


def load_file(loc: Location, name: str, cache_dir: str | Path | None = None):
    """One file of the release as a checked ``datasets.Dataset``: from the hub id at the pinned commit
    (downloaded once into the ``datasets`` cache, so a re-run reads it from there), or from the local copy."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    split = _stem(name) or "rows"
    cache = str(cache_dir) if cache_dir else None
    where = loc.label(name)
    if loc.local is None:
        try:
            ds = load_dataset(loc.dataset, revision=loc.revision, data_files={split: name}, split=split,
                              cache_dir=cache)
        except (ConnectionError, FileNotFoundError) as exc:  # offline, unreachable, or no such file or commit
            raise PublishedDataError(offline_help(loc, name, str(exc).strip() or type(exc).__name__)) from None
        except (DatasetGenerationError, ValueError) as exc:
            raise PublishedDataError(f"{where}: not readable as {LAYOUT} ({exc.__cause__ or exc})") from None
    else:
        path = loc.local if loc.local.is_file() else loc.local / name
        if not path.is_file():
            raise PublishedDataError(f"{path}: not found; generation.published.path {loc.local} should hold "
                                     f"{name} (the published layout)")
        check_json_list(path)
        try:
            ds = load_dataset("json", data_files={split: str(path)}, split=split, cache_dir=cache)
        except (DatasetGenerationError, ValueError) as exc:
            raise PublishedDataError(f"{path}: not readable as {LAYOUT} ({exc.__cause__ or exc})") from None
    check_layout(ds, where)
    return ds


def sample_rows(n: int, limit: int | None, seed: int) -> list[int]:
    """A seeded sample of ``limit`` row positions out of ``n``, in order (all rows when limit is None or
    larger): the same profile seed picks the same rows on every machine."""
    if limit is None or limit >= n:
        return list(range(n))
    return sorted(random.Random(f"{seed}:published").sample(range(n), limit))


def row_record(row: dict[str, Any], name: str, index: int, loc: Location, source: str, kind: str,
               id_prefix: str) -> dict[str, Any]:
    """One released row as a record that remembers where it came from (file and 0-based row)."""
    from .filtering import instructcoder_record

    origin = {"file": name, "row": index, "dataset": loc.dataset, "revision": loc.revision}
    return instructcoder_record(row, f"{id_prefix}-{_stem(name)}-{index}", source, kind, **origin)


def instance_files(loc: Location, files: list[str]) -> list[str]:
    """The files whose rows become instances: the configured names, or the one file ``path`` points at."""
    return [loc.local.name] if loc.local is not None and loc.local.is_file() else list(files)


def instance_records(cfg: Profile, cache_dir: str | Path | None = None) -> tuple[list[dict[str, Any]], dict]:
    """Stage 02 on the released data: (records, counts). ``limit`` keeps a seeded sample over all files
    together; every record gets ``meta.behaviour_change`` like the other methods' instances."""
    from .generate import behaviour_changes

    p = cfg.generation.published
    loc = locate(cfg)
    parts = [(name, load_file(loc, name, cache_dir)) for name in instance_files(loc, p.files)]
    sizes = [ds.num_rows for _, ds in parts]
    picked = sample_rows(sum(sizes), p.limit, cfg.seed)
    records, start, k = [], 0, 0
    for (name, ds), size in zip(parts, sizes, strict=True):
        mine = []
        while k < len(picked) and picked[k] < start + size:
            mine.append(picked[k] - start)
            k += 1
        for index, row in zip(mine, ds.select(mine).to_list(), strict=True):
            rec = row_record(row, name, index, loc, "published", "published", "published")
            rec["meta"]["behaviour_change"] = behaviour_changes(rec["input"], rec["output"])
            records.append(rec)
        start += size
    counts = {"dataset": loc.dataset, "revision": loc.revision, "path": p.path,
              "files": {name: size for (name, _), size in zip(parts, sizes, strict=True)},
              "rows": sum(sizes), "limit": p.limit, "kept": len(records)}
    return records, counts


def seed_records(cfg: Profile, cache_dir: str | Path | None = None) -> tuple[list[dict[str, Any]], dict]:
    """Stage 01's published seeds: the authors' seed tasks (``seed_file``) as seed records
    (``source: seed:published``), with the same line counts the mined seeds carry."""
    from .seeds import diff_stats

    p = cfg.generation.published
    loc = locate(cfg)
    if loc.local is not None and loc.local.is_file():
        raise PublishedDataError(f"seeds.source: published reads {p.seed_file}, but generation.published.path "
                                 f"{loc.local} is one file; point it at the folder that holds {p.seed_file}")
    ds = load_file(loc, p.seed_file, cache_dir)
    records = []
    for index, row in enumerate(ds.to_list()):
        rec = row_record(row, p.seed_file, index, loc, "seed:published", "commit", "seed")
        rec["meta"]["lines_added"], rec["meta"]["lines_removed"] = diff_stats(rec["input"], rec["output"])
        records.append(rec)
    info = {"dataset": loc.dataset, "revision": loc.revision, "path": p.path, "file": p.seed_file,
            "rows": len(records)}
    return records, info
