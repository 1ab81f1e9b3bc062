"""Stage 01: seed edit tasks from real commits (the paper's BigQuery + Codex step, offline by default).

Three steps, each counted so a reader sees where commits go:

1. **Mine** local git repositories into a DuckDB mirror of ``bigquery-public-data.github_repos``
   (:func:`mine_repos`). One ``git log --raw -z`` stream lists every commit with its changed files;
   blobs are read through one long-lived ``git cat-file --batch`` process, and only for commits that
   could be seeds (one regular ``.py`` file modified in place), so cost grows with candidates, not with
   history. Merges, renames, binary, non-UTF-8 and huge files are skipped and counted by reason.
2. **Select** with the one SQL file (``sql/commits.sql``) that also runs on BigQuery
   (:mod:`instructcoder_utils.bigquery`); the Python classification of step 1 predicts its rows exactly,
   which the tests check.
3. **Filter and clarify** in the spirit of CommitPackFT (:func:`filter_reason`), then turn each kept
   commit message into an imperative instruction: with an LLM when one is configured, else with a
   deterministic normalizer (:func:`normalize_instruction`).

``seeds.source: published`` adds the authors' own seed tasks (``github_seed.json`` of the release, read by
:mod:`instructcoder_utils.released`) beside whatever ``seeds.repos`` mines (``repos: []`` for theirs only).
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .files import make_record, write_json, write_jsonl
from .progress import bar as progress_bar

if TYPE_CHECKING:
    from .bigquery import MirrorWriter

ZERO_SHA = "0" * 40
REGULAR_MODES = (0o100644, 0o100755)
PROMPT_VERSION = "clarify_v1"


class SeedsError(ValueError):
    """Bad input for the seeds stage (a repository path, a configuration); the message names it."""


# =========================================================================== git repositories
def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=check)


def check_repo(path: str | Path) -> Path:
    """The repository's top-level folder, or a SeedsError naming the path and what is wrong."""
    p = Path(path).expanduser()
    if not p.exists():
        raise SeedsError(f"seeds.repos: {str(path)!r} does not exist (expected a git repository folder)")
    if not p.is_dir():
        raise SeedsError(f"seeds.repos: {str(path)!r} is not a folder (expected a git repository folder)")
    res = _git(p, "rev-parse", "--show-toplevel", check=False)
    if res.returncode == 0 and res.stdout.strip():
        return Path(res.stdout.decode().strip())
    bare = _git(p, "rev-parse", "--is-bare-repository", "--absolute-git-dir", check=False)
    lines = bare.stdout.decode().split()
    if bare.returncode == 0 and lines[:1] == ["true"]:
        return Path(lines[1])  # a bare clone or mirror: git reads it the same way
    msg = (res.stderr or bare.stderr).decode(errors="replace").strip().splitlines()
    raise SeedsError(f"seeds.repos: {str(path)!r} is not a git repository ({msg[-1] if msg else 'git failed'})")


def repo_name(top: Path) -> str:
    """``owner/name``-like label: the origin remote's last path part, else the folder name."""
    res = _git(top, "config", "--get", "remote.origin.url", check=False)
    url = res.stdout.decode(errors="replace").strip()
    if url:
        name = re.split(r"[/:]", url.rstrip("/"))[-1]
        name = name[:-4] if name.endswith(".git") else name
        if name:
            return name
    return top.name[:-4] if top.name.endswith(".git") and len(top.name) > 4 else top.name


