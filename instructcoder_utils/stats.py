"""Dataset statistics as the paper reports them (Table 1 and the distribution figures).

Used by stage 03 on the filtered dataset and again by stage 06. Verbs and their objects are found
offline by rules, not a parser: the first word of the instruction (or the first word after a
leading "please") that is in a verb lexicon, reduced to its base form, and the first following word
that is not a determiner, pronoun, adjective-ish filler or preposition. That is crude next to the
paper's parser but needs no model or download, and the lexicon is listed here for anyone to extend.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The paper's Table 1 (its 114,239 instances; tokens counted with LLaMA's tokenizer) and its edit statistics:
# the one place these figures live (stage 03 sets them beside this run's, stage 06 reads them via report).
PAPER_INSTANCES = 114_239
PAPER_TABLE1 = {"instruction": 21.85, "input": 172.03, "output": 248.43, "changed lines": 11.9, "edit ratio": 0.52}

VERBS = set("""
accept add adjust align allow alter append apply assert assign avoid build bump cache calculate call catch
change check clean clear close collapse combine compare compute configure consolidate convert copy correct
count create debug decode decorate define delete deprecate detect disable display document drop edit
eliminate enable encapsulate encode enforce ensure escape evaluate expand expose extend extract filter find
fix flatten format generate get group guard handle hide ignore implement import improve include increase
incorporate initialize inject inline insert integrate introduce invert iterate join keep limit load log
make map mark merge migrate modify move normalize optimize override pad parallelize parameterize parse pass
patch preserve prevent print process raise read recompute reduce refactor remove rename reorder reorganize
replace reset resize restore restructure restrict retry return reverse rewrite round run sanitize save
scale search separate set show simplify skip sort split standardize store strip substitute support swap
switch throw time tokenize track transform trim truncate turn tweak unify unpack update upgrade use
utilize validate vectorize verify wrap write yield give lowercase uppercase annotate unroll reject
distinguish match treat memoize capitalize shorten lengthen default declare emit encrypt hash batch
stream sum multiply divide subtract chunk dedupe deduplicate inherit instantiate lock tidy polish
let tolerate exclude provide express permit describe explain rework recurse shift pick choose collect
attach detach register emit prefer ignore require accumulate aggregate slice reuse
""".split())
IRREGULAR = {"made": "make", "wrote": "write", "written": "write", "ran": "run", "threw": "throw",
             "kept": "keep", "found": "find", "built": "build", "split": "split", "set": "set"}
SKIP_OBJECT = set("""
a an the this that these those its it their his her my our your all any each every some new existing
current given following old other same certain specific additional extra simple custom proper appropriate
to for of in on with from into by at as and or so that which when if instead also only just more
please then there here them they code
""".split())


def base_verb(word: str) -> str | None:
    """Base form of a verb in the lexicon (adds, added, adding -> add), else None."""
    w = word.lower()
    if w in VERBS:
        return w
    if w in IRREGULAR:
        return IRREGULAR[w]
    for suffix, repl in (("ies", "y"), ("ied", "y"), ("ing", ""), ("ing", "e"), ("ed", ""), ("ed", "e"),
                         ("es", ""), ("s", "")):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            stem = w[: -len(suffix)] + repl
            if stem in VERBS:
                return stem
            if suffix in ("ing", "ed") and len(stem) > 2 and stem[-1] == stem[-2] and stem[:-1] in VERBS:
                return stem[:-1]  # swapping -> swap
    return None


MODALS = {"should", "must", "shall", "needs", "need", "could", "would", "will", "can"}


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z][A-Za-z_']*", text)


def has_verb(instruction: str) -> bool:
    """Does the instruction contain a known verb (a crude 'is this an instruction' test)."""
    return any(base_verb(w) or w.lower() in MODALS for w in _words(instruction))


def verb_object(instruction: str) -> tuple[str | None, str | None]:
    """(verb, object) of the instruction's first sentence by rules; (None, None) if no verb leads."""
    words = _words(instruction.split("\n", 1)[0])
    i = 0
    while i < len(words) and words[i].lower() in ("please", "now", "also", "then", "kindly"):
        i += 1
    verb = base_verb(words[i]) if i < len(words) else None
    if verb is None:  # allow a short lead-in ("In foo, add ..."): the first verb within 6 words
        for j in range(i, min(len(words), i + 6)):
            verb = base_verb(words[j])
            if verb:
                i = j
                break
    if verb is None:
        return None, None
    for w in words[i + 1 :]:
        lw = w.lower().strip("'")
        if lw in SKIP_OBJECT or base_verb(lw) == verb or len(lw) < 2:
            continue
        if "_" in w or re.search(r"[a-z][A-Z]", w):  # a code identifier, not a noun
            return verb, "<name>"
        return verb, re.sub(r"(?<=[a-z]{3})s$", "", lw) if not lw.endswith("ss") else lw
    return verb, None


