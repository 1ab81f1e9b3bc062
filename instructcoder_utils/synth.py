"""The procedural edit synthesizer: verified (instruction, input, output) instances without an LLM.

Two sources, mixed by ``program_share``:

* **programs** (``synth_programs``): small self-contained programs rendered from families of
  building blocks (list/string/dict processing, numeric loops, parsing, a class), each paired with a
  behaviour edit (handle the empty list, ignore case, include the boundary, count instead of list,
  fix an off-by-one...) or a refactoring. Both versions are executed against reference semantics, so
  the behaviour changes exactly where the instruction says and nowhere else. ``meta.test`` holds an
  executable ``check()`` (EditEval's format; counts: ``with_test`` / ``test_dropped:<why>``).
* **real source** (``synth_kinds``): functions and classes from the installed standard library (or
  any ``source_dirs``) with structural edits (renames, type hints, docstrings, logging, f-strings,
  dataclasses, guard clauses...), each checked by an AST-level test of what the instruction claims.

Public API: ``synthesize(cfg, seed, progress) -> (records, counts)``, ``KINDS``, ``check_record``.
Deterministic for a seed (fixed chunking, ordered merging), so ``id``s are stable.
"""

from __future__ import annotations

import ast
import hashlib
import multiprocessing as mp
import random
import sysconfig
import textwrap
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .files import make_record, record_meta
from .progress import bar as progress_bar
from .synth_kinds import STRUCT_BY_KIND, STRUCT_EDITS, Unit, fmt_fields
from .synth_programs import FAMILIES, PROGRAM_KINDS, make_program_instance

KINDS: list[str] = sorted(set(PROGRAM_KINDS) | set(STRUCT_BY_KIND))
SKIP_PARTS = {"test", "tests", "idlelib", "turtledemo", "site-packages", "dist-packages", "__pycache__", "ensurepip",
              "lib2to3", "pydoc_data", "venv", "__phello__", "config-3"}
FILES_PER_CHUNK = 12
PROGRAMS_PER_CHUNK = 150

# module prefix -> application domain, most specific first
SCENARIOS: list[tuple[str, str]] = [
    ("email", "email processing"), ("smtplib", "email processing"), ("imaplib", "email processing"), ("poplib", "email processing"),
    ("mailbox", "email processing"), ("mimetypes", "email processing"), ("http", "web/networking"), ("urllib", "web/networking"),
    ("socket", "web/networking"), ("ssl", "web/networking"), ("ftplib", "web/networking"), ("xmlrpc", "web/networking"),
    ("wsgiref", "web/networking"), ("ipaddress", "web/networking"), ("webbrowser", "web/networking"),
    ("socketserver", "web/networking"), ("html", "web/networking"), ("json", "data serialization"),
    ("csv", "data serialization"), ("pickle", "data serialization"), ("copyreg", "data serialization"),
    ("plistlib", "data serialization"), ("base64", "data serialization"), ("binascii", "data serialization"),
    ("xml", "data serialization"), ("tomllib", "data serialization"), ("configparser", "configuration"),
    ("argparse", "command-line tools"), ("optparse", "command-line tools"), ("getopt", "command-line tools"),
    ("cmd", "command-line tools"), ("shlex", "command-line tools"), ("pydoc", "developer tools"), ("pdb", "developer tools"),
    ("bdb", "developer tools"), ("trace", "developer tools"), ("profile", "developer tools"), ("cProfile", "developer tools"),
    ("timeit", "developer tools"), ("doctest", "testing"), ("unittest", "testing"), ("logging", "logging"),
    ("asyncio", "concurrency"), ("concurrent", "concurrency"), ("threading", "concurrency"), ("multiprocessing", "concurrency"),
    ("queue", "concurrency"), ("sched", "scheduling"), ("subprocess", "system administration"), ("os", "system administration"),
    ("shutil", "file management"), ("pathlib", "file management"), ("glob", "file management"), ("fnmatch", "file management"),
    ("tempfile", "file management"), ("filecmp", "file management"), ("fileinput", "file management"),
    ("zipfile", "file management"), ("tarfile", "file management"), ("gzip", "compression"), ("bz2", "compression"),
    ("lzma", "compression"), ("zipimport", "packaging"), ("importlib", "packaging"), ("pkgutil", "packaging"),
    ("sysconfig", "packaging"), ("site", "packaging"), ("modulefinder", "packaging"), ("sqlite3", "databases"),
    ("dbm", "databases"), ("shelve", "databases"), ("decimal", "finance"), ("_pydecimal", "finance"),
    ("fractions", "math utilities"), ("statistics", "statistics"), ("random", "math utilities"), ("numbers", "math utilities"),
    ("datetime", "date and time"), ("_strptime", "date and time"), ("calendar", "date and time"), ("zoneinfo", "date and time"),
    ("time", "date and time"), ("re", "text processing"), ("string", "text processing"), ("textwrap", "text processing"),
    ("difflib", "text processing"), ("gettext", "internationalization"), ("locale", "internationalization"),
    ("encodings", "internationalization"), ("codecs", "internationalization"), ("unicodedata", "text processing"),
    ("tokenize", "compilers"), ("ast", "compilers"), ("dis", "compilers"), ("inspect", "developer tools"),
    ("symtable", "compilers"), ("compileall", "compilers"), ("py_compile", "compilers"), ("tkinter", "GUI"),
    ("turtle", "GUI"), ("curses", "terminal UI"), ("wave", "audio"), ("sunau", "audio"), ("aifc", "audio"), ("audioop", "audio"),
    ("chunk", "audio"), ("colorsys", "graphics"), ("imghdr", "graphics"), ("secrets", "security"), ("hashlib", "security"),
    ("hmac", "security"), ("crypt", "security"), ("uuid", "identifiers"), ("collections", "data structures"),
    ("heapq", "data structures"), ("bisect", "data structures"), ("enum", "data structures"), ("dataclasses", "data structures"),
    ("typing", "type systems"), ("functools", "functional programming"), ("itertools", "functional programming"),
    ("operator", "functional programming"), ("contextlib", "resource management"), ("weakref", "memory management"),
    ("copy", "data structures"), ("pprint", "developer tools"), ("reprlib", "developer tools"), ("platform", "system administration"),
    ("getpass", "security"), ("netrc", "security"), ("mailcap", "email processing"), ("quopri", "email processing"),
    ("uu", "data serialization"), ("tabnanny", "developer tools"), ("ctypes", "systems programming"),
    ("selectors", "web/networking"), ("signal", "system administration"),
]


