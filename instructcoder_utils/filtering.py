"""Stage 03: from raw generated instances to a clean, deduplicated, decontaminated dataset.

The funnel, in order (every step counts what it removes, by reason):
1. validation - empty fields, refusals, input == output, instructions that are too short or have
   no verb, code that does not parse, outputs longer than the training limit (base-model tokens);
2. ROUGE-L novelty of instructions (the self-instruct rule: F > threshold against a kept one);
3. MinHash LSH near-duplicates of the input code (the paper: Jaccard > 0.75);
4. decontamination against every evaluation set (EditEval and the project's own tasks);
5. deterministic train / validation / test splits, saved as a ``datasets.DatasetDict`` and exported
   in the published InstructCoder JSONL format (``instruction``, ``input``, ``output``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .dedup import Decontaminator, load_eval_tasks, minhash_dedup
from .files import make_record, read_jsonl, write_json, write_jsonl
from .progress import bar as progress_bar
from .rouge import RougeFilter
from .stats import has_verb

SPLITS = ("train", "validation", "test")
_FENCE = re.compile(r"^```[\w+-]*\n(.*?)\n?```\s*$", re.S)


# --------------------------------------------------------------------------- 1. validation
def _parses(code: str) -> bool:
    try:
        ast.parse(code)
        return True
    except (SyntaxError, ValueError):  # ValueError: null bytes
        return False


def validation_reason(
    rec: dict[str, Any],
    refusal: re.Pattern,
    min_words: int,
    check_syntax: bool = True,
) -> str | None:
    """Why a record is invalid (None if it is fine); the first failing check wins."""
    for key in ("instruction", "input", "output"):
        if not isinstance(rec.get(key), str) or not rec[key].strip():
            return f"empty_{key}"
    instr, out = rec["instruction"], rec["output"]
    first_out_line = out.strip().split("\n", 1)[0]
    if refusal.search(instr) or refusal.search(first_out_line):
        return "refusal"
    if rec["input"].strip() == out.strip():
        return "input_equals_output"
    if len(re.findall(r"[A-Za-z]+", instr)) < min_words:
        return "instruction_too_short"
    if not has_verb(instr):
        return "instruction_no_verb"
    lang = str((rec.get("meta") or {}).get("language", "python")).lower()
    if check_syntax and lang == "python":
        if not _parses(rec["input"]):
            return "input_syntax_error"
        if not _parses(out):
            return "output_syntax_error"
    return None


def count_tokens(texts: Sequence[str], tokenizer, batch_size: int = 512) -> list[int]:
    """Token counts with a (fast) tokenizer, batched."""
    counts: list[int] = []
    for i in range(0, len(texts), batch_size):
        enc = tokenizer(list(texts[i : i + batch_size]), add_special_tokens=False)["input_ids"]
        counts.extend(len(x) for x in enc)
    return counts


def validate(
    records: list[dict[str, Any]],
    refusal_patterns: Sequence[str],
    min_words: int = 3,
    max_output_tokens: int | None = None,
    tokenizer=None,
    check_syntax: bool = True,
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """(kept, [(removed record, reason)]); the token limit is checked last, in one batched pass."""
    refusal = re.compile("|".join(f"(?:{p})" for p in refusal_patterns) or r"(?!x)x", re.I)
    kept, removed = [], []
    for rec in records:
        reason = validation_reason(rec, refusal, min_words, check_syntax)
        if reason:
            removed.append((rec, reason))
        else:
            kept.append(rec)
    if max_output_tokens and tokenizer is not None and kept:
        lengths = count_tokens([r["output"] for r in kept], tokenizer)
        ok = []
        for rec, n in zip(kept, lengths, strict=True):
            if n > max_output_tokens:
                removed.append((rec, "output_too_long"))
            else:
                ok.append(rec)
        kept = ok
    return kept, removed


# --------------------------------------------------------------------------- 2. ROUGE-L novelty
def _in_sources(source: str, sources: Sequence[str] | str) -> bool:
    if sources == "all":
        return True
    return any(source == s or source.startswith(s + ":") for s in sources)


def rouge_novelty(
    records: list[dict[str, Any]], threshold: float, sources: Sequence[str] | str = "all", progress: bool = False
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], str]]]:
    """The self-instruct rule over the pool of distinct instructions, in order. Several instances of
    one instruction (different scenarios) share its fate; records outside ``sources`` pass."""
    filt = RougeFilter(threshold)
    decided: dict[str, tuple[bool, str | None]] = {}
    kept, removed = [], []
    it = records
    if progress:
        it = progress_bar(records, desc="ROUGE-L novelty", unit="rec")
    for rec in it:
        if not _in_sources(rec.get("source", ""), sources):
            kept.append(rec)
            continue
        instr = rec["instruction"]
        if instr not in decided:
            f, near = filt.nearest(instr)
            novel = not f > threshold
            if novel:
                filt.add(instr)
            decided[instr] = (novel, near)
        novel, near = decided[instr]
        if novel:
            kept.append(rec)
        else:
            removed.append((rec, f"rouge_l>{threshold}"))
    return kept, removed


# --------------------------------------------------------------------------- 3. MinHash
def near_duplicates(records: list[dict[str, Any]], threshold: float, num_perm: int, shingle_size: int,
                    seed: int = 1, workers: int = 1, progress: bool = False):
    """(kept, removed, cluster size counts, example clusters) by MinHash LSH on the input code."""
    res = minhash_dedup([r["input"] for r in records], threshold, num_perm, shingle_size, seed,
                        workers=workers, progress=progress)
    kept = [r for r, k in zip(records, res.keep, strict=True) if k]
    removed = [(r, f"near_duplicate_of:{records[res.cluster_of[i]]['id']}")
               for i, (r, k) in enumerate(zip(records, res.keep, strict=True)) if not k]
    big = sorted((v for v in res.clusters.values() if len(v) > 1), key=len, reverse=True)[:5]
    examples = [[records[i]["id"] for i in c] for c in big]
    return kept, removed, dict(sorted(res.cluster_sizes().items())), examples


# --------------------------------------------------------------------------- 4. decontamination
def eval_sets(cfg) -> dict[str, Path]:
    """Every evaluation set that exists: EditEval (required) and the project's own tasks (optional)."""
    from .tasks import editeval_file

    sets = {"EditEval": editeval_file(cfg)}
    own = cfg.resolve_path(cfg.filtering.decontamination.own_tasks)
    if own.is_file():
        sets["own"] = own
    return sets