# --------------------------------------------------------------------------- per-record measures
def edit_ratio(inp: str, out: str) -> float:
    """r = |I u O \\ I n O| / |I u O| over the sets of (stripped, non-empty) lines."""
    i = {ln.strip() for ln in inp.splitlines() if ln.strip()}
    o = {ln.strip() for ln in out.splitlines() if ln.strip()}
    union = i | o
    return len(union - (i & o)) / len(union) if union else 0.0


def changed_lines(inp: str, out: str) -> int:
    """Lines added plus lines removed (as ``git diff --numstat`` counts them)."""
    n = 0
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, inp.splitlines(), out.splitlines(),
                                                       autojunk=False).get_opcodes():
        if tag != "equal":
            n += (i2 - i1) + (j2 - j1)
    return n


def _kind(rec: dict[str, Any]) -> str:
    meta = rec.get("meta") or {}
    return str(meta.get("kind") or meta.get("intent") or "unknown")


def _frame(records: Sequence[dict[str, Any]], tokenizer=None):
    import pandas as pd

    from .filtering import count_tokens

    df = pd.DataFrame({
        "instruction": [r["instruction"] for r in records],
        "input": [r["input"] for r in records],
        "output": [r["output"] for r in records],
        "scenario": [str(r.get("scenario") or "unknown") for r in records],
        # the origin before the colon ("synth:rename_function" is the synthesizer's): kinds are counted apart
        "source": [str(r.get("source") or "unknown").split(":")[0] for r in records],
        "kind": [_kind(r) for r in records],
        "behaviour_change": [bool((r.get("meta") or {}).get("behaviour_change", False)) for r in records],
    })
    for col in ("instruction", "input", "output"):
        if tokenizer is not None and len(df):
            df[f"{col}_tokens"] = count_tokens(df[col].tolist(), tokenizer)
        else:
            df[f"{col}_tokens"] = df[col].str.split().str.len()
    df["edit_ratio"] = [edit_ratio(a, b) for a, b in zip(df["input"], df["output"], strict=True)]
    df["changed_lines"] = [changed_lines(a, b) for a, b in zip(df["input"], df["output"], strict=True)]
    vo = [verb_object(t) for t in df["instruction"]]
    df["verb"] = [v or "(none)" for v, _ in vo]
    df["object"] = [o or "(none)" for _, o in vo]
    return df