# --------------------------------------------------------------------------- sources
def scenario_for(module: str) -> str:
    """A domain label for a module name: its package prefix, else a generic 'general utilities'."""
    top = module.split(".")[0]
    for prefix, label in SCENARIOS:
        if top == prefix or top.lstrip("_") == prefix:
            return label
    return "general utilities"


def source_files(source_dirs: Iterable[str]) -> list[tuple[str, Path]]:
    """(module name, path) for every Python file under the given roots; 'stdlib' is the installed library."""
    out: list[tuple[str, Path]] = []
    for entry in source_dirs:
        root = Path(sysconfig.get_paths()["stdlib"]) if entry == "stdlib" else Path(entry)
        if not root.exists():
            raise FileNotFoundError(f"generation.synth.source_dirs: {entry!r} does not exist (use 'stdlib' or a directory)")
        files = [root] if root.is_file() else sorted(root.rglob("*.py"))
        for path in files:
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            if any(p in SKIP_PARTS or p.startswith("test_") or p.startswith("config-") for p in rel.parts):
                continue
            mod = ".".join(rel.with_suffix("").parts)
            out.append((mod.removesuffix(".__init__"), path))
    return out


def extract_units(module: str, text: str, max_lines: int, min_lines: int = 5) -> list[Unit]:
    """Top-level functions and classes (and methods of classes) of one module, sized for the model."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines()
    imports = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    units: list[Unit] = []
    for node in tree.body:
        cands = [(node.name, node)] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) else []
        if isinstance(node, ast.ClassDef):
            cands += [(f"{node.name}.{m.name}", m) for m in node.body if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
        for qual, n in cands:
            end = getattr(n, "end_lineno", n.lineno)
            start = min([n.lineno] + [d.lineno for d in getattr(n, "decorator_list", [])])
            if min_lines <= end - start + 1 <= max_lines:
                src = textwrap.dedent("\n".join(lines[start - 1: end]))
                units.append(Unit(module, qual, n, imports, src))
    return units


# --------------------------------------------------------------------------- workers
def _rid(*parts: Any) -> str:
    return hashlib.sha1("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def _struct_chunk(job: tuple) -> tuple[list[dict], dict]:
    """Candidates from a fixed chunk of files; each file is parsed once and offered to every kind.

    ``quota`` bounds the candidates per kind in this chunk (a fixed number, so the result does not
    depend on how many workers run). ``reparse`` is the naive baseline: every kind re-reads and
    re-parses every file; it yields the same candidates, only slower.
    """
    files, kinds, max_lines, seed, quota, reparse = job
    edits = [e for e in STRUCT_EDITS if e.kind in kinds]
    counts: dict = defaultdict(Counter)
    kept: Counter = Counter()
    out: list[dict] = []
    plan = [(e, mod, path) for e in edits for mod, path in files] if reparse else [(None, mod, path) for mod, path in files]
    for edit, mod, path in plan:
        todo = [edit] if edit else edits
        if quota and all(kept[e.kind] >= quota for e in todo):
            continue
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for unit in extract_units(mod, text, max_lines):
            for e in todo:
                if quota and kept[e.kind] >= quota:
                    continue
                cand = _struct_one(e, unit, seed, counts)
                if cand:
                    kept[e.kind] += 1
                    out.append(cand)
    return out, {k: dict(v) for k, v in counts.items()}


def _struct_one(e, unit: Unit, seed: int, counts: dict) -> dict | None:
    rng = random.Random(zlib.crc32(f"{seed}:{e.kind}:{unit.module}:{unit.qualname}".encode()))
    try:
        got = e.transform(unit, rng)
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, RecursionError, StopIteration):
        got = None
        counts[e.kind]["transform_error"] += 1
    if got is None:
        return None
    counts[e.kind]["attempted"] += 1
    inp, out, info = got
    reason = check_pair(inp, out)
    if reason is None:
        try:
            ok = e.check(inp, out, info)
        except Exception:  # noqa: BLE001 - a check that cannot run is a failed check
            ok = False
        reason = None if ok else "check_failed"
    if reason:
        counts[e.kind][reason] += 1
        return None
    n_lines = inp.count("\n") + 1
    if n_lines > 80:
        counts[e.kind]["too_long"] += 1
        return None
    fields = fmt_fields({**info, "name": info.get("name", unit.qualname.split(".")[-1])})
    instruction = rng.choice(e.phrasings).format(**fields)
    origin = f"{unit.module}:{unit.qualname}"
    variant = f"{unit.node.lineno}"
    return {"kind": e.kind, "instruction": instruction, "input": inp, "output": out, "scenario": scenario_for(unit.module),
            "intent": e.intent, "behaviour_change": e.behaviour_change, "origin": origin, "verified": "structural",
            "check": info, "variant": variant, "id": _rid(e.kind, origin, variant)}


def _program_chunk(job: tuple[int, int, int, list[str]]) -> tuple[list[dict], dict]:
    seed, start, stop, kinds = job
    counts: dict = defaultdict(Counter)
    out = []
    for i in range(start, stop):
        kind, inst, reason = make_program_instance(seed, i)
        counts[kind]["attempted"] += 1
        if inst is None:
            counts[kind][reason or "rejected"] += 1
            continue
        if kind not in kinds:
            continue
        inst.update(verified="execution", program_seed=seed, program_index=i, id=_rid(kind, inst["origin"], inst["variant"], seed))
        out.append(inst)
    return out, {k: dict(v) for k, v in counts.items()}


def check_pair(inp: str, out: str) -> str | None:
    """The checks every instance passes: both sides parse, and they differ beyond whitespace."""
    try:
        ast.parse(inp), ast.parse(out)
    except SyntaxError:
        return "syntax"
    if "".join(inp.split()) == "".join(out.split()):
        return "unchanged"
    return None


def check_record(rec: dict) -> str | None:
    """Re-verify a finished record; returns None when it passes, else the reason.

    Program instances are regenerated from their seed and index, which re-executes both versions
    against the reference; structural ones re-run their kind's AST check.
    """
    meta = rec["meta"]
    reason = check_pair(rec["input"], rec["output"])
    if reason:
        return reason
    if rec["source"] != f"synth:{meta['kind']}":
        return "source"
    if meta.get("verified") == "execution":
        kind, inst, why = make_program_instance(meta["program_seed"], meta["program_index"])
        if inst is None:
            return why or "rejected"
        same = (inst["input"], inst["output"], inst["instruction"]) == (rec["input"], rec["output"], rec["instruction"])
        return None if same else "not_reproducible"
    edits = [e for e in STRUCT_BY_KIND.get(meta["kind"], []) if rec["instruction"] in _phrased(e, meta)]
    for e in edits or STRUCT_BY_KIND.get(meta["kind"], []):
        try:
            if e.check(rec["input"], rec["output"], meta["check"]):
                return None
        except Exception:  # noqa: BLE001
            continue
    return "check_failed"


def _phrased(e, meta: dict) -> list[str]:
    """Every way structural edit ``e`` can say this record's instruction, formatted as ``_struct_one`` does."""
    check = meta.get("check") or {}
    name = check.get("name", str(meta.get("origin", "")).rsplit(":", 1)[-1].split(".")[-1])
    try:
        return [p.format(**fmt_fields({**check, "name": name})) for p in e.phrasings]
    except (KeyError, IndexError, AttributeError, ValueError):
        return []