DECONTAMINATION_RULES = ("code_ngram", "instruction_ngram")


def decontaminate(records: list[dict[str, Any]], sets: dict[str, Path], dcfg) -> tuple[list, list, list]:
    """(kept, removed, pairs). An instance is removed when it meets either rule; ``pairs`` has one row per
    rule it met, naming the task, its set, the overlap and both instructions, so a reader can judge each."""
    dec = Decontaminator(dcfg.ngram, dcfg.instruction_ngram)
    tasks: dict[str, tuple[str, str]] = {}
    for name, path in sets.items():
        for t in load_eval_tasks(path, name):
            tasks[str(t["task_id"])] = (name, t.get("instruction", ""))
            dec.add_task(str(t["task_id"]), t.get("instruction", ""), [t.get("input", ""), t.get("output", "")])
    kept, removed, pairs = [], [], []
    for rec in records:
        m = dec.match(rec["instruction"], [rec["input"], rec["output"]])
        (cf, ct), (inf, it) = m["code"], m["instruction"]
        hits = [(rule, f, t, thr) for rule, f, t, thr in (("code_ngram", cf, ct, dcfg.threshold),
                                                          ("instruction_ngram", inf, it, dcfg.instruction_threshold))
                if t and f >= thr]
        if not hits:
            kept.append(rec)
            continue
        removed.append((rec, "contaminated_code" if hits[0][0] == "code_ngram" else "contaminated_instruction"))
        for rule, f, t, thr in hits:
            pairs.append({"id": rec["id"], "source": rec.get("source", ""), "task_id": t, "set": tasks[t][0],
                          "rule": rule, "overlap": round(f, 4), "threshold": thr, "instruction": rec["instruction"],
                          "task_instruction": tasks[t][1]})
    return kept, removed, pairs


