"""Small file helpers every stage uses: JSONL and JSON, written atomically so a crash never
leaves a half-written file that a re-run would mistake for a finished one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

RECORD_FIELDS = ("id", "instruction", "input", "output", "scenario", "source", "meta")


def make_record(
    id: str, instruction: str, input: str, output: str, scenario: str = "", source: str = "", **meta: Any
) -> dict[str, Any]:
    """The one record type shared by stages 01-03: ``{id, instruction, input, output, scenario, source, meta}``."""
    return {
        "id": id,
        "instruction": instruction,
        "input": input,
        "output": output,
        "scenario": scenario,
        "source": source,
        "meta": meta,
    }


def record_meta(rec: dict[str, Any]) -> dict[str, Any]:
    """A record's ``meta``: a dict as ``make_record`` builds it, or the JSON string a stage-03 dataset
    stores (empty: no meta). Malformed JSON raises ``ValueError``, for the caller to judge."""
    meta = rec.get("meta") or {}
    if isinstance(meta, str):
        return json.loads(meta) if meta.strip() else {}
    return meta


def iter_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (did the stage that writes it run?)")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    return list(iter_jsonl(path))


def _atomic_write(path: Path, write, mode: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write all rows at once (atomically); returns the number written."""
    n = 0

    def _w(fh):
        nonlocal n
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1

    _atomic_write(Path(path), _w)
    return n


def write_json(path: str | Path, obj: Any) -> None:
    _atomic_write(Path(path), lambda fh: json.dump(obj, fh, indent=2, ensure_ascii=False, default=str))


def write_text(path: str | Path, text: str, mode: int | None = None) -> None:
    """Replace a text file in one step; ``mode`` keeps the permission bits of the file it replaces (a
    user's source file edited by ``instructcoder edit`` stays executable if it was)."""
    _atomic_write(Path(path), lambda fh: fh.write(text), mode)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (did the stage that writes it run?)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_optional_json(path: str | Path) -> Any | None:
    """A JSON file a stage may not have written (an optional part of the study): None when absent."""
    try:
        return read_json(path)
    except FileNotFoundError:
        return None