def one_phrasing(rec: dict) -> str:
    """The record's instruction said with its edit's first phrasing: the same edit of the same code.

    Why: the phrasing ablation (training mix ``one_phrasing``) trains on the same examples with one
    wording per edit instead of several, to measure what the synthesizer's phrasings are worth. Records
    not from the synthesizer, or whose phrasing cannot be traced, keep their instruction.
    """
    meta = record_meta(rec)
    if meta.get("verified") == "execution":
        _, inst, _ = make_program_instance(meta["program_seed"], meta["program_index"], first_phrasing=True)
        return inst["instruction"] if inst else rec["instruction"]
    for e in STRUCT_BY_KIND.get(meta.get("kind", ""), []):
        said = _phrased(e, meta)
        if rec["instruction"] in said:
            return said[0]
    return rec["instruction"]


def one_scenario(rec: dict) -> dict | None:
    """The record with its program written for its family's first domain: the same edit of the same
    program, in one scenario (and its names) per family instead of 4-12.

    Why: the paper's scenario ablation. Its generator writes each instruction's code for a sampled
    application scenario; ours draws a domain per program. The refactorings of real source keep theirs
    (their scenario is where the code comes from). ``None`` when the rewritten instance fails its checks.
    """
    meta = record_meta(rec)
    if meta.get("verified") != "execution":
        return {k: rec[k] for k in REWRITTEN}
    _, inst, _ = make_program_instance(meta["program_seed"], meta["program_index"], first_domain=True)
    return {k: inst[k] for k in REWRITTEN} if inst else None