def decontamination_summary(pairs: list[dict[str, Any]], checked: int, sets: dict[str, Path], dcfg) -> dict:
    """Instances matched per rule and per evaluation set (an instance meeting both rules counts under each,
    and once in ``instances``): how much of the data is close to each benchmark is a finding of its own."""
    by_rule = {r: {p["id"] for p in pairs if p["rule"] == r} for r in DECONTAMINATION_RULES}
    by_set = {name: {r: len({p["id"] for p in pairs if p["set"] == name and p["rule"] == r})
                     for r in DECONTAMINATION_RULES} | {"instances": len({p["id"] for p in pairs if p["set"] == name})}
              for name in sets}
    return {
        "checked": checked,
        "instances": len({p["id"] for p in pairs}),
        "rules": {"code_ngram": {"n": dcfg.ngram, "threshold": dcfg.threshold, "instances": len(by_rule["code_ngram"])},
                  "instruction_ngram": {"n": dcfg.instruction_ngram, "threshold": dcfg.instruction_threshold,
                                        "instances": len(by_rule["instruction_ngram"])}},
        "both_rules": len(by_rule["code_ngram"] & by_rule["instruction_ngram"]),
        "by_set": by_set,
        "pairs": len(pairs),
    }


def decontamination_tables(report: dict[str, Any], pairs: list[dict[str, Any]]):
    """(per rule and set, matched pairs) as DataFrames: the counts with their share of the instances that
    reached the step, and every pair with both instructions (what notebook 03 shows and writes)."""
    import pandas as pd

    dec = report.get("decontamination") or {}
    checked = max(1, dec.get("checked", 0))
    rows = []
    for name, counts in (dec.get("by_set") or {}).items():
        for rule in (*DECONTAMINATION_RULES, "instances"):
            cfg = dec["rules"].get(rule, {})
            rows.append({"set": name, "rule": "either rule" if rule == "instances" else rule,
                         "n": cfg.get("n"), "threshold": cfg.get("threshold"), "matched": counts[rule],
                         "percent of checked": round(100 * counts[rule] / checked, 2)})
    rules = pd.DataFrame(rows, columns=["set", "rule", "n", "threshold", "matched", "percent of checked"])
    cols = ["id", "task_id", "set", "rule", "overlap", "threshold", "instruction", "task_instruction"]
    return rules, pd.DataFrame(pairs, columns=cols)


# --------------------------------------------------------------------------- 5. splits and export
def split_records(records: list[dict[str, Any]], validation_fraction: float, test_fraction: float,
                  max_test: int | None, seed: int) -> dict[str, list[dict[str, Any]]]:
    """Deterministic splits: order by a seeded hash of the id; test first, then validation."""
    order = sorted(records, key=lambda r: hashlib.sha256(f"{seed}:{r['id']}".encode()).hexdigest())
    n = len(order)
    n_test = round(n * test_fraction)
    if max_test is not None:
        n_test = min(n_test, max_test)
    n_val = round(n * validation_fraction)
    if n >= 3 and n_test + n_val >= n:  # always leave something to train on
        n_val = max(0, min(n_val, n - n_test - 1))
    test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    pos = {r["id"]: i for i, r in enumerate(records)}  # each split keeps the input order
    return {k: sorted(v, key=lambda r: pos[r["id"]]) for k, v in (("train", train), ("validation", val), ("test", test))}