# --------------------------------------------------------------------------- tables
def length_table(df):
    """Table 1: tokens of instruction / input / output - mean and quartiles."""
    import pandas as pd

    rows = []
    for col in ("instruction", "input", "output"):
        s = df[f"{col}_tokens"]
        rows.append({"field": col, "mean": round(float(s.mean()), 1) if len(s) else 0.0,
                     "q25": float(s.quantile(0.25)) if len(s) else 0.0,
                     "median": float(s.median()) if len(s) else 0.0,
                     "q75": float(s.quantile(0.75)) if len(s) else 0.0,
                     "max": int(s.max()) if len(s) else 0})
    rows.append({"field": "changed lines", "mean": round(float(df["changed_lines"].mean()), 1) if len(df) else 0.0,
                 "q25": float(df["changed_lines"].quantile(0.25)) if len(df) else 0.0,
                 "median": float(df["changed_lines"].median()) if len(df) else 0.0,
                 "q75": float(df["changed_lines"].quantile(0.75)) if len(df) else 0.0,
                 "max": int(df["changed_lines"].max()) if len(df) else 0})
    rows.append({"field": "edit ratio", "mean": round(float(df["edit_ratio"].mean()), 3) if len(df) else 0.0,
                 "q25": round(float(df["edit_ratio"].quantile(0.25)), 3) if len(df) else 0.0,
                 "median": round(float(df["edit_ratio"].median()), 3) if len(df) else 0.0,
                 "q75": round(float(df["edit_ratio"].quantile(0.75)), 3) if len(df) else 0.0,
                 "max": round(float(df["edit_ratio"].max()), 3) if len(df) else 0.0})
    return pd.DataFrame(rows)


def paper_table1(lengths, instances: int, read: int | None = None):
    """This run's Table 1 means beside the paper's: one row per measure, with the instance counts on top.

    ``lengths`` is ``length_table``'s output (means over the split it was computed on), ``instances`` what
    survived the funnel, ``read`` what entered it. The paper counts tokens with LLaMA's tokenizer, this run
    with its base model's, so the token rows compare sizes, not exact figures."""
    import pandas as pd

    rows = [{"measure": "instances after filtering", "this run": instances, "paper": PAPER_INSTANCES}]
    if read is not None:
        rows.insert(0, {"measure": "instances read", "this run": read, "paper": None})
    means = dict(zip(lengths["field"], lengths["mean"], strict=True))
    for field, paper in PAPER_TABLE1.items():
        unit = "" if field in ("changed lines", "edit ratio") else " tokens"
        rows.append({"measure": f"mean {field}{unit}", "this run": means.get(field), "paper": paper})
    return pd.DataFrame(rows, columns=["measure", "this run", "paper"])


def count_table(df, column: str, top: int | None = None):
    """Counts and shares of a categorical column (scenario, kind, source, verb)."""
    import pandas as pd

    c = df[column].value_counts()
    if top:
        c = c.head(top)
    total = max(1, len(df))
    return pd.DataFrame({column: c.index, "count": c.values, "percent": (100 * c.values / total).round(1)})


def verb_object_table(df, top_verbs: int = 20, top_objects: int = 4):
    """Top verbs and, for each, its most frequent objects (the paper's verb-noun sunburst as rows)."""
    import pandas as pd

    rows = []
    for verb, n in df["verb"].value_counts().head(top_verbs).items():
        objs = df.loc[df["verb"] == verb, "object"].value_counts().head(top_objects)
        for obj, m in objs.items():
            rows.append({"verb": verb, "verb_count": int(n), "object": obj, "count": int(m)})
    return pd.DataFrame(rows, columns=["verb", "verb_count", "object", "count"])