REWRITTEN = ("instruction", "input", "output", "scenario")  # what an ablation's rewrite may change
REWRITES = {  # training mixes that rewrite the main run's examples (train.rewritten_split)
    "one_phrasing": lambda rec: {**{k: rec[k] for k in REWRITTEN}, "instruction": one_phrasing(rec)},
    "one_scenario": one_scenario,
}


# --------------------------------------------------------------------------- orchestration
def _pool_map(fn, jobs: list, workers: int) -> Iterator:
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    # fork: workers run only this package's pure-Python code, and it works from notebooks, scripts and stdin alike
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) as pool:
        yield from pool.imap(fn, jobs)


def _merge_counts(total: dict, part: dict) -> None:
    for k, c in part.items():
        for r, n in c.items():
            total.setdefault(k, Counter())[r] += n


def _selected_kinds(cfg) -> list[str]:
    if cfg.kinds == "all":
        return list(KINDS)
    bad = sorted(set(cfg.kinds) - set(KINDS))
    if bad:
        raise ValueError(f"generation.synth.kinds: unknown kind(s) {bad}; allowed: 'all' or any of {KINDS}")
    return list(cfg.kinds)


def synthesize(cfg, seed: int = 0, progress: bool = False) -> tuple[list[dict], dict]:
    """Build up to ``cfg.max_instances`` verified records; returns (records, per-kind counts).

    ``counts[kind]`` holds ``attempted``, ``kept`` and one entry per rejection reason.
    """
    kinds = _selected_kinds(cfg)
    prog_kinds = [k for k in kinds if k in PROGRAM_KINDS]
    struct_kinds = [k for k in kinds if k in STRUCT_BY_KIND]
    n_total = cfg.max_instances
    n_prog = round(n_total * cfg.program_share) if prog_kinds else 0
    if not struct_kinds:
        n_prog = n_total
    cap = cfg.max_per_kind or n_total
    counts: dict = {}

    # -- real source, structural kinds
    struct: list[dict] = []
    if struct_kinds and n_total - n_prog > 0:
        files = [(m, str(p)) for m, p in source_files(cfg.source_dirs)]
        rng = random.Random(f"{seed}:files")
        rng.shuffle(files)
        if cfg.max_source_files:
            files = files[: cfg.max_source_files]
        n_chunks = -(-len(files) // FILES_PER_CHUNK)
        quota = struct_quota(n_total - n_prog, len(struct_kinds), cap, n_chunks)
        jobs = [(files[i: i + FILES_PER_CHUNK], struct_kinds, cfg.max_function_lines, seed, quota, False)
                for i in range(0, len(files), FILES_PER_CHUNK)]
        it = _pool_map(_struct_chunk, jobs, cfg.workers)
        for cands, c in progress_bar(it, total=len(jobs), desc="synth: source files", disable=not progress):
            struct.extend(cands)
            _merge_counts(counts, c)

    # -- procedural programs, behaviour kinds
    programs: list[dict] = []
    if prog_kinds and n_prog > 0:
        bar = progress_bar(total=n_prog, desc="synth: programs", disable=not progress)
        per_kind: Counter = Counter()
        seen: set = set()
        start, chunk, limit = 0, PROGRAMS_PER_CHUNK, max(n_prog * 6, 600)
        while len(programs) < n_prog and start < limit:
            stops = list(range(start, min(start + chunk * max(1, cfg.workers) * 4, limit), chunk))
            jobs = [(seed, s, min(s + chunk, limit), prog_kinds) for s in stops]
            for cands, c in _pool_map(_program_chunk, jobs, cfg.workers):
                _merge_counts(counts, c)
                for inst in cands:
                    key = (inst["input"], inst["output"])
                    if len(programs) >= n_prog:
                        break
                    if key in seen:
                        counts[inst["kind"]]["duplicate"] += 1
                    elif per_kind[inst["kind"]] >= cap:
                        counts[inst["kind"]]["over_cap"] += 1
                    else:
                        seen.add(key)
                        per_kind[inst["kind"]] += 1
                        programs.append(inst)
                        bar.update(1)
            start = stops[-1] + chunk
        bar.close()

    # -- pick structural instances: round-robin over kinds so no kind swamps the rest
    chosen = _select_struct(struct, n_total - len(programs), cap, seed, counts)
    rows = programs + chosen
    records = []
    for inst in rows:
        counts.setdefault(inst["kind"], Counter())["kept"] += 1
        if inst.get("verified") == "execution":  # executable test kept, or why it was dropped (the instance stays)
            dropped = inst.pop("test_dropped", None)
            counts[inst["kind"]][f"test_dropped:{dropped}" if dropped else "with_test"] += 1
        meta = {k: v for k, v in inst.items() if k not in ("instruction", "input", "output", "scenario", "id")}
        records.append(make_record(inst["id"], inst["instruction"], inst["input"], inst["output"], inst["scenario"],
                                   f"synth:{inst['kind']}", **meta))
    random.Random(f"{seed}:order").shuffle(records)
    out_counts = {k: {r: int(n) for r, n in sorted(c.items())} for k, c in sorted(counts.items()) if k in kinds}
    for k in kinds:
        out_counts.setdefault(k, {"kept": 0})
        out_counts[k].setdefault("kept", 0)
    return records, out_counts


def struct_quota(n_struct: int, n_kinds: int, cap: int, n_chunks: int, oversample: float = 3.0) -> int:
    """Candidates per kind per chunk: enough for every kind's share (times ``oversample``, so common
    kinds can fill in for rare ones and duplicates), spread evenly over the chunks."""
    per_kind = min(cap, -(-n_struct // max(1, n_kinds))) * oversample
    return int(-(-per_kind // max(1, n_chunks))) + 1


def _select_struct(cands: list[dict], n: int, cap: int, seed: int, counts: dict) -> list[dict]:
    if n <= 0 or not cands:
        return []
    by_kind: dict[str, list[dict]] = defaultdict(list)
    seen: set = set()
    for c in sorted(cands, key=lambda c: c["id"]):
        key = (c["input"], c["output"])
        if key in seen:
            counts.setdefault(c["kind"], Counter())["duplicate"] += 1
            continue
        seen.add(key)
        by_kind[c["kind"]].append(c)
    rng = random.Random(f"{seed}:select")
    queues = {}
    for k in sorted(by_kind):
        lst = by_kind[k]
        rng.shuffle(lst)
        queues[k] = lst[:cap]
    out: list[dict] = []
    ids: set = set()
    while len(out) < n and any(queues.values()):
        for k in sorted(queues):
            if queues[k] and len(out) < n:
                c = queues[k].pop()
                if c["id"] in ids:
                    continue
                ids.add(c["id"])
                out.append(c)
    return out


def families() -> list[str]:
    """Names of the program families (for notebooks and reports)."""
    return [f.name for f in FAMILIES]
