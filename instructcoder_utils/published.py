"""Files other people publish (EditEval today), obtained the way a user expects: pinned, checked, cached.

A published file is named by an address pinned to a commit and by its SHA-256. ``obtain`` looks for it in
this order and returns the first copy whose checksum matches:

1. the path the profile names (``evaluation.editeval_path`` for EditEval);
2. the user cache (``$INSTRUCTCODER_CACHE``, else the platform's: ``~/.cache/instructcoder`` on Linux,
   which follows ``$XDG_CACHE_HOME``);
3. a development copy beside the checkout (``../shared/...``), so CI runs offline;
4. a download from the pinned address (an environment variable may name a mirror), written into the cache
   through a temporary file and a rename, so a partial or wrong download never looks like a finished one.

When none of these works, ``PublishedFileError`` says why in one message that names the three ways to
provide the file. It is a ``FileNotFoundError``, so the command line prints it without a traceback.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .models import cache_dir
from .progress import bar as progress_bar

CHUNK = 1 << 16


class PublishedFileError(FileNotFoundError):
    """A published file that could not be found or fetched; the message is meant for the user as it is."""


@dataclass(frozen=True)
class PublishedFile:
    """One pinned published file: where it comes from, its checksum, and where a user may point to a copy."""

    name: str            # what users call it: "EditEval"
    filename: str        # the file's own name: "edit_eval.jsonl"
    url: str             # pinned to a commit, never a branch
    sha256: str
    url_env: str         # environment variable that replaces the address (mirrors, tests)
    config_key: str      # the profile key that names a local copy
    dev_copy: Path | None = None
    licence: str = ""

    def cached(self, root: Path | None = None) -> Path:
        """Its place in the user cache: one folder per checksum, so two pinned versions never collide."""
        return (root or cache_dir()) / "published" / self.sha256[:16] / self.filename

    def address(self) -> str:
        return os.environ.get(self.url_env) or self.url


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _ways(spec: PublishedFile, cached: Path) -> str:
    mirror = (f"${spec.url_env} names a mirror; now {spec.address()}" if spec.address() != spec.url
              else f"or name a mirror in ${spec.url_env}")
    return (f"Provide {spec.name} in one of three ways: (1) set {spec.config_key} to a copy of {spec.filename} "
            f"(--set {spec.config_key}=PATH); (2) put a copy at {cached}; (3) allow the download from "
            f"{spec.url} ({mirror}). Every copy must have SHA-256 {spec.sha256}.")


def obtain(spec: PublishedFile, explicit: str | Path | None = None, cache: Path | None = None,
           timeout: float = 60.0) -> Path:
    """The path of a verified copy of ``spec``, downloading it into the cache when no copy exists."""
    cached = spec.cached(cache)
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise PublishedFileError(f"{spec.config_key}: {path} not found. {_ways(spec, cached)}")
        if sha256_of(path) != spec.sha256:
            raise PublishedFileError(f"{spec.config_key}: {path} is not the pinned {spec.name} (its SHA-256 "
                                     f"differs). {_ways(spec, cached)}")
        return path
    if cached.is_file():
        if sha256_of(cached) == spec.sha256:
            return cached
        cached.unlink()  # a cache entry that changed since it was verified is not trusted: fetch it again
    if spec.dev_copy is not None and spec.dev_copy.is_file() and sha256_of(spec.dev_copy) == spec.sha256:
        return spec.dev_copy
    try:
        download(spec.address(), cached, spec.sha256, timeout=timeout, desc=spec.name)
    except PublishedFileError as exc:
        raise PublishedFileError(f"{spec.name} is not available: {exc} {_ways(spec, cached)}") from None
    return cached


def download(url: str, target: Path, sha256: str, timeout: float = 60.0, desc: str = "download") -> Path:
    """Fetch ``url`` into ``target`` if its SHA-256 is ``sha256``; on any failure nothing is left behind.

    The bytes go to a temporary file beside ``target`` and are renamed into place only once complete and
    verified: an interrupted or wrong download cannot be mistaken for the file by a later run."""
    created = [d for d in (target.parent, *target.parent.parents) if not d.exists()]  # deepest first
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    h, got = hashlib.sha256(), 0
    try:
        with os.fdopen(fd, "wb") as fh, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with progress_bar(total=total, desc=desc, unit="B", unit_scale=True, leave=False) as pbar:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    fh.write(chunk)
                    h.update(chunk)
                    got += len(chunk)
                    pbar.update(len(chunk))
            if total is not None and got != total:
                raise PublishedFileError(f"the download from {url} stopped after {got} of {total} bytes.")
            fh.flush()
            os.fsync(fh.fileno())
        if h.hexdigest() != sha256:
            raise PublishedFileError(f"the file from {url} ({got} bytes) has SHA-256 {h.hexdigest()}, "
                                     f"not the pinned {sha256}.")
        os.replace(tmp, target)
    except PublishedFileError:
        raise
    except urllib.error.HTTPError as exc:
        raise PublishedFileError(f"{url} answered HTTP {exc.code} {exc.reason}.") from None
    except urllib.error.URLError as exc:
        raise PublishedFileError(f"{url} could not be reached ({exc.reason}).") from None
    except (http.client.HTTPException, OSError) as exc:
        raise PublishedFileError(f"the download from {url} failed after {got} bytes "
                                 f"({type(exc).__name__}: {exc}).") from None
    finally:
        _discard(Path(tmp), created)
    return target


def _discard(tmp: Path, created: list[Path]) -> None:
    """Remove a download's temporary file, and the folders it made for it that it left empty."""
    tmp.unlink(missing_ok=True)
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty: the verified file is in it
            return