def write_table(df, folder: Path, name: str) -> tuple[Path, Path]:
    """CSV + Markdown of one table."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    csv, md = folder / f"{name}.csv", folder / f"{name}.md"
    df.to_csv(csv, index=False)
    md.write_text(df.to_markdown(index=False) + "\n", encoding="utf-8")
    return csv, md


# --------------------------------------------------------------------------- figures
def _save(fig, folder: Path, name: str, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.png"
    fig.tight_layout()
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p


def _bar(table, column: str, title: str, folder: Path, name: str, dpi: int) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(table) + 1)))
    ax.barh(table[column].astype(str)[::-1], table["count"][::-1], color="#4c72b0")
    ax.set_xlabel("instances")
    ax.set_title(title)
    return _save(fig, folder, name, dpi)


def verb_object_figure(vo, folder: Path, dpi: int = 120, name: str = "verb_object") -> Path:
    """Nested bars: each verb's total, split into its top objects (the rest grey)."""
    import matplotlib.pyplot as plt

    verbs = list(dict.fromkeys(vo["verb"]))
    fig, ax = plt.subplots(figsize=(8, max(3, 0.35 * len(verbs) + 1)))
    cmap = plt.get_cmap("tab20")
    for y, verb in enumerate(reversed(verbs)):
        sub = vo[vo["verb"] == verb]
        total = int(sub["verb_count"].iloc[0])
        ax.barh(y, total, color="#dddddd", edgecolor="none")
        left = 0
        for k, (_, row) in enumerate(sub.iterrows()):
            ax.barh(y, row["count"], left=left, color=cmap(k % 20), edgecolor="white", height=0.6)
            if row["count"] >= 0.08 * max(1, vo["verb_count"].max()):
                ax.text(left + row["count"] / 2, y, str(row["object"])[:12], ha="center", va="center", fontsize=7)
            left += row["count"]
    ax.set_yticks(range(len(verbs)))
    ax.set_yticklabels(list(reversed(verbs)))
    ax.set_xlabel("instructions (grey: other objects)")
    ax.set_title("Top first verbs and their objects")
    return _save(fig, folder, name, dpi)


def histograms(df, folder: Path, dpi: int = 120) -> list[Path]:
    """Token length histograms, changed-lines histogram and edit-ratio histogram."""
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, col in zip(axes, ("instruction", "input", "output"), strict=True):
        ax.hist(df[f"{col}_tokens"], bins=30, color="#4c72b0")
        ax.set_title(f"{col} length")
        ax.set_xlabel("tokens")
    paths.append(_save(fig, folder, "lengths", dpi))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    axes[0].hist(df["changed_lines"].clip(upper=60), bins=30, color="#dd8452")
    axes[0].set_title(f"changed lines (mean {df['changed_lines'].mean():.1f}; clipped at 60)")
    axes[1].hist(df["edit_ratio"], bins=20, range=(0, 1), color="#55a868")
    axes[1].set_title(f"edit ratio r (mean {df['edit_ratio'].mean():.2f})")
    paths.append(_save(fig, folder, "edits", dpi))
    return paths


def describe(records: Sequence[dict[str, Any]], tables_dir: Path, figures_dir: Path, tokenizer=None,
             top_verbs: int = 20, dpi: int = 120, prefix: str = "") -> dict[str, Any]:
    """Every table and figure of the dataset; returns {'tables': {name: DataFrame}, 'figures': [paths]}."""
    df = _frame(records, tokenizer)
    tables = {
        "lengths": length_table(df),
        "scenarios": count_table(df, "scenario", top=25),
        "kinds": count_table(df, "kind"),
        "sources": count_table(df, "source"),
        "verbs": count_table(df, "verb", top=top_verbs),
        "verb_objects": verb_object_table(df, top_verbs),
    }
    for name, t in tables.items():
        write_table(t, tables_dir, prefix + name)
    figures = histograms(df, figures_dir, dpi) if len(df) else []
    if len(df):
        figures.append(_bar(tables["scenarios"], "scenario", "Scenarios (top 25)", figures_dir, prefix + "scenarios", dpi))
        figures.append(_bar(tables["kinds"], "kind", "Edit kinds / intents", figures_dir, prefix + "kinds", dpi))
        if len(tables["sources"]) > 1:  # one source (the offline path) would only repeat the kinds figure
            figures.append(_bar(tables["sources"], "source", "Sources", figures_dir, prefix + "sources", dpi))
        if len(tables["verb_objects"]):
            figures.append(verb_object_figure(tables["verb_objects"], figures_dir, dpi, prefix + "verb_object"))
    return {"tables": tables, "figures": figures, "frame": df}