def to_dataset_dict(splits: dict[str, list[dict[str, Any]]]):
    """``datasets.DatasetDict`` of records; meta as a JSON string column."""
    from datasets import Dataset, DatasetDict, Features, Value

    feats = Features({k: Value("string") for k in ("id", "instruction", "input", "output", "scenario", "source", "meta")})
    out = {}
    for name, recs in splits.items():
        rows = [{
            "id": str(r["id"]), "instruction": r["instruction"], "input": r["input"], "output": r["output"],
            "scenario": str(r.get("scenario") or ""), "source": str(r.get("source") or ""),
            "meta": json.dumps(r.get("meta") or {}, ensure_ascii=False, sort_keys=True),
        } for r in recs]
        out[name] = Dataset.from_list(rows, features=feats) if rows else Dataset.from_dict(
            {k: [] for k in feats}, features=feats)
    return DatasetDict(out)


def dataset_records(ds) -> list[dict[str, Any]]:
    """Rows of a saved split back to records (meta parsed)."""
    return [{**row, "meta": json.loads(row["meta"] or "{}")} for row in ds]


def export_instructcoder(splits: dict[str, list[dict[str, Any]]], folder: Path) -> dict[str, Path]:
    """One JSONL per split in the published InstructCoder format (instruction, input, output)."""
    paths = {}
    for name, recs in splits.items():
        p = Path(folder) / f"{name}.jsonl"
        write_jsonl(p, ({"instruction": r["instruction"], "input": r["input"], "output": r["output"]} for r in recs))
        paths[name] = p
    return paths


def load_instructcoder_jsonl(path: str | Path, source: str = "instructcoder") -> list[dict[str, Any]]:
    """Records from InstructCoder-format data (``instruction``, ``input``, ``output`` per row): a
    ``.jsonl`` file, a ``.json`` file holding a list, or a folder of ``.jsonl`` files. Rows without an
    id get ``<file stem>-<line>``; extra keys go to ``meta``."""
    path = Path(path)
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise FileNotFoundError(f"{path}: no .jsonl files in this folder")
    elif path.is_file():
        files = [path]
    else:
        raise FileNotFoundError(f"{path}: not found (expected InstructCoder .jsonl / .json data)")
    out = []
    for f in files:
        if f.suffix == ".json":
            rows = json.loads(f.read_text(encoding="utf-8"))
            if not isinstance(rows, list):
                raise ValueError(f"{f}: expected a JSON list of objects with instruction, input, output")
        else:
            rows = read_jsonl(f)
        for i, row in enumerate(rows, 1):
            missing = [k for k in ("instruction", "input", "output") if not isinstance(row.get(k), str)]
            if missing:
                raise ValueError(f"{f}: row {i}: missing or non-string {', '.join(missing)} "
                                 "(InstructCoder format: instruction, input, output)")
            out.append(instructcoder_record(row, str(row.get("id", f"{f.stem}-{i}")), source, "instructcoder"))
    return out


def instructcoder_record(row: dict[str, Any], id: str, source: str, kind: str, /, **origin: Any) -> dict[str, Any]:
    """One InstructCoder-format row as a record: its own keys beyond the three fields go to ``meta`` (a row's
    ``kind`` wins over the default ``kind``), then ``origin`` (where the row came from) on top."""
    extra = {k: v for k, v in row.items() if k not in ("id", "instruction", "input", "output")}
    scenario = str(extra.pop("scenario", "") or "")
    return make_record(id, row["instruction"], row["input"], row["output"], scenario=scenario, source=source,
                       **{"kind": kind, **{k: v for k, v in extra.items() if v is not None}, **origin})


# --------------------------------------------------------------------------- the whole stage
def _step(report: dict, name: str, n_in: int, kept: list, removed: list) -> None:
    reasons = Counter(r.split(":", 1)[0] for _, r in removed)
    report["steps"].append({"step": name, "in": n_in, "removed": len(removed), "out": len(kept),
                            "by_reason": dict(reasons.most_common())})
    print(f"  {name:<18} in {n_in:>7}  removed {len(removed):>6}  out {len(kept):>7}  {dict(reasons)}")