def has_commits(top: Path) -> bool:
    return _git(top, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode == 0


_LICENSE_FILES = re.compile(r"^(licen[cs]e|copying|unlicense)([.-][\w.-]*)?$", re.I)
_LICENSE_TEXTS = (  # (key as in github_repos.licenses, all of these phrases)
    ("apache-2.0", ("apache license", "version 2.0")),
    ("mit", ("permission is hereby granted, free of charge",)),
    ("isc", ("permission to use, copy, modify, and/or distribute this software for any purpose",)),
    ("bsd-3-clause", ("redistribution and use in source and binary forms", "neither the name")),
    ("bsd-2-clause", ("redistribution and use in source and binary forms",)),
    ("lgpl-3.0", ("gnu lesser general public license", "version 3")),
    ("lgpl-2.1", ("gnu lesser general public license",)),
    ("agpl-3.0", ("gnu affero general public license",)),
    ("gpl-3.0", ("gnu general public license", "version 3")),
    ("gpl-2.0", ("gnu general public license", "version 2")),
    ("mpl-2.0", ("mozilla public license", "2.0")),
    ("unlicense", ("this is free and unencumbered software",)),
)
_PYPROJECT_LICENSE = re.compile(r'^\s*license\s*=\s*(?:\{\s*text\s*=\s*)?"([^"]+)"', re.M)


def classify_license(text: str) -> str:
    """Licence key from a licence text (keys as BigQuery's github_repos.licenses uses); 'other' if unknown."""
    t = " ".join(text.lower().split())
    for key, phrases in _LICENSE_TEXTS:
        if all(p in t for p in phrases):
            return key
    return "other"


def detect_license(top: Path, blobs: BlobReader) -> str | None:
    """Licence at HEAD from a LICENSE/COPYING file, else pyproject.toml's ``license``; None if unknown."""
    if not has_commits(top):
        return None
    listing = _git(top, "ls-tree", "-z", "HEAD").stdout.decode(errors="replace").split("\0")
    found: dict[str, str] = {}
    for entry in filter(None, listing):
        meta, name = entry.split("\t", 1)
        if meta.split()[1] == "blob":
            found[name] = meta.split()[2]
    for name, sha in sorted(found.items()):
        if _LICENSE_FILES.match(name):
            _, data = blobs.read(sha, 1_000_000)
            if data is not None:
                return classify_license(data.decode("utf-8", errors="replace"))
    if "pyproject.toml" in found:
        _, data = blobs.read(found["pyproject.toml"], 1_000_000)
        m = _PYPROJECT_LICENSE.search((data or b"").decode("utf-8", errors="replace"))
        if m:
            return m.group(1).strip().lower()
    return None


class BlobReader:
    """One ``git cat-file --batch`` process per repository: a blob costs a pipe round trip, not a fork.

    :meth:`read_many` pipelines requests (a writer thread feeds the shas while this thread reads the
    replies), so git never waits for Python between blobs and neither side can block the other.
    """

    def __init__(self, top: Path):
        self.proc = subprocess.Popen(
            ["git", "-C", str(top), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def _reply(self, max_bytes: int) -> tuple[int, bytes | None]:
        assert self.proc.stdout
        header = self.proc.stdout.readline().split()
        if len(header) < 3:
            return -1, None  # "<sha> missing"
        size = int(header[2])
        if size > max_bytes:
            left = size + 1
            while left:
                left -= len(self.proc.stdout.read(min(left, 1 << 20)))
            return size, None
        data = self.proc.stdout.read(size)
        self.proc.stdout.read(1)
        return size, data

    def read(self, sha: str, max_bytes: int) -> tuple[int, bytes | None]:
        """(size, content); content is None when the blob is over ``max_bytes`` (its bytes are discarded)."""
        return self.read_many([sha], max_bytes)[0]

    def read_many(self, shas: list[str], max_bytes: int) -> list[tuple[int, bytes | None]]:
        """:meth:`read` for many blobs in one pipelined exchange."""
        import threading

        assert self.proc.stdin
        payload = "".join(f"{s}\n" for s in shas).encode()

        def feed() -> None:
            self.proc.stdin.write(payload)
            self.proc.stdin.flush()

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        try:
            return [self._reply(max_bytes) for _ in shas]
        finally:
            writer.join()

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --------------------------------------------------------------------------- log stream
_FORMAT = "%x1e%H%x1f%T%x1f%P%x1f%an%x1f%ae%x1f%at%x1f%aI%x1f%cn%x1f%ce%x1f%ct%x1f%cI%x1f%B%x1f"
_N_FIELDS = 12


@dataclass
class Change:
    status: str
    old_mode: int
    new_mode: int
    old_sha1: str | None
    new_sha1: str | None
    old_path: str | None
    new_path: str | None


@dataclass
class Commit:
    sha: str
    tree: str
    parents: list[str]
    author: dict[str, Any]
    committer: dict[str, Any]
    message: str
    changes: list[Change] = field(default_factory=list)

    @property
    def subject(self) -> str:
        return self.message.split("\n", 1)[0].strip()


def _person(name: bytes, email: bytes, secs: bytes, iso: bytes) -> dict[str, Any]:
    t = int(secs or 0)
    try:
        off = datetime.fromisoformat(iso.decode()).utcoffset()
        tz = int(off.total_seconds() // 60) if off else 0
    except ValueError:
        tz = 0
    return {"name": name.decode(errors="replace"), "email": email.decode(errors="replace"),
            "time_sec": t, "tz_offset": tz, "date": datetime.fromtimestamp(t, tz=timezone.utc)}


def _parse_changes(raw: bytes) -> list[Change]:
    """``:old new sha sha STATUS\\0path\\0[path2\\0]`` entries of ``git log --raw -z``."""
    tokens = raw.split(b"\0")
    out: list[Change] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i].lstrip(b"\n")
        i += 1
        if not tok.startswith(b":"):
            continue
        old_mode, new_mode, old_sha, new_sha, status = tok[1:].decode().split()
        paths = [tokens[i].decode("utf-8", errors="replace")]
        i += 1
        if status[0] in "RC":
            paths.append(tokens[i].decode("utf-8", errors="replace"))
            i += 1
        old_path, new_path = (paths[0], paths[-1])
        out.append(Change(
            status=status[0], old_mode=int(old_mode, 8), new_mode=int(new_mode, 8),
            old_sha1=None if old_sha == ZERO_SHA else old_sha, new_sha1=None if new_sha == ZERO_SHA else new_sha,
            old_path=None if status[0] == "A" else old_path, new_path=None if status[0] == "D" else new_path,
        ))
    return out


def _parse_commit(rec: bytes) -> Commit:
    f = rec.split(b"\x1f", _N_FIELDS)
    if len(f) < _N_FIELDS + 1:
        f = (f + [b""] * (_N_FIELDS + 1))[: _N_FIELDS + 1]
    return Commit(
        sha=f[0].decode(), tree=f[1].decode(), parents=f[2].decode().split(),
        author=_person(f[3], f[4], f[5], f[6]), committer=_person(f[7], f[8], f[9], f[10]),
        message=f[11].decode("utf-8", errors="replace"), changes=_parse_changes(f[12]),
    )


def iter_commits(top: Path, max_commits: int) -> Iterator[Commit]:
    """Stream commits (newest first) from one ``git log`` process; never holds the whole history."""
    cmd = ["git", "-C", str(top), "-c", "core.quotepath=false", "log", "--root", "-M", "--raw", "--no-abbrev",
           "-z", "--no-color", "--encoding=UTF-8", f"--max-count={max_commits}", f"--format={_FORMAT}", "HEAD"]
    errfile = tempfile.TemporaryFile()  # a file, not a pipe: git's warnings can never block the stream
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile)
    assert proc.stdout
    buf = b""
    try:
        while chunk := proc.stdout.read1(1 << 20):
            buf += chunk
            *recs, buf = buf.split(b"\x1e")
            for rec in recs:
                if rec.strip(b"\0\n"):
                    yield _parse_commit(rec)
        if buf.strip(b"\0\n"):
            yield _parse_commit(buf)
    finally:
        proc.stdout.close()
        code = proc.wait()
        errfile.seek(0)
        err = errfile.read()
        errfile.close()
        if code not in (0, -13):
            raise SeedsError(f"git log failed in {top}: {err.decode(errors='replace').strip()}")


# --------------------------------------------------------------------------- classification
def structural_reason(c: Commit) -> str | None:
    """Why a commit cannot be a seed from its shape alone (None: one regular .py file modified in place)."""
    if len(c.parents) > 1:
        return "merge"
    if not c.parents:
        return "root_commit"
    if not c.changes:
        return "no_change"
    if len(c.changes) > 1:
        return "multi_file"
    ch = c.changes[0]
    if ch.status in "RC":
        return "rename"
    if ch.status in "AD":
        return "added_or_deleted"
    if ch.old_mode not in REGULAR_MODES or ch.new_mode not in REGULAR_MODES:
        return "not_regular_file"
    if not (ch.new_path or "").lower().endswith(".py"):
        return "not_python"
    if ch.old_sha1 == ch.new_sha1:
        return "mode_only"
    return None


def blob_row(sha: str, size: int, data: bytes | None) -> tuple[dict[str, Any], str | None]:
    """A github_repos.contents row for a blob, and why it cannot be used (too_large, binary, non_utf8)."""
    row = {"id": sha, "size": size, "content": None, "binary": False, "copies": 1}
    if data is None:
        return row, "too_large" if size >= 0 else "missing_blob"
    if b"\0" in data[:8000]:
        row["binary"] = True
        return row, "binary"
    try:
        row["content"] = data.decode("utf-8")
    except UnicodeDecodeError:
        return row, "non_utf8"
    return row, None


@dataclass
class MineResult:
    """What mining saw: per-commit decisions, reason counts and the rows the SQL is expected to return."""

    repos: list[dict[str, Any]] = field(default_factory=list)
    commits_seen: int = 0
    reasons: Counter = field(default_factory=Counter)
    decisions: dict[str, str] = field(default_factory=dict)  # commit sha -> reason or "candidate"
    expected_rows: list[dict[str, Any]] = field(default_factory=list)


def _commit_row(c: Commit, name: str) -> dict[str, Any]:
    return {
        "commit": c.sha, "tree": c.tree, "parent": c.parents, "author": c.author, "committer": c.committer,
        "subject": c.subject, "message": c.message,
        "difference": [{"old_mode": ch.old_mode, "new_mode": ch.new_mode, "old_path": ch.old_path,
                        "new_path": ch.new_path, "old_sha1": ch.old_sha1, "new_sha1": ch.new_sha1,
                        "old_repo": name, "new_repo": name} for ch in c.changes] or None,
        "difference_truncated": False, "repo_name": [name], "encoding": None,
    }


def _mine_one(top: Path, name: str, license_key: str, allowed: set[str], max_commits: int,
              max_file_bytes: int, writer: MirrorWriter, blobs: BlobReader, seen_blobs: set[str],
              result: MineResult, bar, chunk: int = 256) -> None:
    pending: list[Commit] = []
    for c in iter_commits(top, max_commits):
        result.commits_seen += 1
        bar.update(1)
        writer.add("commits", _commit_row(c, name))
        reason = structural_reason(c)
        if reason is None:
            pending.append(c)  # blobs needed: read them for a whole chunk at once
            if len(pending) >= chunk:
                _classify_blobs(pending, name, license_key, allowed, max_file_bytes, writer, blobs, seen_blobs,
                                result)
                pending = []
        else:
            result.decisions[c.sha] = reason
            result.reasons[reason] += 1
    _classify_blobs(pending, name, license_key, allowed, max_file_bytes, writer, blobs, seen_blobs, result)


def _classify_blobs(commits: list[Commit], name: str, license_key: str, allowed: set[str], max_file_bytes: int,
                    writer: MirrorWriter, blobs: BlobReader, seen_blobs: set[str], result: MineResult) -> None:
    """Blob-level reasons (too_large, binary, non_utf8), the licence, and the expected SQL rows."""
    if not commits:
        return
    shas = [sha for c in commits for sha in (c.changes[0].old_sha1, c.changes[0].new_sha1)]
    replies = iter(blobs.read_many(shas, max_file_bytes))
    for c in commits:
        ch, reason, texts = c.changes[0], None, []
        for sha in (ch.old_sha1, ch.new_sha1):
            row, why = blob_row(sha, *next(replies))
            if sha not in seen_blobs:
                seen_blobs.add(sha)
                writer.add("contents", row)
            reason = reason or why
            texts.append(row["content"])
        if reason is None and license_key not in allowed:
            reason = "license"
        if reason is None:
            result.expected_rows.append({
                "repository": name, "commit": c.sha, "subject": c.subject, "message": c.message,
                "author_name": c.author["name"], "author_email": c.author["email"], "path": ch.new_path,
                "code_before": texts[0], "code_after": texts[1], "license": license_key,
            })
        result.decisions[c.sha] = reason or "candidate"
        if reason:
            result.reasons[reason] += 1


def _head_files(top: Path, name: str, writer: MirrorWriter) -> None:
    if not has_commits(top):
        return
    for entry in filter(None, _git(top, "ls-tree", "-r", "-z", "HEAD").stdout.split(b"\0")):
        meta, path = entry.split(b"\t", 1)
        mode, _kind, sha = meta.decode().split()
        writer.add("files", {"repo_name": name, "ref": "HEAD", "path": path.decode(errors="replace"),
                             "mode": int(mode, 8), "id": sha, "symlink_target": None})


def mine_repos(paths: list[str | Path], db_path: str | Path, max_commits: int = 5000,
               max_file_bytes: int = 200_000, licenses: list[str] | None = None,
               allow_unknown_license: bool = True, progress: bool = True) -> MineResult:
    """Mine repositories into a fresh DuckDB mirror at ``db_path`` (written beside, then moved in place).

    ``max_commits`` is per repository (newest first). A repository without a recognised licence gets
    the key ``unknown``, kept when ``allow_unknown_license`` (the local default: your own code).
    """
    from .bigquery import MirrorWriter, connect_mirror

    tops = [check_repo(p) for p in paths]
    allowed = set(licenses or []) | ({"unknown"} if allow_unknown_license else set())
    db_path = Path(db_path)
    tmp = db_path.with_name(db_path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    con = connect_mirror(tmp, create=True)
    writer, result, seen_blobs, names = MirrorWriter(con), MineResult(), set(), Counter()
    try:
        for top in tops:
            name = repo_name(top)
            names[name] += 1
            name = name if names[name] == 1 else f"{name}-{names[name]}"
            blobs = BlobReader(top)
            try:
                lic = detect_license(top, blobs) or "unknown"
                writer.add("licenses", {"repo_name": name, "license": lic})
                _head_files(top, name, writer)
                total = int(_git(top, "rev-list", "--count", "HEAD").stdout or 0) if has_commits(top) else 0
                before = result.commits_seen
                with progress_bar(total=min(total, max_commits), desc=f"mining {name}", unit="commit",
                                  disable=not progress) as bar:
                    if total:
                        _mine_one(top, name, lic, allowed, max_commits, max_file_bytes, writer, blobs,
                                  seen_blobs, result, bar)
            finally:
                blobs.close()
            result.repos.append({"name": name, "path": str(top), "license": lic,
                                 "commits": result.commits_seen - before})
        writer.flush()
        con.execute("CHECKPOINT")
    finally:
        con.close()
    os.replace(tmp, db_path)
    Path(str(tmp) + ".wal").unlink(missing_ok=True)
    return result


# =========================================================================== filters (CommitPackFT spirit)
IMPERATIVE_VERBS = frozenset("""
accept adapt add address adjust align allow annotate append apply assert avoid bind break build
cache calculate call cast catch change check clarify clean cleanup clear close collapse combine comment
compare compile complete compute configure connect consolidate convert copy correct count create
deduplicate default define delete deprecate detect disable display document drop dump emit enable
encode decode enforce ensure escape evaluate exclude execute expand expose extend extract factor fetch
filter finish fix flatten format generate get guard handle hide ignore implement import improve include
increase decrease initialize init inline insert install introduce invert isolate join keep limit lint
load lock log lower make map mark match merge migrate mock modernize modify move normalize open
optimise optimize order organize output override parse pass patch polish port prefer prepare prevent
print process propagate protect prune put raise read rearrange rebuild record reduce refactor
reformat register reject reload remove rename render reorder reorganize repair replace report
require reset resolve restore restrict restructure retry return reuse revert rewrite run sanitize save
separate serialize set show simplify skip sort specify speed split standardize start stop store strip
support swap switch sync test throw tidy tighten toggle track transform trim truncate tweak unify
unlock unwrap update upgrade use validate verify wrap write yield
""".split())
_IRREGULAR = {"made": "make", "wrote": "write", "rewrote": "rewrite", "built": "build", "rebuilt": "rebuild",
              "ran": "run", "threw": "throw", "hid": "hide", "kept": "keep", "broke": "break", "got": "get"}
_NEGATIONS = {"don't", "dont", "do", "never"}
_CONVENTIONAL_VERB = {"fix": "Fix", "feat": "Add", "docs": "Document", "refactor": "Refactor", "perf": "Speed up",
                      "test": "Test", "style": "Format", "build": "Update", "ci": "Update", "chore": "Update"}

ISSUE_RE = re.compile(
    r"(?<![\w&])#\d+\b|\bGH-\d+\b|\b(?!(?:UTF|ISO|SHA|RFC|PEP)-)[A-Z][A-Z0-9]{1,9}-\d+\b"
    r"|\b(?:fix(?:es|ed)?|close[sd]?|resolve[sd]?)\s+#?\d+\b", re.I)
_TICKET_RE = re.compile(r"(?<![\w&])#\d+\b|\bGH-\d+\b|\b(?!(?:UTF|ISO|SHA|RFC|PEP)-)[A-Z][A-Z0-9]{1,9}-\d+\b")
URL_RE = re.compile(r"https?://|\bwww\.\w", re.I)
MERGE_REVERT_RE = re.compile(r"\s*(merge|revert)\b", re.I)  # matched at the start of the subject
REVERT_NOTE_RE = re.compile(r"this reverts commit", re.I)
BOT_RE = re.compile(r"\[bot\]|(?<![a-z])bot(?![a-z])|dependabot|renovate|github-actions|pre-commit-ci|"
                    r"greenkeeper|snyk|mergify|imgbot|allcontributors|semantic-release", re.I)
TOKEN_RE = re.compile(r"\w+|[^\w\s]")


def base_verb(word: str) -> str | None:
    """The base form of a commit verb ("Added" -> "add", "fixes" -> "fix", "using" -> "use"), if known."""
    w = word.lower().strip(".,:;!")
    if w in IMPERATIVE_VERBS:
        return w
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    cands: list[str] = []
    if w.endswith("ies") or w.endswith("ied"):
        cands.append(w[:-3] + "y")
    if w.endswith("es"):
        cands.append(w[:-2])
    if w.endswith("s"):
        cands.append(w[:-1])
    if w.endswith("ed"):
        cands += [w[:-2], w[:-1], w[:-3]]
    if w.endswith("ing"):
        cands += [w[:-3], w[:-3] + "e", w[:-4]]
    return next((c for c in cands if c in IMPERATIVE_VERBS), None)


def normalize_instruction(subject: str) -> str:
    """Deterministic offline clarifier: commit subject -> imperative instruction.

    Strips ``[tag]`` and conventional-commit prefixes (``fix:``, ``feat(x)!:``), ticket ids and trailing
    periods, turns the first verb into its imperative form and capitalises it.
    """
    s = (subject.strip().splitlines() or [""])[0]
    s = re.sub(r"^\s*(\[[^\]]*\]\s*)+", "", s)
    conv = re.match(r"^([a-z]+)(\([^)]*\))?!?:\s*", s, re.I)
    scope = re.match(r"^[\w./ -]{1,30}:\s+", s)
    conv_verb = None
    rest_verb = lambda m: base_verb((s[m.end():].split(" ", 1) or [""])[0])  # noqa: E731
    if conv and (conv.group(1).lower() in _CONVENTIONAL_VERB or rest_verb(conv)):
        conv_verb = _CONVENTIONAL_VERB.get(conv.group(1).lower())
        s = s[conv.end():]
    elif scope and rest_verb(scope):  # "setup.py: require six", "py3 compat: fix x"
        s = s[scope.end():]
    s = _TICKET_RE.sub("", s)
    s = re.sub(r"\(\s*\)|\[\s*\]", "", s)
    s = re.sub(r"\s+", " ", s).strip(" -:;,.")
    words = s.split(" ")
    verb = base_verb(words[0]) if words and words[0] else None
    if verb:
        words[0] = verb
    elif conv_verb and s:
        words = [conv_verb, words[0][:1].lower() + words[0][1:], *words[1:]]
    s = " ".join(words).strip()
    return s[:1].upper() + s[1:]


def code_tokens(code: str) -> int:
    return len(TOKEN_RE.findall(code))


def diff_stats(before: str, after: str) -> tuple[int, int]:
    """(lines added, lines removed) of the line diff."""
    added = removed = 0
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith("+") and not line.startswith("+++"):
            added += 1
        elif line.startswith("-") and not line.startswith("---"):
            removed += 1
    return added, removed


def unified_diff(before: str, after: str, path: str = "file.py", context: int = 3) -> str:
    return "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines(), f"a/{path}", f"b/{path}",
                                          lineterm="", n=context))


def filter_reason(row: dict[str, Any], f) -> str | None:
    """The first CommitPackFT-style rule a selected commit breaks (None: keep). ``f`` is SeedFilters.

    Message rules look at the subject line (what becomes the instruction), except issue references,
    URLs and revert notes, which are searched in the whole message. The diff ratio is the share of the
    lines of before + after that the diff touches.
    """
    subject = (row.get("subject") or "").strip()
    message = row.get("message") or ""
    author = f"{row.get('author_name') or ''} {row.get('author_email') or ''}"
    words = subject.split()
    before, after = row.get("code_before") or "", row.get("code_after") or ""
    checks = (  # lazy: the diff is computed only for commits that pass the cheap rules
        ("merge_or_revert", lambda: f.reject_merge_revert and bool(
            MERGE_REVERT_RE.match(subject) or REVERT_NOTE_RE.search(message))),
        ("bot_author", lambda: f.reject_bots and bool(BOT_RE.search(author))),
        ("message_too_short", lambda: len(subject) < f.min_message_chars),
        ("message_too_long", lambda: len(subject) > f.max_message_chars),
        ("too_few_words", lambda: len(words) < f.min_words),
        ("too_many_words", lambda: len(words) > f.max_words),
        ("issue_reference", lambda: f.reject_issue_refs and bool(ISSUE_RE.search(message))),
        ("url", lambda: f.reject_urls and bool(URL_RE.search(message))),
        ("not_imperative", lambda: f.require_imperative and not _starts_imperative(subject)),
        ("whitespace_only", lambda: "".join(before.split()) == "".join(after.split())),
        ("code_too_short", lambda: min(code_tokens(before), code_tokens(after)) < f.min_code_tokens),
        ("code_too_long", lambda: max(code_tokens(before), code_tokens(after)) > f.max_code_tokens),
        ("diff_too_large", lambda: _diff_ratio(before, after) > f.max_diff_ratio),
    )
    return next((name for name, failed in checks if failed()), None)


def _starts_imperative(subject: str) -> bool:
    words = normalize_instruction(subject).split()
    if words and words[0].lower() in _NEGATIONS:  # "Don't use X", "Do not use X", "Never call X"
        words = words[2:] if words[0].lower() == "do" and len(words) > 1 and words[1].lower() == "not" else words[1:]
    return bool(words) and base_verb(words[0]) is not None


def _diff_ratio(before: str, after: str) -> float:
    added, removed = diff_stats(before, after)
    return (added + removed) / max(1, len(before.splitlines()) + len(after.splitlines()))


# =========================================================================== clarification
def clarify_mode(cfg) -> str:
    """'llm' or 'rules' from ``seeds.clarify`` and ``llm.provider``; 'llm' without a provider is an error."""
    mode = cfg.seeds.clarify
    if mode == "auto":
        return "llm" if cfg.llm.provider != "none" else "rules"
    if mode == "llm" and cfg.llm.provider == "none":
        raise SeedsError("seeds.clarify: 'llm' needs llm.provider other than 'none' (or use 'auto' / 'rules')")
    return mode


def clarify_prompt(row: dict[str, Any], max_diff_chars: int = 6000) -> str:
    """The clarify_v1 prompt for one commit: its message and unified diff."""
    template = resources.files("instructcoder_utils").joinpath("prompts", f"{PROMPT_VERSION}.txt").read_text()
    diff = unified_diff(row["code_before"], row["code_after"], row["path"])
    if len(diff) > max_diff_chars:
        diff = diff[:max_diff_chars] + "\n... (diff truncated)"
    return template.format(message=row["message"].strip(), path=row["path"], diff=diff)


def clean_instruction(text: str) -> str:
    """First non-empty line of an LLM reply, without quotes, labels or list markers."""
    for line in (text or "").splitlines():
        line = re.sub(r"^\s*(instruction\s*:|[-*>]|\d+[.)])\s*", "", line, flags=re.I).strip().strip("\"'`")
        if line:
            return line
    return ""


def clarify_llm(rows: list[dict[str, Any]], cfg, stage_out: Path) -> list[str | None]:
    """One instruction per row from the configured LLM (cached, greedy: a rewrite, not a brainstorm);
    None where the call failed, so that seed falls back to the rules."""
    from .llm import ChatRequest, LLMClient

    client = LLMClient(cfg.llm, cache_path=stage_out / "llm_cache.sqlite")
    reqs = [ChatRequest(id=f"{r['repository']}:{r['commit']}",
                        messages=[{"role": "user", "content": clarify_prompt(r)}], prompt_version=PROMPT_VERSION,
                        temperature=0.0, max_tokens=160)
            for r in rows]
    results = client.run(reqs, desc="clarifying commit messages", parse=None)
    client.write_usage(stage_out / "usage.json")
    by_id = {res.id: res for res in results}
    out: list[str | None] = []
    for req in reqs:
        res = by_id.get(req.id)
        out.append(clean_instruction(res.text) or None if res is not None and res.ok else None)
    return out


# =========================================================================== the stage
def _module_path(path: str) -> str:
    p = path[:-3] if path.endswith(".py") else path
    return p.replace("/", ".").removesuffix(".__init__")


def seed_record(row: dict[str, Any], instruction: str, source: str) -> dict[str, Any]:
    added, removed = diff_stats(row["code_before"], row["code_after"])
    return make_record(
        id=f"seed-{row['repository']}-{row['commit'][:12]}", instruction=instruction, input=row["code_before"],
        output=row["code_after"], scenario=_module_path(row["path"]) or row["repository"], source=source,
        repo=row["repository"], commit=row["commit"], path=row["path"], license=row["license"],
        lines_added=added, lines_removed=removed, message=row["message"].strip(), author=row["author_name"],
    )


def select_rows(cfg, stage_out: Path, progress: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Step 1+2: rows of the seed query (local mirror or BigQuery) and what mining counted."""
    from . import bigquery as bq

    s = cfg.seeds
    db = stage_out / "commits.duckdb"
    info: dict[str, Any] = {"source": s.source}
    if s.source in ("git", "published"):  # published: the authors' seeds come beside what seeds.repos mines
        mined = mine_repos([cfg.resolve_path(r) for r in s.repos], db, s.max_commits, s.max_file_bytes,
                           s.bigquery.licenses, s.allow_unknown_license, progress)
        licenses = list(s.bigquery.licenses) + (["unknown"] if s.allow_unknown_license else [])
        params = bq.query_params(licenses, s.max_file_bytes, max(1, mined.commits_seen))
        rows = bq.query_duckdb(db, params)
        for repo, given in zip(mined.repos, s.repos, strict=True):
            repo["path"] = given  # as configured: no machine paths in outputs
        info.update(repos=mined.repos, commits_seen=mined.commits_seen, mining=dict(mined.reasons),
                    mined_candidates=len(mined.expected_rows))
    else:
        params = bq.query_params(s.bigquery.licenses, s.max_file_bytes, s.bigquery.limit)
        rows = bq.query_bigquery(s.bigquery, params)
        bq.store_rows(db, rows)
        info.update(repos=[], commits_seen=len(rows), mining={})
    info["query_rows"] = len(rows)
    return rows, info


def build_seeds(cfg, stage_out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run stage 01: mine/select, filter, clarify; write seeds.jsonl and stats.json; return the stats."""
    stage_out = Path(stage_out)
    rows, stats = select_rows(cfg, stage_out, progress)
    kept_rows, filt = [], Counter()
    for row in progress_bar(rows, desc="filtering commits", unit="commit", disable=not progress):
        reason = filter_reason(row, cfg.seeds.filters)
        if reason:
            filt[reason] += 1
        else:
            kept_rows.append(row)
    mode = clarify_mode(cfg)
    llm_text = clarify_llm(kept_rows, cfg, stage_out) if mode == "llm" and kept_rows else [None] * len(kept_rows)
    records = []
    for row, text in zip(kept_rows, llm_text, strict=True):
        source = "seed:llm" if text else "seed:rules"
        records.append(seed_record(row, text or normalize_instruction(row["subject"]), source))
    if cfg.seeds.source == "published":
        from .released import seed_records

        published, stats["published"] = seed_records(cfg)
        records = published + records
    write_jsonl(stage_out / "seeds.jsonl", records)
    stats.update(
        filters=dict(filt), kept=len(records), clarify_mode=mode,
        clarified=dict(Counter(r["source"] for r in records)),
        rejected=dict(Counter(stats["mining"]) + filt),
    )
    write_json(stage_out / "stats.json", stats)
    print(summary_line(stats), flush=True)
    return stats


def summary_line(stats: dict[str, Any]) -> str:
    """One line for the run log; says plainly when there are few or no seeds (later stages cope)."""
    where = ", ".join(r["name"] for r in stats.get("repos", [])) or stats["source"]
    line = (f"[01_seeds] {stats['commits_seen']} commits seen ({where}), {stats['query_rows']} selected by the SQL, "
            f"{stats['kept']} seeds kept {stats.get('clarified', {})}")
    if "published" in stats:
        line += f"; {stats['published']['rows']} of them the authors' ({stats['published']['file']})"
    if stats["kept"] < 8:
        line += ("\n[01_seeds] note: few seeds - the mined history has few single-file Python edits that pass the "
                 "filters; add repositories under seeds.repos for more. Later stages do not depend on seeds.")
    return line


def stats_table(stats: dict[str, Any]):
    """stats.json as a table of (step, reason, commits) for the notebook."""
    import pandas as pd

    rows = [("seen", "commits seen", stats["commits_seen"])]
    rows += [("mining", k, v) for k, v in sorted(stats.get("mining", {}).items(), key=lambda kv: -kv[1])]
    rows.append(("query", "rows returned by the SQL", stats["query_rows"]))
    rows += [("filters", k, v) for k, v in sorted(stats.get("filters", {}).items(), key=lambda kv: -kv[1])]
    if "published" in stats:
        rows.append(("published", f"the authors' seeds ({stats['published']['file']})", stats["published"]["rows"]))
    rows.append(("kept", "seeds", stats["kept"]))
    return pd.DataFrame(rows, columns=["step", "reason", "commits"])


def plot_stats(stats: dict[str, Any], path: str | Path, dpi: int = 120) -> Path:
    """Horizontal bars of rejections by reason plus the kept count, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(stats.get("rejected", {}).items(), key=lambda kv: kv[1]) + [("kept", stats["kept"])]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(items) + 1.2))
    ax.barh([k for k, _ in items], [v for _, v in items],
            color=["tab:gray"] * (len(items) - 1) + ["tab:green"])
    ax.set_xlabel("commits")
    title = f"Seeds: {stats['kept']} kept of {stats['commits_seen']} commits seen"
    if "published" in stats:
        title = f"Seeds: {stats['kept']} ({stats['published']['rows']} published + mined of {stats['commits_seen']} commits)"
    ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def seed_heading(rec: dict[str, Any]) -> str:
    """A seed's instruction and where it came from, as Markdown: a mined commit (repository, commit, path,
    licence, original message) or a row of the authors' release (file and row)."""
    m = rec["meta"]
    if rec["source"] == "seed:published":
        return (f"**{rec['instruction']}**  \n`{rec['source']}` · {m['dataset']} {m['file']} row {m['row']} · "
                f"+{m['lines_added']} -{m['lines_removed']}")
    return (f"**{rec['instruction']}**  \n`{rec['source']}` · {m['repo']} `{m['commit'][:10]}` `{m['path']}` · "
            f"+{m['lines_added']} -{m['lines_removed']} · licence {m['license']}  \n"
            f"original message: *{m['message'].splitlines()[0]}*")


def compare_sources(records: list[dict[str, Any]]):
    """Seeds per source side by side (the authors' published ones beside the mined ones): how many, and how
    long and how large their edits are - the mined history is a different population from the paper's."""
    import pandas as pd

    from .stats import changed_lines, edit_ratio

    rows = [{"source": r["source"], "instruction words": len(r["instruction"].split()),
             "input lines": len(r["input"].splitlines()), "changed lines": changed_lines(r["input"], r["output"]),
             "edit ratio": edit_ratio(r["input"], r["output"])} for r in records]
    cols = ["source", "seeds", "instruction words", "input lines", "changed lines", "edit ratio"]
    if not rows:
        return pd.DataFrame(columns=cols)
    df = pd.DataFrame(rows)
    table = df.groupby("source").mean().round(2)
    table.insert(0, "seeds", df.groupby("source").size())
    return table.reset_index()[cols]