def run_filtering(records: list[dict[str, Any]], cfg, stage_out: Path, tokenizer=None,
                  progress: bool = True) -> dict[str, Any]:
    """The whole funnel; writes dataset/, export/, removed.jsonl, decontamination.jsonl, filter_report.json."""
    fc = cfg.filtering
    stage_out = Path(stage_out)
    report: dict[str, Any] = {"input": len(records), "steps": []}
    removed_all: list[tuple[dict, str, str]] = []

    def note(step: str, removed: list) -> None:
        removed_all.extend((r, step, why) for r, why in removed)

    max_tok = fc.max_output_tokens or cfg.training.max_length
    kept, rem = validate(records, fc.refusal_patterns, fc.min_instruction_words, max_tok, tokenizer, fc.check_syntax)
    _step(report, "validation", len(records), kept, rem)
    note("validation", rem)

    n = len(kept)
    kept, rem = rouge_novelty(kept, fc.rouge_threshold, fc.rouge_sources, progress=progress)
    _step(report, "rouge_l", n, kept, rem)
    note("rouge_l", rem)

    n = len(kept)
    mh = fc.minhash
    kept, rem, sizes, examples = near_duplicates(kept, mh.threshold, mh.num_perm, mh.shingle_size, cfg.seed,
                                                 workers=fc.workers, progress=progress)
    _step(report, "minhash", n, kept, rem)
    report["minhash_cluster_sizes"] = {str(k): v for k, v in sizes.items()}
    report["minhash_largest_clusters"] = examples
    note("minhash", rem)

    matches: list[dict] = []
    if fc.decontamination.enabled:
        n = len(kept)
        sets = eval_sets(cfg)
        kept, rem, matches = decontaminate(kept, sets, fc.decontamination)
        _step(report, "decontamination", n, kept, rem)
        report["decontamination_sets"] = {k: p.name for k, p in sets.items()}
        report["decontamination"] = decontamination_summary(matches, n, sets, fc.decontamination)
        note("decontamination", rem)
    write_jsonl(stage_out / "decontamination.jsonl", matches)
    write_jsonl(stage_out / "removed.jsonl", ({"id": r["id"], "step": s, "reason": why,
                                               "instruction": r.get("instruction")} for r, s, why in removed_all))

    splits = split_records(kept, fc.validation_fraction, fc.test_fraction, fc.max_test, cfg.seed)
    to_dataset_dict(splits).save_to_disk(str(stage_out / "dataset"))
    export_instructcoder(splits, stage_out / "export")
    report["output"] = len(kept)
    report["final"] = {k: len(v) for k, v in splits.items()}
    report["max_output_tokens"] = max_tok
    write_json(stage_out / "filter_report.json", report)
    return report


def funnel_table(report: dict[str, Any]):
    """The report's steps as a DataFrame (one row per filter)."""
    import pandas as pd

    rows = [{"step": s["step"], "in": s["in"], "removed": s["removed"], "out": s["out"],
             "reasons": ", ".join(f"{k}: {v}" for k, v in s["by_reason"].items())} for s in report["steps"]]
    return pd.DataFrame(rows)


def load_stage_records(path: Path) -> list[dict[str, Any]]:
    """Stage 02's instances, checked for the record fields this stage needs."""
    recs = read_jsonl(path)
    for i, r in enumerate(recs, 1):
        for key in ("id", "instruction", "input", "output"):
            if key not in r:
                raise ValueError(f"{path}: line {i}: missing key {key!r} (records need id, instruction, input, output)")
    ids = Counter(r["id"] for r in recs)
    dup = [k for k, v in ids.items() if v > 1]
    if dup:
        raise ValueError(f"{path}: duplicate ids, e.g. {dup[:3]}")
    return recs
