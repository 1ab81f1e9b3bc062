"""Procedural programs and behaviour-changing edits, verified by execution.

Why: structural-only edits (renames, docstrings) taught the tiny model to copy its input. Here every
instance comes from a *program family*: a small generator that renders varied, self-contained Python
(different names, domains, styles, sizes) from a set of features, plus a plain-Python *reference* of
what that code must compute for any feature set. An edit flips features (handle the empty list,
ignore case, include the boundary, return counts instead of items, fix an off-by-one...). Both the
old and the new code are executed on generated inputs and must match their references exactly; the
behaviour must change where the edit says so (and only there), or stay the same for a refactoring.

Each instance also carries ``test``: an EditEval-style ``check()`` that replays the verification calls
against the outputs of the reference output (``build_test``), so the test split is scored by execution.
"""

from __future__ import annotations

import builtins
import functools
import math
import pickle
import random
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

Feats = dict[str, Any]
Call = tuple[tuple, dict]


# --------------------------------------------------------------------------- small helpers
class Lines:
    """Indentation-aware line builder so renderers read like the code they emit."""

    def __init__(self) -> None:
        self.out: list[str] = []

    def __call__(self, depth: int, text: str) -> None:
        self.out.append("    " * depth + text)

    def code(self) -> str:
        return "\n".join(self.out) + "\n"


@dataclass
class Edit:
    """One behaviour (or refactoring) edit of a family: which features it flips and how to say it."""

    kind: str
    intent: str
    applies: Callable[[Feats], bool]
    apply: Callable[[Feats, random.Random], Feats]
    phrasings: list[str]
    behaviour_change: bool = True
    extra: Callable[[dict, Feats, Feats], dict] = field(default=lambda names, old, new: {})
    weight: float = 1.0  # relative chance of being picked among the edits that apply


def _set(**kv: Any) -> Callable[[Feats, random.Random], Feats]:
    return lambda f, rng: {**f, **kv}


class Family:
    """Base class: subclasses define names, features, rendering, reference semantics and inputs."""

    name = ""
    domains: list[tuple] = []
    edits: list[Edit] = []

    def names(self, rng: random.Random) -> dict:
        raise NotImplementedError

    def base(self, rng: random.Random) -> Feats:
        raise NotImplementedError

    def render(self, n: dict, f: Feats) -> str:
        raise NotImplementedError

    def ref(self, n: dict, f: Feats) -> Callable:
        raise NotImplementedError

    def params(self, n: dict, f: Feats) -> set[str]:
        """Keyword arguments this version accepts beyond the positional ones."""
        return set()

    def inputs(self, rng: random.Random, n: dict, old: Feats, new: Feats) -> list[Call]:
        raise NotImplementedError

    def callable(self, n: dict, f: Feats, namespace: dict) -> Callable:
        return namespace[n["fn"]]

    def driver(self, n: dict) -> list[str]:
        """Body of the test's ``_ic_call(args, kwargs)``: the source form of ``callable``."""
        return [f"return {n['fn']}(*args, **kwargs)"]


def _pick(rng: random.Random, *options: Any) -> Any:
    return rng.choice(options)


def _chance(rng: random.Random, p: float) -> bool:
    return rng.random() < p


# --------------------------------------------------------------------------- A: numeric filter
class NumericFilter(Family):
    name = "numeric_filter"
    domains = [
        ("sensor monitoring", "readings", "reading", "limit"),
        ("finance", "amounts", "amount", "minimum"),
        ("e-commerce", "prices", "price", "budget"),
        ("education", "scores", "score", "cutoff"),
        ("healthcare", "heart_rates", "rate", "threshold"),
        ("logistics", "weights", "weight", "max_weight"),
        ("gaming", "points", "p", "bar"),
        ("weather", "temperatures", "temp", "level"),
        ("web analytics", "latencies", "ms", "slo"),
        ("sports", "lap_times", "lap", "target"),
        ("inventory management", "stock_levels", "qty", "reorder_point"),
        ("energy", "usage", "kwh", "cap"),
    ]

    def names(self, rng):
        scen, items, item, thr = rng.choice(self.domains)
        verb = _pick(rng, "filter", "select", "collect", "keep", "find", "get", "pick")
        return {"scenario": scen, "items": items, "item": item, "thr": thr, "fn": f"{verb}_{items}",
                "limit": rng.choice([x for x in ("limit", "max_items", "top", "max_results") if x != thr]),
                "res": _pick(rng, "result", "selected", "matches", "kept", "out")}

    def base(self, rng):
        return {"cmp": _pick(rng, ">", ">=", "<", "<="), "style": _pick(rng, "loop", "loop", "comp"),
                "skip_none": _chance(rng, 0.2), "unique": _chance(rng, 0.15),
                "sort": _pick(rng, None, None, None, "asc", "desc"), "ret": _pick(rng, "list", "list", "list", "count", "sum"),
                "validate": _chance(rng, 0.15), "empty_raise": False, "limit": False,
                "bug": _chance(rng, 0.15), "cap": False}

    def params(self, n, f):
        return {n["limit"]} if f["limit"] else set()

    def render(self, n, f):
        L, it, its, thr, res = Lines(), n["item"], n["items"], n["thr"], n["res"]
        sig = f"def {n['fn']}({its}, {thr}" + (f", {n['limit']}=None" if f["limit"] else "") + "):"
        L(0, sig)
        if f["validate"]:
            L(1, f"if {thr} < 0:")
            L(2, f'raise ValueError("{thr} must be non-negative")')
        if f["empty_raise"]:
            L(1, f"if not {its}:")
            L(2, f'raise ValueError("{its} must not be empty")')
        seq = f"{its}[1:]" if f["bug"] else its
        val = f"min({it}, {f['cap']})" if f["cap"] is not False else it
        if f["style"] == "comp":
            cond = (f"{it} is not None and " if f["skip_none"] else "") + f"{it} {f['cmp']} {thr}"
            L(1, f"{res} = [{val} for {it} in {seq} if {cond}]")
        else:
            L(1, f"{res} = []")
            L(1, f"for {it} in {seq}:")
            if f["skip_none"]:
                L(2, f"if {it} is None:")
                L(3, "continue")
            L(2, f"if {it} {f['cmp']} {thr}:")
            L(3, f"{res}.append({val})")
        if f["unique"]:
            L(1, f"{res} = list(dict.fromkeys({res}))")
        if f["sort"]:
            L(1, f"{res}.sort(reverse=True)" if f["sort"] == "desc" else f"{res}.sort()")
        if f["limit"]:
            L(1, f"if {n['limit']} is not None:")
            L(2, f"{res} = {res}[:{n['limit']}]")
        L(1, {"list": f"return {res}", "count": f"return len({res})", "sum": f"return sum({res})"}[f["ret"]])
        return L.code()

    def ref(self, n, f):
        import operator

        op = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[f["cmp"]]

        def run(items, thr, **kw):
            if f["validate"] and thr < 0:
                raise ValueError
            if f["empty_raise"] and not items:
                raise ValueError
            out = []
            for v in items[1:] if f["bug"] else items:
                if v is None and f["skip_none"]:
                    continue
                if v is None:
                    raise TypeError
                if op(v, thr):
                    out.append(min(v, f["cap"]) if f["cap"] is not False else v)
            if f["unique"]:
                out = list(dict.fromkeys(out))
            if f["sort"]:
                out.sort(reverse=f["sort"] == "desc")
            lim = kw.get(n["limit"])
            if f["limit"] and lim is not None:
                out = out[:lim]
            return {"list": out, "count": len(out), "sum": sum(out)}[f["ret"]]

        return run

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(([], 3), {})]
        nones = old["skip_none"] or new["skip_none"]
        for _ in range(14):
            thr = rng.randint(-2 if (old["validate"] or new["validate"]) else 0, 12)
            xs = [rng.randint(0, 15) for _ in range(rng.randint(1, 8))]
            if _chance(rng, 0.6):
                xs.insert(rng.randrange(len(xs) + 1), thr)
            if _chance(rng, 0.4):
                xs.append(rng.choice(xs))
            if nones and _chance(rng, 0.5):
                xs.insert(rng.randrange(len(xs) + 1), None)
            calls.append(((xs, thr), {}))
            if new["limit"] and _chance(rng, 0.5):
                calls.append(((xs, thr), {n["limit"]: rng.randint(0, 3)}))
        return calls


def _flip_strict(c: str) -> str:
    return {">": ">=", ">=": ">", "<": "<=", "<=": "<"}[c]


def _flip_dir(c: str) -> str:
    return {">": "<=", ">=": "<", "<": ">=", "<=": ">"}[c]


_CMP_WORDS = {">": "greater than", ">=": "at least", "<": "less than", "<=": "at most"}

NumericFilter.edits = [
    Edit("change_boundary", "bug fix", lambda f: f["cmp"] in (">", "<"), lambda f, r: {**f, "cmp": _flip_strict(f["cmp"])},
         ["Values exactly equal to `{thr}` should be kept too; update `{fn}`.",
          "Make the comparison in `{fn}` inclusive so a {item} equal to `{thr}` is included.",
          "Include the boundary: `{fn}` currently drops {items} that equal `{thr}`.",
          "Change `{fn}` to use a non-strict comparison against `{thr}`.",
          "Fix the boundary condition in {fn}: {item} == {thr} must count as a match."]),
    Edit("change_boundary", "bug fix", lambda f: f["cmp"] in (">=", "<="), lambda f, r: {**f, "cmp": _flip_strict(f["cmp"])},
         ["{items} equal to `{thr}` should no longer be returned by `{fn}`.",
          "Make the comparison in `{fn}` strict so that a {item} equal to `{thr}` is excluded.",
          "Exclude the boundary value `{thr}` itself in {fn}.",
          "Change `{fn}` so only {items} strictly {word} `{thr}` are kept."],
         extra=lambda n, o, nw: {"word": "above" if o["cmp"] == ">=" else "below"}),
    Edit("invert_condition", "logic change", lambda f: True, lambda f, r: {**f, "cmp": _flip_dir(f["cmp"])},
         ["Invert the filter in `{fn}`: keep the {items} it currently throws away.",
          "Reverse the condition so `{fn}` returns {items} that are {word} `{thr}` instead.",
          "Flip the test in {fn}; we now need the {items} {word} {thr}.",
          "Swap the selection logic of `{fn}` to return the complement of what it returns now."],
         extra=lambda n, o, nw: {"word": _CMP_WORDS[nw["cmp"]]}),
    Edit("sort_result", "add feature", lambda f: not f["sort"] and f["ret"] == "list", lambda f, r: {**f, "sort": r.choice(["asc", "desc"])},
         ["Return the {items} from `{fn}` sorted in {order} order.",
          "Sort the output of {fn} ({order}).",
          "Make `{fn}` give back its results ordered {order}.",
          "Have `{fn}` sort the selected {items} in {order} order before returning them."],
         extra=lambda n, o, nw: {"order": {"asc": "ascending", "desc": "descending"}[nw["sort"]]}),
    Edit("dedupe_result", "add feature", lambda f: not f["unique"], _set(unique=True),
         ["Drop duplicate {items} from the result of `{fn}`, keeping the first occurrence.",
          "Make `{fn}` ignore repeated values so each {item} is counted once.",
          "Remove duplicates in {fn} while preserving the original order.",
          "Ensure that `{fn}` only considers distinct {items}."]),
    Edit("change_return_type", "change output", lambda f: f["ret"] == "list" and not f["limit"], lambda f, r: {**f, "ret": r.choice(["count", "sum"])},
         ["Instead of the list, return {what} from `{fn}`.",
          "Change `{fn}` to return {what} rather than the matching {items}.",
          "Return {what} in {fn}; callers no longer need the list itself.",
          "Rework `{fn}` so its return value is {what}."],
         extra=lambda n, o, nw: {"what": {"count": "how many " + n["items"] + " match",
                                          "sum": "the total of the matching " + n["items"]}[nw["ret"]]}),
    Edit("skip_none", "robustness", lambda f: not f["skip_none"], _set(skip_none=True),
         ["Skip `None` entries in `{items}` instead of crashing.",
          "Make `{fn}` tolerate missing values (None) in the input by ignoring them.",
          "Ignore None values in {fn}; they currently raise a TypeError.",
          "Let `{fn}` handle lists that contain None by leaving those entries out."]),
    Edit("raise_on_invalid", "input validation", lambda f: not f["validate"], _set(validate=True),
         ["Raise a ValueError when `{thr}` is negative.",
          "Validate `{thr}` in `{fn}`: negative values are not allowed and should raise ValueError.",
          "Add a guard to {fn} that rejects a negative {thr} with a ValueError.",
          "Make `{fn}` fail fast with ValueError if it is given a {thr} below zero."]),
    Edit("handle_empty", "input validation", lambda f: not f["empty_raise"], _set(empty_raise=True),
         ["Raise ValueError if `{items}` is empty.",
          "An empty `{items}` list is a caller error; make `{fn}` raise a ValueError for it.",
          "Reject empty input in {fn} with a ValueError.",
          "Make `{fn}` complain (ValueError) when called with no {items}."]),
    Edit("add_parameter", "add feature", lambda f: not f["limit"] and f["ret"] == "list", _set(limit=True),
         ["Add an optional `{limit}` parameter to `{fn}` that caps how many {items} are returned (default: no cap).",
          "Let callers pass `{limit}=N` to {fn} to get at most N results; keep the old behaviour when it is None.",
          "Support a `{limit}` keyword in `{fn}` limiting the length of the returned list.",
          "Introduce `{limit}` (default None) so `{fn}` can truncate its output."]),
    Edit("clamp_values", "change output", lambda f: f["cap"] is False and f["ret"] != "count", lambda f, r: {**f, "cap": r.choice([5, 8, 10])},
         ["Cap every returned {item} at {cap} in `{fn}`.",
          "Clamp the values that `{fn}` keeps so none exceeds {cap}.",
          "In {fn}, replace any selected {item} larger than {cap} with {cap}.",
          "Limit each value in the output of `{fn}` to a maximum of {cap}."],
         extra=lambda n, o, nw: {"cap": nw["cap"]}),
    Edit("fix_bug", "bug fix", lambda f: f["bug"], _set(bug=False),
         ["Fix the off-by-one bug: `{fn}` never looks at the first {item}.",
          "`{fn}` skips the first element of `{items}`; make it consider all of them.",
          "Fix {fn} so the first {item} in the list is not ignored.",
          "There is a slicing bug in `{fn}` that drops `{items}[0]`. Fix it."]),
    Edit("loop_to_comprehension", "refactor", lambda f: f["style"] == "loop", _set(style="comp"),
         ["Rewrite the loop in `{fn}` as a list comprehension.",
          "Refactor `{fn}` to build `{res}` with a comprehension instead of append calls.",
          "Simplify {fn} using a list comprehension; behaviour must stay the same.",
          "Replace the for loop in `{fn}` with an equivalent comprehension."], behaviour_change=False),
    Edit("comprehension_to_loop", "refactor", lambda f: f["style"] == "comp", _set(style="loop"),
         ["Expand the list comprehension in `{fn}` into an explicit for loop.",
          "Rewrite `{fn}` with a plain loop and append so it is easier to debug.",
          "Turn the comprehension in {fn} into a regular for loop without changing what it returns.",
          "Unroll the comprehension of `{fn}` into a loop."], behaviour_change=False),
]


# --------------------------------------------------------------------------- B: string search
class StringSearch(Family):
    name = "string_search"
    domains = [
        ("text processing", "words", "word"), ("email processing", "addresses", "address"),
        ("file management", "filenames", "name"), ("web/networking", "urls", "url"),
        ("inventory management", "product_names", "product"), ("social media", "tags", "tag"),
        ("library management", "titles", "title"), ("logging", "lines", "line"),
        ("music", "song_titles", "song"), ("human resources", "employee_names", "employee"),
        ("devops", "hostnames", "host"), ("cooking", "ingredients", "ingredient"),
    ]
    QUERY = {"startswith": ("prefix", "start with"), "endswith": ("suffix", "end with"), "in": ("fragment", "contain")}

    def names(self, rng):
        scen, items, item = rng.choice(self.domains)
        return {"scenario": scen, "items": items, "item": item,
                "fn": f"{_pick(rng, 'find', 'match', 'search', 'filter', 'lookup', 'select')}_{items}",
                "res": _pick(rng, "found", "matches", "hits", "result"),
                "limit": _pick(rng, "limit", "max_results", "n")}

    def base(self, rng):
        return {"mode": _pick(rng, "startswith", "endswith", "in"), "ignore_case": _chance(rng, 0.15),
                "strip": _chance(rng, 0.1), "skip_empty": False, "negate": False, "unique": _chance(rng, 0.1),
                "sort": _chance(rng, 0.1), "ret": _pick(rng, "list", "list", "list", "count"),
                "validate": _chance(rng, 0.1), "limit": False, "style": _pick(rng, "loop", "loop", "comp")}

    def params(self, n, f):
        return {n["limit"]} if f["limit"] else set()

    def render(self, n, f):
        L, it, its, res = Lines(), n["item"], n["items"], n["res"]
        q = n["q"] = self.QUERY[f["mode"]][0]
        L(0, f"def {n['fn']}({its}, {q}" + (f", {n['limit']}=None" if f["limit"] else "") + "):")
        if f["validate"]:
            L(1, f"if not {q}:")
            L(2, f'raise ValueError("{q} must be a non-empty string")')
        needle = q
        if f["ignore_case"]:
            L(1, f"needle = {q}.lower()")
            needle = "needle"
        subj = f"{it}.lower()" if f["ignore_case"] else it
        test = f"{needle} in {subj}" if f["mode"] == "in" else f"{subj}.{f['mode']}({needle})"
        if f["negate"]:
            test = f"{needle} not in {subj}" if f["mode"] == "in" else f"not {test}"
        simple = not f["strip"]
        if f["style"] == "comp" and simple:
            cond = (f"{it} and " if f["skip_empty"] else "") + test
            L(1, f"{res} = [{it} for {it} in {its} if {cond}]")
        else:
            L(1, f"{res} = []")
            L(1, f"for {it} in {its}:")
            if f["strip"]:
                L(2, f"{it} = {it}.strip()")
            if f["skip_empty"]:
                L(2, f"if not {it}:")
                L(3, "continue")
            L(2, f"if {test}:")
            L(3, f"{res}.append({it})")
        if f["unique"]:
            L(1, f"{res} = list(dict.fromkeys({res}))")
        if f["sort"]:
            L(1, f"{res}.sort()")
        if f["limit"]:
            L(1, f"if {n['limit']} is not None:")
            L(2, f"{res} = {res}[:{n['limit']}]")
        if f["ret"] == "count":
            L(1, f"return len({res})")
        elif f["ret"] == "dict":
            L(1, "counts = {}")
            L(1, f"for {it} in {res}:")
            L(2, f"counts[{it}] = counts.get({it}, 0) + 1")
            L(1, "return counts")
        else:
            L(1, f"return {res}")
        return L.code()

    def ref(self, n, f):
        def run(items, q, **kw):
            if f["validate"] and not q:
                raise ValueError
            out = []
            for s in items:
                if f["strip"]:
                    s = s.strip()
                if f["skip_empty"] and not s:
                    continue
                a, b = (s.lower(), q.lower()) if f["ignore_case"] else (s, q)
                hit = {"in": b in a, "startswith": a.startswith(b), "endswith": a.endswith(b)}[f["mode"]]
                if hit != f["negate"]:
                    out.append(s)
            if f["unique"]:
                out = list(dict.fromkeys(out))
            if f["sort"]:
                out.sort()
            if f["limit"] and kw.get(n["limit"]) is not None:
                out = out[: kw[n["limit"]]]
            if f["ret"] == "count":
                return len(out)
            if f["ret"] == "dict":
                d: dict = {}
                for s in out:
                    d[s] = d.get(s, 0) + 1
                return d
            return out

        return run

    WORDS = ["alpha", "Alpine", "beta", "Beta", "gamma", "data", "DataSet", "report", "Report.txt", "atlas",
             "notes", "log", "Logbook", "Alps", "zeta", "meta", "omega", "index", "INDEX", "readme"]

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(([], "a"), {})]
        for _ in range(14):
            xs = [rng.choice(self.WORDS) for _ in range(rng.randint(1, 7))]
            if (old["strip"] or new["strip"]) and _chance(rng, 0.7):
                xs = [" " * rng.randint(0, 1) + x + " " * rng.randint(0, 2) for x in xs]
            if _chance(rng, 0.3):
                xs.append(rng.choice(xs))
            if _chance(rng, 0.3):
                xs.insert(0, "" if _chance(rng, 0.5) else "  ")
            w = rng.choice(xs).strip() or "al"
            k = rng.randint(1, min(3, len(w)))
            q = {"startswith": w[:k], "endswith": w[-k:], "in": w[k // 2: k // 2 + k]}[new["mode"]]
            if _chance(rng, 0.4):
                q = q.upper() if _chance(rng, 0.5) else q.lower()
            if (_chance(rng, 0.1) and (old["validate"] or new["validate"])) or (
                    old["skip_empty"] != new["skip_empty"] and not new["validate"] and _chance(rng, 0.3)):
                q = ""
            calls.append(((xs, q), {}))
            if new["limit"] and _chance(rng, 0.5):
                calls.append(((xs, q), {n["limit"]: rng.randint(0, 2)}))
        return calls


def _q(n: dict, o: Feats, nw: Feats) -> dict:
    return {"q": StringSearch.QUERY[nw["mode"]][0], "verb": StringSearch.QUERY[nw["mode"]][1]}


StringSearch.edits = [
    Edit("ignore_case", "add feature", lambda f: not f["ignore_case"], _set(ignore_case=True),
         ["Make `{fn}` case-insensitive.", "Matching in `{fn}` should ignore upper/lower case.",
          "Compare {items} and `{q}` without regard to case in {fn}.",
          "Update `{fn}` so that 'ABC' and 'abc' are treated the same when matching `{q}`.",
          "Let {fn} match regardless of capitalisation."], extra=_q),
    Edit("strip_whitespace", "robustness", lambda f: not f["strip"], _set(strip=True),
         ["Strip leading and trailing whitespace from each {item} before matching (and return the stripped text).",
          "{items} may carry stray spaces; trim them in `{fn}` before comparing.",
          "Make `{fn}` call strip() on every {item} first.",
          "Normalise surrounding whitespace in {fn}: compare and return trimmed {items}."], extra=_q),
    Edit("skip_empty", "robustness", lambda f: not f["skip_empty"], _set(skip_empty=True),
         ["Skip empty strings in `{items}`.", "Make `{fn}` ignore blank entries.",
          "Empty {items} should never be part of the result of {fn}.",
          "Leave out empty strings when `{fn}` scans the {items}."], extra=_q),
    Edit("invert_condition", "logic change", lambda f: not f["negate"], _set(negate=True),
         ["Return the {items} that do NOT {verb} `{q}` instead.", "Invert the match in `{fn}`: keep only the {items} that fail the test.",
          "Change {fn} to exclude, rather than select, the {items} that {verb} the given {q}.",
          "Flip `{fn}` so that it filters out matching {items}."], extra=_q),
    Edit("dedupe_result", "add feature", lambda f: not f["unique"] and f["ret"] != "dict", _set(unique=True),
         ["Remove duplicate {items} from the result, keeping first occurrences.",
          "`{fn}` should report each distinct {item} only once.",
          "Deduplicate the matches in {fn} without changing their order.",
          "Make sure {fn} never returns the same {item} twice."], extra=_q),
    Edit("sort_result", "add feature", lambda f: not f["sort"] and f["ret"] == "list", _set(sort=True),
         ["Return the matches of `{fn}` in alphabetical order.", "Sort the {items} that `{fn}` returns.",
          "Have {fn} return its result sorted.", "Order the output of `{fn}` lexicographically."], extra=_q),
    Edit("change_return_type", "change output", lambda f: f["ret"] == "list" and not f["limit"], _set(ret="dict"),
         ["Return a dict mapping each matching {item} to how many times it occurs.",
          "Change `{fn}` to count the matches: return {{{item}: occurrences}}.",
          "Instead of a list, make {fn} return a dictionary of match counts.",
          "Make `{fn}` tally the matching {items} in a dict rather than listing them."], extra=_q),
    Edit("change_return_type", "change output", lambda f: f["ret"] == "list" and not f["limit"], _set(ret="count"),
         ["Return only the number of matching {items}.", "Make `{fn}` return a count instead of the list.",
          "Change {fn} so it reports how many {items} {verb} `{q}`.",
          "`{fn}` should return an int: the number of matches."], extra=_q),
    Edit("raise_on_invalid", "input validation", lambda f: not f["validate"], _set(validate=True),
         ["Raise ValueError if `{q}` is empty.", "Reject an empty `{q}` in `{fn}` with a ValueError.",
          "Validate the {q} argument of {fn}: it must be a non-empty string.",
          "Make `{fn}` raise ValueError when called with {q}=''."], extra=_q),
    Edit("add_parameter", "add feature", lambda f: not f["limit"] and f["ret"] == "list", _set(limit=True),
         ["Add an optional `{limit}` argument to `{fn}` that caps the number of results.",
          "Allow callers of {fn} to pass `{limit}` to get only the first few matches (None means all).",
          "Give `{fn}` a `{limit}=None` parameter that truncates the returned list.",
          "Support `{limit}` in `{fn}` so at most that many {items} come back."], extra=_q),
    Edit("loop_to_comprehension", "refactor", lambda f: f["style"] == "loop" and not f["strip"], _set(style="comp"),
         ["Rewrite `{fn}` with a list comprehension.", "Refactor the loop in `{fn}` into a comprehension.",
          "Make {fn} more concise with a comprehension; keep its behaviour.",
          "Replace the explicit loop and append in `{fn}` by a comprehension."], behaviour_change=False, extra=_q),
]


# --------------------------------------------------------------------------- C: numeric aggregate
class Aggregate(Family):
    name = "aggregate"
    domains = NumericFilter.domains
    OPS = {"mean": "average", "total": "total", "maximum": "largest", "minimum": "smallest", "product": "product"}

    def names(self, rng):
        scen, items, item, _ = rng.choice(self.domains)
        op = rng.choice(list(self.OPS))
        verb = _pick(rng, "", "compute_", "calc_", "get_")
        noun = {"mean": _pick(rng, "average", "mean"), "total": _pick(rng, "total", "sum"),
                "maximum": _pick(rng, "max", "peak", "highest"), "minimum": _pick(rng, "min", "lowest"),
                "product": "product"}[op]
        return {"scenario": scen, "items": items, "item": item, "op": op, "fn": f"{verb}{noun}_{item}",
                "digits": _pick(rng, "digits", "ndigits", "precision"), "acc": _pick(rng, "acc", "running", "result")}

    def base(self, rng):
        bug = _chance(rng, 0.2)
        return {"empty": "natural", "skip_none": _chance(rng, 0.2), "ignore_neg": _chance(rng, 0.1),
                "abs": False, "round": False, "style": "index" if bug else _pick(rng, "each", "each", "index"), "bug": bug}

    def params(self, n, f):
        return {n["digits"]} if f["round"] else set()

    def render(self, n, f):
        L, v, vs, op, acc = Lines(), n["item"], n["items"], n["op"], n["acc"]
        L(0, f"def {n['fn']}({vs}" + (f", {n['digits']}=None" if f["round"] else "") + "):")
        if f["empty"] != "natural":
            L(1, f"if not {vs}:")
            L(2, {"zero": "return 0", "none": "return None", "raise": f'raise ValueError("no {vs} given")'}[f["empty"]])
        init = {"mean": "0", "total": "0", "product": "1", "maximum": "None", "minimum": "None"}[op]
        L(1, f"{acc} = {init}")
        if op == "mean":
            L(1, "count = 0")
        if f["style"] == "index":
            L(1, f"for i in range(1, len({vs})):" if f["bug"] else f"for i in range(len({vs})):")
            L(2, f"{v} = {vs}[i]")
        else:
            L(1, f"for {v} in {vs}:")
        if f["skip_none"]:
            L(2, f"if {v} is None:")
            L(3, "continue")
        if f["ignore_neg"]:
            L(2, f"if {v} < 0:")
            L(3, "continue")
        if f["abs"]:
            L(2, f"{v} = abs({v})")
        if op in ("maximum", "minimum"):
            L(2, f"if {acc} is None or {v} {'>' if op == 'maximum' else '<'} {acc}:")
            L(3, f"{acc} = {v}")
        else:
            L(2, f"{acc} {'*=' if op == 'product' else '+='} {v}")
            if op == "mean":
                L(2, "count += 1")
        out = f"{acc} / count" if op == "mean" else acc
        if f["round"]:
            L(1, f"if {n['digits']} is not None:")
            L(2, f"return round({out}, {n['digits']})")
        L(1, f"return {out}")
        return L.code()

    def ref(self, n, f):
        def run(vals, **kw):
            if not vals and f["empty"] != "natural":
                if f["empty"] == "raise":
                    raise ValueError
                return {"zero": 0, "none": None}[f["empty"]]
            seq = vals[1:] if f["bug"] else vals
            xs = []
            for x in seq:
                if x is None and f["skip_none"]:
                    continue
                if f["ignore_neg"] and x < 0:
                    continue
                xs.append(abs(x) if f["abs"] else x)
            op = n["op"]
            if op == "mean":
                if not xs:
                    raise ZeroDivisionError
                r = sum(xs) / len(xs)
            elif op == "total":
                r = sum(xs)
            elif op == "product":
                r = 1
                for x in xs:
                    r *= x
            else:
                r = None
                for x in xs:  # same comparison order as the loop, so a stray None fails the same way
                    if r is None or (x > r if op == "maximum" else x < r):
                        r = x
            d = kw.get(n["digits"])
            return round(r, d) if f["round"] and d is not None else r

        return run

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(([],), {})]
        for _ in range(12):
            xs: list = [rng.choice([rng.randint(-5, 20), round(rng.uniform(-3, 30), 3)]) for _ in range(rng.randint(1, 7))]
            if (old["skip_none"] or new["skip_none"]) and _chance(rng, 0.5):
                xs.insert(rng.randrange(len(xs) + 1), None)
            calls.append(((xs,), {}))
            if new["round"]:
                calls.append(((xs,), {n["digits"]: rng.randint(0, 2)}))
        return calls


def _agg_word(n: dict, o: Feats, nw: Feats) -> dict:
    return {"what": Aggregate.OPS[n["op"]]}


Aggregate.edits = [
    Edit("handle_empty", "robustness", lambda f: f["empty"] == "natural", lambda f, r: {**f, "empty": r.choice(["zero", "none", "raise"])},
         ["Handle an empty `{items}` list in `{fn}`: {how}.", "If no {items} are passed, `{fn}` should {how2}.",
          "Make {fn} safe for empty input ({how}).", "Guard `{fn}` against an empty list: {how}.",
          "`{fn}` misbehaves on an empty list. Make it {how2} instead."],
         extra=lambda n, o, nw: {"how": {"zero": "return 0", "none": "return None", "raise": "raise a ValueError"}[nw["empty"]],
                                 "how2": {"zero": "return 0", "none": "return None", "raise": "raise ValueError with a clear message"}[nw["empty"]]}),
    Edit("skip_none", "robustness", lambda f: not f["skip_none"], _set(skip_none=True),
         ["Ignore None values when computing the {what} in `{fn}`.", "Let `{fn}` skip missing (None) {items}.",
          "Make {fn} robust to None entries by leaving them out of the {what}.",
          "Some {items} can be None; `{fn}` should not count them."], extra=_agg_word),
    Edit("filter_results", "logic change", lambda f: not f["ignore_neg"], _set(ignore_neg=True),
         ["Negative {items} are invalid readings: exclude them from the {what}.",
          "Make `{fn}` skip values below zero.", "Only non-negative {items} should contribute to {fn}'s result.",
          "Change `{fn}` to ignore negative numbers."], extra=_agg_word),
    Edit("transform_values", "logic change", lambda f: not f["abs"] and not f["ignore_neg"], _set(abs=True),
         ["Use the absolute value of each {item} when computing the {what}.",
          "Make `{fn}` work on magnitudes: apply abs() to every {item} first.",
          "Change {fn} so negative {items} count by their absolute value.",
          "Compute the {what} of absolute values in `{fn}`."], extra=_agg_word),
    Edit("add_parameter", "add feature", lambda f: not f["round"], _set(round=True),
         ["Add an optional `{digits}` parameter to `{fn}` that rounds the result to that many decimals.",
          "Let callers ask `{fn}` for a rounded {what} via `{digits}` (default None = no rounding).",
          "Support `{digits}=None` in {fn}; when given, round the return value.",
          "Give `{fn}` a `{digits}` keyword for rounding its output."], extra=_agg_word),
    Edit("fix_bug", "bug fix", lambda f: f["bug"], _set(bug=False),
         ["Fix the off-by-one error in `{fn}`: the loop starts at index 1.",
          "`{fn}` ignores the first {item}; fix the range so every element is used.",
          "The {what} computed by {fn} is wrong because element 0 is skipped. Fix it.",
          "Fix the loop bounds in `{fn}`."], extra=_agg_word),
    Edit("iterate_directly", "refactor", lambda f: f["style"] == "index" and not f["bug"], _set(style="each"),
         ["Iterate over `{items}` directly instead of by index in `{fn}`.",
          "Refactor {fn} to drop the range(len(...)) loop.", "Make `{fn}` more idiomatic by looping over the values themselves.",
          "Replace the index-based loop in `{fn}` with a for-each loop."], behaviour_change=False, extra=_agg_word),
]


# --------------------------------------------------------------------------- D: word frequency
class WordCount(Family):
    name = "word_count"
    domains = [("text processing", "text"), ("social media", "post"), ("email processing", "body"),
               ("logging", "log_text"), ("education", "essay"), ("customer support", "ticket"),
               ("search engines", "document"), ("publishing", "chapter")]

    def names(self, rng):
        scen, text = rng.choice(self.domains)
        return {"scenario": scen, "text": text, "fn": _pick(rng, "word_counts", "count_words", "word_frequencies", "tally_words", "term_counts"),
                "min": _pick(rng, "min_count", "threshold", "at_least"), "top": _pick(rng, "top_n", "n", "k"),
                "w": _pick(rng, "word", "token", "term"), "d": _pick(rng, "counts", "freq", "tally")}

    def base(self, rng):
        return {"lower": _chance(rng, 0.2), "punct": _chance(rng, 0.15), "min": False, "top": False,
                "style": _pick(rng, "if", "get", "counter"), "minlen": _pick(rng, 0, 0, 0, 3)}

    def params(self, n, f):
        return ({n["min"]} if f["min"] else set()) | ({n["top"]} if f["top"] else set())

    def render(self, n, f):
        L, w, d, t = Lines(), n["w"], n["d"], n["text"]
        ps = [t] + ([f"{n['min']}=1"] if f["min"] else []) + ([f"{n['top']}=None"] if f["top"] else [])
        if f["style"] == "counter":
            L(0, "from collections import Counter")
            L(0, "")
            L(0, "")
        L(0, f"def {n['fn']}({', '.join(ps)}):")
        if f["style"] == "counter":
            expr = w
            if f["punct"]:
                expr = f'{expr}.strip(".,;:!?")'
            if f["lower"]:
                expr = f"{expr}.lower()"
            L(1, f"{w}s = {t}.split()" if expr == w else f"{w}s = [{expr} for {w} in {t}.split()]")
            cond = [f"{w}"] if f["punct"] else []
            if f["minlen"]:
                cond = [f"len({w}) >= {f['minlen']}"]
            if cond:
                L(1, f"{d} = dict(Counter({w} for {w} in {w}s if {' and '.join(cond)}))")
            else:
                L(1, f"{d} = dict(Counter({w}s))")
        else:
            L(1, f"{d} = {{}}")
            L(1, f"for {w} in {t}.split():")
            if f["punct"]:
                L(2, f'{w} = {w}.strip(".,;:!?")')
            if f["lower"]:
                L(2, f"{w} = {w}.lower()")
            if f["minlen"]:
                L(2, f"if len({w}) < {f['minlen']}:")
                L(3, "continue")
            elif f["punct"]:
                L(2, f"if not {w}:")
                L(3, "continue")
            if f["style"] == "get":
                L(2, f"{d}[{w}] = {d}.get({w}, 0) + 1")
            else:
                L(2, f"if {w} in {d}:")
                L(3, f"{d}[{w}] += 1")
                L(2, "else:")
                L(3, f"{d}[{w}] = 1")
        if f["min"]:
            L(1, f"{d} = {{k: v for k, v in {d}.items() if v >= {n['min']}}}")
        if f["top"]:
            L(1, f"ranked = sorted({d}.items(), key=lambda item: (-item[1], item[0]))")
            L(1, f"if {n['top']} is not None:")
            L(2, f"ranked = ranked[:{n['top']}]")
            L(1, "return ranked")
        else:
            L(1, f"return {d}")
        return L.code()

    def ref(self, n, f):
        def run(text, **kw):
            d: dict = {}
            for w in text.split():
                if f["punct"]:
                    w = w.strip(".,;:!?")
                if f["lower"]:
                    w = w.lower()
                if (f["minlen"] and len(w) < f["minlen"]) or (not w and f["punct"]):
                    continue
                d[w] = d.get(w, 0) + 1
            if f["min"]:
                d = {k: v for k, v in d.items() if v >= kw.get(n["min"], 1)}
            if f["top"]:
                r = sorted(d.items(), key=lambda it: (-it[1], it[0]))
                k = kw.get(n["top"])
                return r[:k] if k is not None else r
            return d

        return run

    VOCAB = ["the", "The", "cat", "Cat", "sat", "on", "mat.", "data", "Data,", "model", "model!", "a", "is", "fast;", "code",
             "Code", "test", "tests", "bug", "fix,", "ok", "!", "..."]

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(("",), {})]
        for _ in range(10):
            text = " ".join(rng.choice(self.VOCAB) for _ in range(rng.randint(1, 14)))
            calls.append(((text,), {}))
            if new["min"]:
                calls.append(((text,), {n["min"]: rng.randint(1, 3)}))
            if new["top"]:
                calls.append(((text,), {n["top"]: rng.randint(0, 3)}))
        return calls


WordCount.edits = [
    Edit("ignore_case", "add feature", lambda f: not f["lower"], _set(lower=True),
         ["Count words case-insensitively.", "Make `{fn}` treat 'Word' and 'word' as the same {w}.",
          "Lowercase every {w} in {fn} before counting.", "`{fn}` should not distinguish upper and lower case."]),
    Edit("strip_punctuation", "robustness", lambda f: not f["punct"], _set(punct=True),
         ["Strip punctuation (.,;:!?) from the ends of each {w} before counting, and skip tokens that become empty.",
          "Make `{fn}` ignore trailing punctuation like commas and full stops; drop tokens that are only punctuation.",
          "In {fn}, 'data,' and 'data' should be the same {w}: remove surrounding .,;:!? characters (empty ones are skipped).",
          "Clean each token in `{fn}` with strip('.,;:!?') and ignore empty results."]),
    Edit("add_parameter", "add feature", lambda f: not f["min"] and not f["top"], _set(min=True),
         ["Add a `{min}` parameter (default 1) to `{fn}`: drop words seen fewer times.",
          "Let `{fn}` filter out rare words via `{min}`; the default keeps everything.",
          "Support `{min}=1` in {fn} and only return {w}s that occur at least that often.",
          "Give `{fn}` an optional minimum frequency `{min}`."]),
    Edit("sort_result", "change output", lambda f: not f["top"], _set(top=True),
         ["Return a list of ({w}, count) pairs sorted by count descending (ties alphabetically), with an optional `{top}` limit.",
          "Make `{fn}` return the most frequent {w}s first as (word, count) tuples; `{top}=None` returns all of them.",
          "Change {fn} to rank the words: sort by frequency (highest first, then alphabetically) and allow `{top}` to keep only the top entries.",
          "`{fn}` should return sorted (word, count) pairs, most common first, truncated to `{top}` when given."]),
    Edit("use_counter", "refactor", lambda f: f["style"] != "counter" and not (f["punct"] and not f["minlen"]), _set(style="counter"),
         ["Use collections.Counter in `{fn}`.", "Refactor {fn} to count with Counter instead of a manual dict.",
          "Simplify `{fn}` by relying on collections.Counter; the return value must remain a plain dict.",
          "Replace the hand-written counting loop of `{fn}` with Counter."], behaviour_change=False),
    Edit("use_dict_get", "refactor", lambda f: f["style"] == "if", _set(style="get"),
         ["Use dict.get with a default instead of the if/else in `{fn}`.", "Simplify the counting in {fn} with `.get(key, 0) + 1`.",
          "Refactor `{fn}`: replace the membership test with dict.get.", "Shorten `{fn}` using dict.get for the counter update."],
         behaviour_change=False),
]


# --------------------------------------------------------------------------- E: numeric loops
class RangeSum(Family):
    name = "range_sum"
    domains = [("math utilities", "n", "k"), ("scheduling", "days", "every"), ("finance", "months", "period"),
               ("games", "level", "step"), ("education", "limit", "divisor")]

    def names(self, rng):
        scen, lim, k = rng.choice(self.domains)
        what = _pick(rng, "multiples", "divisible")
        return {"scenario": scen, "lim": lim, "k": k, "fn": f"{_pick(rng, 'sum', 'total', 'add_up')}_{what}",
                "start": _pick(rng, "start", "begin", "lower"), "i": _pick(rng, "i", "x", "value")}

    def base(self, rng):
        return {"incl": _chance(rng, 0.3), "validate": False, "ret": _pick(rng, "sum", "sum", "list", "count"),
                "square": False, "start": False, "style": _pick(rng, "loop", "gen")}

    def params(self, n, f):
        return {n["start"]} if f["start"] else set()

    def render(self, n, f):
        L, i, k = Lines(), n["i"], n["k"]
        L(0, f"def {n['fn']}({n['lim']}, {k}" + (f", {n['start']}=0" if f["start"] else "") + "):")
        if f["validate"]:
            L(1, f"if {k} <= 0:")
            L(2, f'raise ValueError("{k} must be positive")')
        stop = f"{n['lim']} + 1" if f["incl"] else n["lim"]
        rng_expr = f"range({n['start']}, {stop})" if f["start"] else f"range({stop})"
        term = f"{i} * {i}" if f["square"] else i
        if f["style"] == "gen":
            if f["ret"] == "list":
                L(1, f"return [{term} for {i} in {rng_expr} if {i} % {k} == 0]")
            elif f["ret"] == "count":
                L(1, f"return sum(1 for {i} in {rng_expr} if {i} % {k} == 0)")
            else:
                L(1, f"return sum({term} for {i} in {rng_expr} if {i} % {k} == 0)")
            return L.code()
        L(1, {"sum": "total = 0", "count": "count = 0", "list": "found = []"}[f["ret"]])
        L(1, f"for {i} in {rng_expr}:")
        L(2, f"if {i} % {k} == 0:")
        L(3, {"sum": f"total += {term}", "count": "count += 1", "list": f"found.append({term})"}[f["ret"]])
        L(1, {"sum": "return total", "count": "return count", "list": "return found"}[f["ret"]])
        return L.code()

    def ref(self, n, f):
        def run(lim, k, **kw):
            if f["validate"] and k <= 0:
                raise ValueError
            s = kw.get(n["start"], 0) if f["start"] else 0
            xs = []
            for i in range(s, lim + 1 if f["incl"] else lim):
                if i % k == 0:
                    xs.append(i * i if f["square"] else i)
            return {"sum": sum(xs), "count": len(xs), "list": xs}[f["ret"]]

        return run

    def inputs(self, rng, n, old, new):
        calls: list[Call] = []
        for _ in range(12):
            k = rng.randint(1, 5)
            lim = rng.randint(0, 6) * k if _chance(rng, 0.5) else rng.randint(0, 30)
            calls.append(((lim, k), {}))
            if new["start"]:
                calls.append(((lim, k), {n["start"]: rng.randint(1, 10)}))
        if old["validate"] or new["validate"]:
            calls += [((10, 0), {}), ((10, -2), {})]
        return calls


RangeSum.edits = [
    Edit("change_boundary", "bug fix", lambda f: not f["incl"], _set(incl=True),
         ["Make the upper bound `{lim}` inclusive.", "`{fn}` should also consider `{lim}` itself.",
          "Fix the off-by-one in {fn}: {lim} must be included in the range.",
          "Include the end value `{lim}` in the loop of `{fn}`."]),
    Edit("change_boundary", "logic change", lambda f: f["incl"], _set(incl=False),
         ["Make `{lim}` an exclusive bound in `{fn}`.", "`{fn}` should stop before `{lim}`, not at it.",
          "Exclude the end value {lim} from the range in {fn}.", "Change `{fn}` to iterate up to but not including `{lim}`."]),
    Edit("raise_on_invalid", "input validation", lambda f: not f["validate"], _set(validate=True),
         ["Raise ValueError if `{k}` is zero or negative.", "Validate `{k}` in `{fn}`: it must be a positive integer.",
          "Make {fn} reject a non-positive {k} with a ValueError instead of failing later.",
          "Add an input check to `{fn}` so that {k} <= 0 raises ValueError."]),
    Edit("change_return_type", "change output", lambda f: f["ret"] != "list", _set(ret="list"),
         ["Return the list of matching numbers instead of {cur}.", "Make `{fn}` return the values themselves as a list.",
          "Change {fn} to collect the numbers into a list and return it.",
          "`{fn}` should return which numbers qualify (a list), not {cur}."],
         extra=lambda n, o, nw: {"cur": {"sum": "their sum", "count": "how many there are", "list": ""}[o["ret"]]}),
    Edit("change_return_type", "change output", lambda f: f["ret"] == "sum" and not f["square"], _set(ret="count"),
         ["Return how many numbers qualify instead of their sum.", "Make `{fn}` count the multiples rather than add them.",
          "Change {fn} to return a count.", "`{fn}` should report the number of multiples, not the total."]),
    Edit("transform_values", "logic change", lambda f: not f["square"] and f["ret"] != "count", _set(square=True),
         ["Use the square of each qualifying number in `{fn}`.", "Make `{fn}` work with squares: i*i instead of i.",
          "Change {fn} to square every multiple it finds.", "`{fn}` should accumulate squared values."]),
    Edit("add_parameter", "add feature", lambda f: not f["start"], _set(start=True),
         ["Add a `{start}` parameter (default 0) to `{fn}` for where the range begins.",
          "Let callers choose the first number of the range via `{start}=0`.",
          "Support a custom lower bound `{start}` in {fn} without breaking existing calls.",
          "Give `{fn}` an optional `{start}` argument."]),
    Edit("use_builtin", "refactor", lambda f: f["style"] == "loop", _set(style="gen"),
         ["Rewrite `{fn}` as a single expression using a generator or comprehension.",
          "Replace the loop in `{fn}` with sum()/a comprehension.", "Make {fn} a one-liner; behaviour must not change.",
          "Simplify `{fn}` using built-ins."], behaviour_change=False),
    Edit("expand_loop", "refactor", lambda f: f["style"] == "gen", _set(style="loop"),
         ["Rewrite `{fn}` with an explicit for loop.", "Expand the one-liner in `{fn}` into a loop.",
          "Make {fn} easier to step through in a debugger by using a plain loop.",
          "Turn the generator expression in `{fn}` into a for loop."], behaviour_change=False),
]


class Recursive(Family):
    name = "recursive"
    domains = [("math utilities",), ("algorithms",), ("education",), ("puzzles",)]
    FUNCS = ["factorial", "fib", "triangular", "digit_sum", "power_of_two"]

    def names(self, rng):
        kind = rng.choice(self.FUNCS)
        fn = {"factorial": _pick(rng, "factorial", "fact"), "fib": _pick(rng, "fib", "fibonacci", "nth_fib"),
              "triangular": _pick(rng, "triangular", "tri_number", "sum_to"), "digit_sum": _pick(rng, "digit_sum", "sum_digits"),
              "power_of_two": _pick(rng, "pow2", "power_of_two")}[kind]
        return {"scenario": rng.choice(self.domains)[0], "kind": kind, "fn": fn, "n": _pick(rng, "n", "k", "num"),
                "mod": _pick(rng, "modulus", "mod", "m")}

    def base(self, rng):
        return {"style": _pick(rng, "rec", "rec", "iter"), "memo": False, "validate": False, "mod": False}

    def params(self, n, f):
        return {n["mod"]} if f["mod"] else set()

    def render(self, n, f):
        L, fn, x, kind = Lines(), n["fn"], n["n"], n["kind"]
        if f["memo"]:
            L(0, "from functools import lru_cache")
            L(0, "")
            L(0, "")
            L(0, "@lru_cache(maxsize=None)")
        mod = f["mod"]
        L(0, f"def {fn}({x}" + (f", {n['mod']}=None" if mod else "") + "):")
        if f["validate"]:
            L(1, f"if {x} < 0:")
            L(2, f'raise ValueError("{x} must be non-negative")')
        target = f"_{fn}_value" if mod else fn
        body = Lines()
        if f["style"] == "rec":
            base_cond, base_val, step = {
                "factorial": (f"{x} <= 1", "1", f"{x} * {target}({x} - 1)"),
                "fib": (f"{x} < 2", x, f"{target}({x} - 1) + {target}({x} - 2)"),
                "triangular": (f"{x} <= 0", "0", f"{x} + {target}({x} - 1)"),
                "digit_sum": (f"{x} < 10", x, f"{x} % 10 + {target}({x} // 10)"),
                "power_of_two": (f"{x} <= 0", "1", f"2 * {target}({x} - 1)"),
            }[kind]
            body(1, f"if {base_cond}:")
            body(2, f"return {base_val}")
            body(1, f"return {step}")
            lines = body.out
        else:
            it = {
                "factorial": ["result = 1", f"for i in range(2, {x} + 1):", "    result *= i"],
                "fib": [f"if {x} < 2:", f"    return {x}", "a, b = 0, 1", f"for _ in range({x} - 1):", "    a, b = b, a + b", "result = b"],
                "triangular": ["result = 0", f"for i in range(1, {x} + 1):", "    result += i"],
                "digit_sum": [f"if {x} < 10:", f"    return {x}", "result = 0", f"while {x} > 0:", f"    result += {x} % 10",
                              f"    {x} //= 10"],
                "power_of_two": ["result = 1", f"for _ in range({x}):", "    result *= 2"],
            }[kind]
            lines = ["    " + s for s in it] + ["    return result"]
        if mod:
            # the modulus is applied once, outside the recursion
            L(1, f"value = {target}({x})")
            L(1, f"return value % {n['mod']} if {n['mod']} is not None else value")
            L(0, "")
            L(0, "")
            L(0, f"def {target}({x}):")
        L.out.extend(lines)
        return L.code()

    def ref(self, n, f):
        def value(x):
            k = n["kind"]
            if k == "factorial":
                r = 1
                for i in range(2, x + 1):
                    r *= i
                return r
            if k == "fib":
                if x < 2:
                    return x
                a, b = 0, 1
                for _ in range(x - 1):
                    a, b = b, a + b
                return b
            if k == "triangular":
                return sum(range(1, x + 1))
            if k == "digit_sum":
                return x if x < 10 else sum(int(c) for c in str(x))
            return 2 ** max(x, 0)

        def run(x, **kw):
            if f["validate"] and x < 0:
                raise ValueError
            v = value(x)
            m = kw.get(n["mod"])
            return v % m if f["mod"] and m is not None else v

        return run

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [((x,), {}) for x in (0, 1, 2, 3, 7, rng.randint(4, 14), rng.randint(10, 18))]
        if n["kind"] == "digit_sum":
            calls += [((rng.randint(100, 99999),), {}) for _ in range(3)]
        if old["validate"] or new["validate"]:
            calls += [((-1,), {}), ((-rng.randint(2, 9),), {})]
        if new["mod"]:
            calls += [((rng.randint(3, 15),), {n["mod"]: rng.randint(2, 50)}) for _ in range(4)]
        return calls


Recursive.edits = [
    Edit("make_iterative", "performance", lambda f: f["style"] == "rec" and not f["memo"], _set(style="iter"),
         ["Rewrite `{fn}` iteratively, without recursion.", "Convert the recursive `{fn}` into a loop.",
          "Avoid deep recursion in {fn}: use iteration instead.", "Make `{fn}` non-recursive; results must be identical."],
         behaviour_change=False),
    Edit("make_recursive", "refactor", lambda f: f["style"] == "iter" and not f["mod"], _set(style="rec"),
         ["Rewrite `{fn}` as a recursive function.", "Express {fn} recursively instead of with a loop.",
          "Implement `{fn}` with recursion; keep the same results.", "Turn the loop in `{fn}` into recursion."],
         behaviour_change=False),
    Edit("memoize", "performance", lambda f: f["style"] == "rec" and not f["memo"] and not f["mod"] and not f["validate"], _set(memo=True),
         ["Memoize `{fn}` with functools.lru_cache.", "Cache the results of {fn} so repeated calls are fast.",
          "Speed up `{fn}` by adding an lru_cache decorator.", "Add memoization to `{fn}`."], behaviour_change=False),
    Edit("raise_on_invalid", "input validation", lambda f: not f["validate"] and not f["memo"], _set(validate=True),
         ["Raise ValueError for negative `{n}`.", "`{fn}` must reject negative input with a ValueError.",
          "Validate the argument of {fn}: n < 0 is an error.", "Add a check to `{fn}` that raises ValueError when `{n}` is below zero."]),
    Edit("add_parameter", "add feature", lambda f: not f["mod"] and not f["memo"], _set(mod=True),
         ["Add an optional `{mod}` argument to `{fn}`; when given, return the result modulo it.",
          "Let callers of {fn} pass `{mod}` to reduce the result (default None keeps it unchanged).",
          "Support `{fn}({n}, {mod}=...)` returning the value mod `{mod}`.",
          "Give `{fn}` a `{mod}=None` keyword that applies a final modulus."]),
]


# --------------------------------------------------------------------------- F: records grouping
class GroupRecords(Family):
    name = "group_records"
    domains = [("human resources", "employees", "dept", "salary", "name"), ("e-commerce", "orders", "customer", "total", "order_id"),
               ("education", "students", "grade", "score", "student"), ("logistics", "shipments", "city", "weight", "tracking"),
               ("finance", "transactions", "category", "amount", "ref"), ("healthcare", "visits", "clinic", "cost", "patient"),
               ("project management", "tasks", "owner", "hours", "title")]

    def names(self, rng):
        scen, recs, key, val, ident = rng.choice(self.domains)
        return {"scenario": scen, "recs": recs, "key": key, "val": val, "ident": ident,
                "fn": f"{_pick(rng, 'group', 'summarize', 'aggregate', 'totals')}_by_{key}",
                "r": _pick(rng, "rec", "row", "item", "entry"), "min": _pick(rng, "min_total", "minimum", "floor")}

    def base(self, rng):
        return {"agg": _pick(rng, "sum", "count", "list"), "skip_missing": _chance(rng, 0.2), "lower": False, "sort": False,
                "min": False}

    def params(self, n, f):
        return {n["min"]} if f["min"] else set()

    def render(self, n, f):
        L, r, key = Lines(), n["r"], f'"{n["key"]}"'
        L(0, f"def {n['fn']}({n['recs']}" + (f", {n['min']}=None" if f["min"] else "") + "):")
        L(1, "groups = {}")
        L(1, f"for {r} in {n['recs']}:")
        if f["skip_missing"]:
            L(2, f"if {key} not in {r}:")
            L(3, "continue")
        L(2, f"k = {r}[{key}].lower()" if f["lower"] else f"k = {r}[{key}]")
        if f["agg"] == "sum":
            L(2, f'groups[k] = groups.get(k, 0) + {r}["{n["val"]}"]')
        elif f["agg"] == "count":
            L(2, "groups[k] = groups.get(k, 0) + 1")
        else:
            L(2, f'groups.setdefault(k, []).append({r}["{n["ident"]}"])')
        if f["min"]:
            L(1, f"if {n['min']} is not None:")
            L(2, f"groups = {{k: v for k, v in groups.items() if v >= {n['min']}}}")
        if f["sort"]:
            L(1, "return dict(sorted(groups.items()))")
        else:
            L(1, "return groups")
        return L.code()

    def ref(self, n, f):
        def run(recs, **kw):
            g: dict = {}
            for r in recs:
                if n["key"] not in r:
                    if f["skip_missing"]:
                        continue
                    raise KeyError
                k = r[n["key"]].lower() if f["lower"] else r[n["key"]]
                if f["agg"] == "sum":
                    g[k] = g.get(k, 0) + r[n["val"]]
                elif f["agg"] == "count":
                    g[k] = g.get(k, 0) + 1
                else:
                    g.setdefault(k, []).append(r[n["ident"]])
            m = kw.get(n["min"])
            if f["min"] and m is not None:
                g = {k: v for k, v in g.items() if v >= m}
            return dict(sorted(g.items())) if f["sort"] else g

        return run

    KEYS = ["north", "North", "south", "east", "West", "west", "hub"]

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(([],), {})]
        for j in range(10):
            recs = []
            for i in range(rng.randint(1, 7)):
                r = {n["key"]: rng.choice(self.KEYS), n["val"]: rng.randint(1, 40), n["ident"]: f"{n['ident']}{j}{i}"}
                if (old["skip_missing"] or new["skip_missing"]) and _chance(rng, 0.15):
                    del r[n["key"]]
                recs.append(r)
            calls.append(((recs,), {}))
            if new["min"]:
                calls.append(((recs,), {n["min"]: rng.randint(1, 50)}))
        return calls


GroupRecords.edits = [
    Edit("skip_missing", "robustness", lambda f: not f["skip_missing"], _set(skip_missing=True),
         ['Skip {recs} that have no "{key}" field instead of raising KeyError.',
          'Make `{fn}` ignore entries missing the "{key}" key.', 'Some {recs} lack "{key}"; {fn} should just leave them out.',
          "Let `{fn}` tolerate incomplete records."]),
    Edit("ignore_case", "add feature", lambda f: not f["lower"], _set(lower=True),
         ['Group `{key}` values case-insensitively (use the lowercase form as the key).',
          'Make `{fn}` treat "North" and "north" as the same {key}.', "Normalise the grouping key of {fn} to lower case.",
          "`{fn}` should merge groups that differ only in capitalisation."]),
    Edit("sort_result", "change output", lambda f: not f["sort"], _set(sort=True),
         ["Return the groups sorted by {key}.", "Make `{fn}` return a dict ordered by its keys.",
          "Sort the output of {fn} alphabetically by {key}.", "Order the groups produced by `{fn}` by key."]),
    Edit("change_return_type", "change output", lambda f: f["agg"] == "list", lambda f, r: {**f, "agg": r.choice(["sum", "count"])},
         ["Instead of listing {ident}s, return {what} per {key}.", "Make `{fn}` map each {key} to {what}.",
          "Change {fn} to aggregate: {what} for every {key}.", "`{fn}` should return {what} per group rather than lists."],
         extra=lambda n, o, nw: {"what": {"sum": f"the total {n['val']}", "count": "the number of " + n["recs"]}[nw["agg"]]}),
    Edit("change_return_type", "change output", lambda f: f["agg"] != "list" and not f["min"], _set(agg="list"),
         ["Return the list of {ident}s for each {key} instead of {what}.", "Make `{fn}` collect the {ident} values per group.",
          "Change {fn} so every {key} maps to a list of {ident}s.", "`{fn}` should group {ident}s, not compute {what}."],
         extra=lambda n, o, nw: {"what": {"sum": "a total", "count": "a count"}[o["agg"]]}),
    Edit("add_parameter", "add feature", lambda f: f["agg"] != "list" and not f["min"], _set(min=True),
         ["Add an optional `{min}` parameter: drop groups whose value is below it.",
          "Let `{fn}` filter out small groups via `{min}` (None keeps all).",
          "Support `{min}=None` in {fn} to hide groups under a threshold.", "Give `{fn}` a threshold argument `{min}`."]),
]


# --------------------------------------------------------------------------- G: text normalisation
class Normalize(Family):
    name = "normalize"
    domains = [("web/networking", "slug"), ("user accounts", "username"), ("publishing", "title"), ("e-commerce", "sku"),
               ("file management", "filename"), ("social media", "handle"), ("data cleaning", "label")]
    OPS = ["strip", "collapse", "lower", "upper", "title", "nodigits", "underscore", "dash", "truncate"]

    def names(self, rng):
        scen, what = rng.choice(self.domains)
        return {"scenario": scen, "what": what, "fn": f"{_pick(rng, 'normalize', 'clean', 'format', 'make')}_{what}",
                "s": _pick(rng, "text", "raw", "value", "s"), "max": _pick(rng, "max_length", "max_len", "width")}

    def base(self, rng):
        ops = {"strip"} if _chance(rng, 0.6) else set()
        for op in rng.sample(["collapse", "lower", "underscore", "nodigits"], rng.randint(0, 2)):
            ops.add(op)
        return {"ops": frozenset(ops)}

    def params(self, n, f):
        return {n["max"]} if "truncate" in f["ops"] else set()

    ORDER = ["strip", "collapse", "lower", "upper", "title", "nodigits", "underscore", "dash", "truncate"]

    def render(self, n, f):
        L, s = Lines(), n["s"]
        trunc = "truncate" in f["ops"]
        L(0, f"def {n['fn']}({s}" + (f", {n['max']}=None" if trunc else "") + "):")
        L(1, f"result = {s}")
        code = {"strip": "result = result.strip()", "collapse": 'result = " ".join(result.split())',
                "lower": "result = result.lower()", "upper": "result = result.upper()", "title": "result = result.title()",
                "nodigits": 'result = "".join(ch for ch in result if not ch.isdigit())',
                "underscore": 'result = result.replace(" ", "_")', "dash": 'result = result.replace(" ", "-")'}
        for op in self.ORDER:
            if op in f["ops"] and op != "truncate":
                L(1, code[op])
        if trunc:
            L(1, f"if {n['max']} is not None and len(result) > {n['max']}:")
            L(2, f"result = result[:{n['max']}]")
        L(1, "return result")
        return L.code()

    def ref(self, n, f):
        def run(s, **kw):
            ops = f["ops"]
            if "strip" in ops:
                s = s.strip()
            if "collapse" in ops:
                s = " ".join(s.split())
            for op, fn in (("lower", str.lower), ("upper", str.upper), ("title", str.title)):
                if op in ops:
                    s = fn(s)
            if "nodigits" in ops:
                s = "".join(c for c in s if not c.isdigit())
            if "underscore" in ops:
                s = s.replace(" ", "_")
            if "dash" in ops:
                s = s.replace(" ", "-")
            m = kw.get(n["max"])
            if "truncate" in ops and m is not None and len(s) > m:
                s = s[:m]
            return s

        return run

    SAMPLES = ["  Hello World  ", "Data  Science 101", "my File 2.txt", " Quarterly   Report ", "ABC def", "x1 y2 z3",
               "New   York  City ", "release v2 notes", "  spaced-out  ", "Mixed CASE words 42"]

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(("",), {})] + [((x,), {}) for x in self.SAMPLES]
        if "truncate" in new["ops"]:
            calls += [((rng.choice(self.SAMPLES),), {n["max"]: rng.randint(0, 8)}) for _ in range(4)]
        return calls


_NORM_PHRASES = {
    "strip": ["Strip leading and trailing whitespace in `{fn}`.", "Make `{fn}` trim spaces at both ends of the {what}.",
              "Remove surrounding whitespace from the {what} in {fn}.", "`{fn}` should ignore blanks at the start and end."],
    "collapse": ["Collapse runs of whitespace into a single space in `{fn}`.", "Make `{fn}` squeeze repeated spaces.",
                 "Normalise internal whitespace in {fn}: several spaces become one (and the ends are trimmed).",
                 "Replace any sequence of whitespace with one space in `{fn}`."],
    "lower": ["Make `{fn}` return the {what} in lower case.", "Lowercase the result of {fn}.",
              "Convert the {what} to lowercase in `{fn}`.", "`{fn}` should produce an all-lowercase {what}."],
    "upper": ["Make `{fn}` return the {what} in upper case.", "Uppercase the output of {fn}.",
              "Convert the {what} to capitals in `{fn}`.", "`{fn}` should shout: return the {what} in uppercase."],
    "title": ["Capitalise every word of the {what} in `{fn}`.", "Make {fn} return title case.",
              "Convert the {what} to Title Case in `{fn}`.", "`{fn}` should capitalise the first letter of each word."],
    "nodigits": ["Remove all digits from the {what} in `{fn}`.", "Make `{fn}` drop numeric characters.",
                 "Strip out digits in {fn}.", "`{fn}` must not keep any digits 0-9."],
    "underscore": ["Replace spaces with underscores in `{fn}`.", "Make `{fn}` use '_' instead of ' '.",
                   "Join words with underscores in {fn}.", "`{fn}` should turn every space into an underscore."],
    "dash": ["Replace spaces with hyphens in `{fn}`.", "Make `{fn}` join words with '-'.",
             "Use dashes instead of spaces in the {what} returned by {fn}.", "`{fn}` should turn spaces into '-'."],
    "truncate": ["Add an optional `{max}` parameter to `{fn}` that cuts the result to at most that many characters.",
                 "Let `{fn}` truncate the {what} to `{max}` characters when it is given.",
                 "Support `{max}=None` in {fn} to limit the length of the output.",
                 "Give `{fn}` a `{max}` keyword; longer results are shortened."],
}
_NORM_KIND = {"strip": "strip_whitespace", "collapse": "strip_whitespace", "lower": "transform_output", "upper": "transform_output",
              "title": "transform_output", "nodigits": "filter_results", "underscore": "transform_output",
              "dash": "transform_output", "truncate": "add_parameter"}
_NORM_CONFLICT = {"lower": {"upper", "title"}, "upper": {"lower", "title"}, "title": {"lower", "upper"},
                  "underscore": {"dash"}, "dash": {"underscore"}}


def _norm_edit(op: str) -> Edit:
    return Edit(_NORM_KIND[op], "add feature" if op == "truncate" else "change output",
                lambda f: op not in f["ops"] and not (_NORM_CONFLICT.get(op, set()) & f["ops"]),
                lambda f, r: {**f, "ops": f["ops"] | {op}}, _NORM_PHRASES[op])


Normalize.edits = [_norm_edit(op) for op in Normalize.OPS]


# --------------------------------------------------------------------------- H: config parsing
class ParseConfig(Family):
    name = "parse_config"
    domains = [("configuration", "config_text"), ("devops", "env_text"), ("data serialization", "payload"),
               ("web/networking", "header_block"), ("databases", "dsn_options")]

    def names(self, rng):
        scen, text = rng.choice(self.domains)
        sep = rng.choice(["=", ":"])
        return {"scenario": scen, "text": text, "fn": f"{_pick(rng, 'parse', 'read', 'load')}_{_pick(rng, 'settings', 'options', 'pairs', 'config')}",
                "sep": sep, "line": _pick(rng, "line", "raw", "entry")}

    def base(self, rng):
        return {"strip": _chance(rng, 0.5), "comments": _chance(rng, 0.3), "blank": _chance(rng, 0.5), "bad": "crash",
                "first": _chance(rng, 0.5), "lower": False, "ints": False}

    def render(self, n, f):
        L, ln, sep = Lines(), n["line"], n["sep"]
        L(0, f"def {n['fn']}({n['text']}):")
        L(1, "result = {}")
        L(1, f"for {ln} in {n['text']}.splitlines():")
        if f["blank"]:
            L(2, f"if not {ln}.strip():")
            L(3, "continue")
        if f["comments"]:
            L(2, f'if {ln}.lstrip().startswith("#"):')
            L(3, "continue")
        if f["bad"] == "skip":
            L(2, f'if "{sep}" not in {ln}:')
            L(3, "continue")
        L(2, f'key, value = {ln}.split("{sep}", 1)' if f["first"] else f'key, value = {ln}.split("{sep}")')
        if f["strip"]:
            L(2, "key, value = key.strip(), value.strip()")
        if f["lower"]:
            L(2, "key = key.lower()")
        if f["ints"]:
            L(2, "if value.isdigit():")
            L(3, "value = int(value)")
        L(2, "result[key] = value")
        L(1, "return result")
        return L.code()

    def ref(self, n, f):
        def run(text):
            d: dict = {}
            for ln in text.splitlines():
                if f["blank"] and not ln.strip():
                    continue
                if f["comments"] and ln.lstrip().startswith("#"):
                    continue
                if f["bad"] == "skip" and n["sep"] not in ln:
                    continue
                parts = ln.split(n["sep"], 1) if f["first"] else ln.split(n["sep"])
                if len(parts) != 2:
                    raise ValueError
                k, v = parts
                if f["strip"]:
                    k, v = k.strip(), v.strip()
                if f["lower"]:
                    k = k.lower()
                if f["ints"] and v.isdigit():
                    v = int(v)
                d[k] = v
            return d

        return run

    def inputs(self, rng, n, old, new):
        sep = n["sep"]
        keys = ["host", "Port", "user", "TIMEOUT", "mode", "path", "retries", "Debug"]
        vals = ["localhost", "8080", "admin", "30", "fast", "/tmp/x", "3", "true", "a" + sep + "b", "k" + sep + "v" + sep + "w"]
        calls: list[Call] = [(("",), {})]
        for _ in range(10):
            lines = []
            for _ in range(rng.randint(1, 6)):
                r = rng.random()
                if r < 0.12:
                    lines.append(rng.choice(["", "   "]))
                elif r < 0.22:
                    lines.append("# " + rng.choice(keys))
                elif r < 0.28:
                    lines.append(rng.choice(["garbage", "no separator here"]))
                else:
                    lines.append(rng.choice(keys) + rng.choice(["", " "]) + sep + rng.choice(["", " "]) + rng.choice(vals))
            calls.append((("\n".join(lines),), {}))
        return calls


ParseConfig.edits = [
    Edit("skip_blank_lines", "robustness", lambda f: not f["blank"], _set(blank=True),
         ["Skip blank lines in `{fn}`.", "Make `{fn}` ignore empty or whitespace-only lines.",
          "Blank lines currently break {fn}; just skip them.", "Let `{fn}` tolerate empty lines in `{text}`."]),
    Edit("skip_comments", "add feature", lambda f: not f["comments"], _set(comments=True),
         ["Ignore comment lines starting with '#' in `{fn}`.", "Make `{fn}` skip lines that begin with # (after leading spaces).",
          "Support comments in {fn}: lines whose first non-blank character is '#' are ignored.",
          "`{fn}` should treat '#' lines as comments."]),
    Edit("skip_malformed", "robustness", lambda f: f["bad"] == "crash", _set(bad="skip"),
         ["Skip lines without a '{sep}' instead of raising.", "Make `{fn}` ignore malformed lines that have no separator.",
          "Lines lacking '{sep}' should be silently dropped by {fn}.", "Let `{fn}` tolerate lines without a '{sep}'."]),
    Edit("fix_bug", "bug fix", lambda f: not f["first"], _set(first=True),
         ["Values may contain '{sep}'; split each line only at the first '{sep}'.",
          "Fix `{fn}` so that a value containing '{sep}' does not raise: split once.",
          "{fn} breaks when the value itself has a '{sep}'. Only the first separator should count.",
          "Use a single split in `{fn}` so everything after the first '{sep}' is the value."]),
    Edit("strip_whitespace", "robustness", lambda f: not f["strip"], _set(strip=True),
         ["Strip whitespace around keys and values in `{fn}`.", "Make `{fn}` trim spaces around the key and the value.",
          "Keys and values from {fn} should have no surrounding blanks.", "Call strip() on both sides of the '{sep}' in `{fn}`."]),
    Edit("ignore_case", "change output", lambda f: not f["lower"], _set(lower=True),
         ["Make keys case-insensitive by lowercasing them.", "Have `{fn}` store every key in lower case.",
          "Normalise key case in {fn}.", "`{fn}` should lowercase keys so 'Port' and 'port' collide."]),
    Edit("convert_types", "add feature", lambda f: not f["ints"], _set(ints=True),
         ["Convert values made only of digits to int.", "Make `{fn}` return numeric values as integers.",
          "In {fn}, turn digit-only values into ints.", "`{fn}` should parse integer values instead of leaving them as strings."]),
]


# --------------------------------------------------------------------------- I: search index
class FindIndex(Family):
    name = "find_index"
    domains = StringSearch.domains

    def names(self, rng):
        scen, items, item = rng.choice(self.domains)
        return {"scenario": scen, "items": items, "item": item, "target": _pick(rng, "target", "wanted", "needle", "key"),
                "fn": f"{_pick(rng, 'index_of', 'find', 'locate', 'position_of')}_{item}", "start": _pick(rng, "start", "offset", "begin")}

    def base(self, rng):
        return {"which": "first", "missing": _pick(rng, "none", "minus1"), "start": False, "all": False, "lower": False}

    def params(self, n, f):
        return {n["start"]} if f["start"] else set()

    def render(self, n, f):
        L, its, t = Lines(), n["items"], n["target"]
        L(0, f"def {n['fn']}({its}, {t}" + (f", {n['start']}=0" if f["start"] else "") + "):")
        if f["lower"]:
            L(1, f"{t} = {t}.lower()")
        rng_expr = f"range({n['start']}, len({its}))" if f["start"] else f"range(len({its}))"
        val = f"{its}[i].lower()" if f["lower"] else f"{its}[i]"
        if f["all"]:
            L(1, f"return [i for i in {rng_expr} if {val} == {t}]")
            return L.code()
        if f["which"] == "last":
            L(1, f"for i in reversed({rng_expr}):")
        else:
            L(1, f"for i in {rng_expr}:")
        L(2, f"if {val} == {t}:")
        L(3, "return i")
        L(1, {"none": "return None", "minus1": "return -1", "raise": f'raise ValueError(f"{{{t}!r}} not found")'}[f["missing"]])
        return L.code()

    def ref(self, n, f):
        def run(items, t, **kw):
            s = kw.get(n["start"], 0) if f["start"] else 0
            eq = (lambda a: a.lower() == t.lower()) if f["lower"] else (lambda a: a == t)
            idx = [i for i in range(s, len(items)) if eq(items[i])]
            if f["all"]:
                return idx
            if idx:
                return idx[-1] if f["which"] == "last" else idx[0]
            if f["missing"] == "raise":
                raise ValueError
            return None if f["missing"] == "none" else -1

        return run

    def inputs(self, rng, n, old, new):
        calls: list[Call] = [(([], "x"), {})]
        for _ in range(12):
            xs = [rng.choice(StringSearch.WORDS) for _ in range(rng.randint(1, 7))]
            if _chance(rng, 0.5):
                xs.append(rng.choice(xs))
            t = rng.choice(xs) if _chance(rng, 0.75) else "missing"
            if _chance(rng, 0.3):
                t = t.upper()
            calls.append(((xs, t), {}))
            if new["start"]:
                calls.append(((xs, t), {n["start"]: rng.randint(0, len(xs))}))
        return calls


FindIndex.edits = [
    Edit("reverse_order", "logic change", lambda f: f["which"] == "first" and not f["all"], _set(which="last"),
         ["Return the index of the last match instead of the first.", "Make `{fn}` search from the end.",
          "`{fn}` should report the final occurrence of `{target}`.", "Change {fn} to find the last position."]),
    Edit("raise_on_invalid", "error handling", lambda f: f["missing"] != "raise" and not f["all"], _set(missing="raise"),
         ["Raise ValueError when `{target}` is not found.", "Instead of returning a sentinel, `{fn}` should raise ValueError if nothing matches.",
          "Make {fn} fail loudly (ValueError) for a missing {item}.", "`{fn}` must raise ValueError when there is no match."]),
    Edit("change_return_type", "change output", lambda f: f["missing"] == "none" and not f["all"], _set(missing="minus1"),
         ["Return -1 instead of None when nothing matches.", "Make `{fn}` use -1 as the not-found value.",
          "When {target} is absent, {fn} should give -1.", "Change the sentinel of `{fn}` from None to -1."]),
    Edit("change_return_type", "change output", lambda f: not f["all"], _set(all=True),
         ["Return a list of all indices where `{target}` occurs.", "Make `{fn}` find every match, not only one.",
          "Change {fn} to return all positions (an empty list if there are none).", "`{fn}` should collect the index of each occurrence."]),
    Edit("ignore_case", "add feature", lambda f: not f["lower"], _set(lower=True),
         ["Make the comparison in `{fn}` case-insensitive.", "`{fn}` should match {items} regardless of case.",
          "Ignore capitalisation when {fn} compares against {target}.", "Compare in lower case in `{fn}`."]),
    Edit("add_parameter", "add feature", lambda f: not f["start"], _set(start=True),
         ["Add a `{start}` parameter (default 0) so the search can begin later in the list.",
          "Let callers of `{fn}` skip the first elements with `{start}`.", "Support `{start}=0` in {fn} as the first index to look at.",
          "Give `{fn}` an optional starting index `{start}`."]),
]


# --------------------------------------------------------------------------- J: a small class
class Container(Family):
    name = "container"
    domains = [("inventory management", "Inventory", "sku"), ("e-commerce", "Cart", "product"), ("library management", "Shelf", "book"),
               ("music", "Playlist", "track"), ("logistics", "Warehouse", "part"), ("finance", "Ledger", "account"),
               ("cooking", "Pantry", "ingredient")]

    def names(self, rng):
        scen, cls, item = rng.choice(self.domains)
        return {"scenario": scen, "fn": cls, "item": item, "add": _pick(rng, "add", "put", "store"),
                "remove": _pick(rng, "remove", "take", "discard"), "total": _pick(rng, "total", "size", "count_all"),
                "cap": _pick(rng, "capacity", "max_total", "limit"), "store": _pick(rng, "items", "stock", "_counts")}

    def base(self, rng):
        return {"validate": False, "cap": False, "missing": _pick(rng, "crash", "crash", "ignore"), "len": False, "contains": False,
                "drop_zero": _chance(rng, 0.3), "no_negative": False}

    def params(self, n, f):
        return {n["cap"]} if f["cap"] else set()

    def render(self, n, f):
        L, st, it = Lines(), f"self.{n['store']}", n["item"]
        L(0, f"class {n['fn']}:")
        L(1, f"def __init__(self{', ' + n['cap'] + '=None' if f['cap'] else ''}):")
        L(2, f"{st} = {{}}")
        if f["cap"]:
            L(2, f"self.{n['cap']} = {n['cap']}")
        L(0, "")
        L(1, f"def {n['add']}(self, {it}, qty=1):")
        if f["validate"]:
            L(2, "if qty <= 0:")
            L(3, 'raise ValueError("qty must be positive")')
        if f["cap"]:
            L(2, f"if self.{n['cap']} is not None and self.{n['total']}() + qty > self.{n['cap']}:")
            L(3, 'raise ValueError("capacity exceeded")')
        L(2, f"{st}[{it}] = {st}.get({it}, 0) + qty")
        L(0, "")
        L(1, f"def {n['remove']}(self, {it}, qty=1):")
        if f["validate"]:
            L(2, "if qty <= 0:")
            L(3, 'raise ValueError("qty must be positive")')
        if f["missing"] == "ignore":
            L(2, f"if {it} not in {st}:")
            L(3, "return")
        if f["no_negative"]:
            L(2, f"if {st}[{it}] < qty:")
            L(3, f'raise ValueError("not enough {it}")')
        L(2, f"{st}[{it}] -= qty")
        if f["drop_zero"]:
            L(2, f"if {st}[{it}] <= 0:")
            L(3, f"del {st}[{it}]")
        L(0, "")
        L(1, f"def {n['total']}(self):")
        L(2, f"return sum({st}.values())")
        if f["len"]:
            L(0, "")
            L(1, "def __len__(self):")
            L(2, f"return len({st})")
        if f["contains"]:
            L(0, "")
            L(1, f"def __contains__(self, {it}):")
            L(2, f"return {st}.get({it}, 0) > 0")
        return L.code()

    def ref(self, n, f):
        def run(ops, **kw):
            store: dict = {}
            cap = kw.get(n["cap"]) if f["cap"] else None
            out: list = []
            for op, *args in ops:
                try:
                    if op == "add":
                        k, q = args
                        if f["validate"] and q <= 0:
                            raise ValueError
                        if cap is not None and sum(store.values()) + q > cap:
                            raise ValueError
                        store[k] = store.get(k, 0) + q
                        out.append(None)
                    elif op == "remove":
                        k, q = args
                        if f["validate"] and q <= 0:
                            raise ValueError
                        if k not in store:
                            if f["missing"] == "ignore":
                                out.append(None)
                                continue
                            raise KeyError
                        if f["no_negative"] and store[k] < q:
                            raise ValueError
                        store[k] -= q
                        if f["drop_zero"] and store[k] <= 0:
                            del store[k]
                        out.append(None)
                    elif op == "total":
                        out.append(sum(store.values()))
                    elif op == "len":
                        if not f["len"]:
                            raise TypeError
                        out.append(len(store))
                    elif op == "contains":
                        if not f["contains"]:
                            raise TypeError
                        out.append(store.get(args[0], 0) > 0)
                except Exception as exc:  # noqa: BLE001 - record the failure like the driver does
                    out.append(("err", type(exc).__name__))
            return out

        return run

    def callable(self, n, f, namespace):
        cls = namespace[n["fn"]]

        def run(ops, **kw):
            obj = cls(**kw)
            out: list = []
            for op, *args in ops:
                try:
                    if op == "add":
                        out.append(getattr(obj, n["add"])(*args))
                    elif op == "remove":
                        out.append(getattr(obj, n["remove"])(*args))
                    elif op == "total":
                        out.append(getattr(obj, n["total"])())
                    elif op == "len":
                        out.append(len(obj))
                    elif op == "contains":
                        out.append(args[0] in obj)
                except Exception as exc:  # noqa: BLE001 - the outcome is compared with the reference
                    out.append(("err", type(exc).__name__))
            return out

        return run

    def driver(self, n):
        return [f"obj = {n['fn']}(**kwargs)", "out = []", "for op, *rest in args[0]:", "    try:",
                '        if op == "add":', f"            out.append(obj.{n['add']}(*rest))",
                '        elif op == "remove":', f"            out.append(obj.{n['remove']}(*rest))",
                '        elif op == "total":', f"            out.append(obj.{n['total']}())",
                '        elif op == "len":', "            out.append(len(obj))",
                '        elif op == "contains":', "            out.append(rest[0] in obj)",
                "    except Exception as exc:", '        out.append(("err", exc))', "return out"]

    def inputs(self, rng, n, old, new):
        keys = ["a", "b", "c", "d"]
        calls: list[Call] = []
        for _ in range(10):
            ops = []
            for _ in range(rng.randint(2, 10)):
                r = rng.random()
                if r < 0.4:
                    ops.append(("add", rng.choice(keys), rng.choice([1, 2, 3, 5, 0, -1]) if _chance(rng, 0.3) else rng.randint(1, 4)))
                elif r < 0.65:
                    ops.append(("remove", rng.choice(keys), rng.choice([1, 2, 4, 0])))
                elif r < 0.8:
                    ops.append(("total",))
                elif r < 0.9:
                    ops.append(("len",))
                else:
                    ops.append(("contains", rng.choice(keys)))
            calls.append(((ops,), {}))
            if new["cap"]:
                calls.append(((ops,), {n["cap"]: rng.randint(2, 8)}))
        return calls


Container.edits = [
    Edit("raise_on_invalid", "input validation", lambda f: not f["validate"], _set(validate=True),
         ["Raise ValueError in `{add}` and `{remove}` when qty is zero or negative.",
          "Validate quantities in `{fn}`: both `{add}` and `{remove}` must reject qty <= 0 with ValueError.",
          "Make {fn} refuse non-positive quantities (ValueError) when adding or removing.",
          "Add input checks to the `{add}`/`{remove}` methods of `{fn}` for qty <= 0."]),
    Edit("add_parameter", "add feature", lambda f: not f["cap"], _set(cap=True),
         ["Give `{fn}` an optional `{cap}` (constructor argument, default None); `{add}` raises ValueError if the total would exceed it.",
          "Support a maximum total in `{fn}`: pass `{cap}` to __init__ and refuse additions beyond it with ValueError.",
          "Add a `{cap}=None` parameter to {fn}.__init__ and enforce it in `{add}` (ValueError when exceeded).",
          "Let `{fn}` be created with a `{cap}`; adding past that total must raise ValueError."]),
    Edit("handle_missing", "robustness", lambda f: f["missing"] == "crash", _set(missing="ignore"),
         ["Make `{remove}` do nothing when the {item} is not present instead of raising KeyError.",
          "Removing an unknown {item} from `{fn}` should be a no-op.", "Let {fn}.{remove} ignore {item}s it does not hold.",
          "`{remove}` must not raise for missing keys; just return."]),
    Edit("add_method", "add feature", lambda f: not f["len"], _set(len=True),
         ["Implement `__len__` on `{fn}` returning the number of distinct {item}s held.",
          "Make `len()` work on `{fn}` objects (number of keys in the store).",
          "Add a __len__ method to {fn}.", "Support len({fn}()) — it should count distinct {item}s."]),
    Edit("add_method", "add feature", lambda f: not f["contains"], _set(contains=True),
         ["Support the `in` operator on `{fn}`: True when the {item} has a positive quantity.",
          "Add `__contains__` to `{fn}` so `x in obj` checks whether any of x is left.",
          "Implement membership tests for {fn}.", "Let callers write `{item} in {fn_lower}` (positive quantity means present)."],
         extra=lambda n, o, nw: {"fn_lower": n["fn"].lower()}),
    Edit("raise_on_invalid", "input validation", lambda f: not f["no_negative"], _set(no_negative=True),
         ["Raise ValueError in `{remove}` if more is removed than is available.",
          "Quantities in `{fn}` must never go negative: `{remove}` should raise ValueError instead.",
          "Make {fn}.{remove} refuse to take more {item}s than it holds.", "Prevent negative stock in `{fn}` (ValueError)."]),
    Edit("drop_empty", "logic change", lambda f: not f["drop_zero"], _set(drop_zero=True),
         ["Delete a {item} from the store once its quantity drops to zero or below.",
          "Make `{remove}` forget {item}s whose quantity reaches 0.", "Clean up empty entries in {fn} after a removal.",
          "`{fn}` should not keep {item}s with no quantity left."]),
]


FAMILIES: list[Family] = [NumericFilter(), StringSearch(), Aggregate(), WordCount(), RangeSum(), Recursive(),
                          GroupRecords(), Normalize(), ParseConfig(), FindIndex(), Container()]
PROGRAM_KINDS = sorted({e.kind for fam in FAMILIES for e in fam.edits})
# kinds that nearly every family offers would otherwise dominate; damp them
COMBINED_SHARE = 0.3  # share of behaviour edits that ask for two independent changes at once
KIND_WEIGHTS = {"add_parameter": 0.35, "raise_on_invalid": 0.6, "change_return_type": 0.6, "ignore_case": 0.7}


# --------------------------------------------------------------------------- execution and checks
class _Timeout(BaseException):
    """A BaseException, so the programs' own ``except Exception`` handlers cannot swallow it."""


def _alarm(signum, frame):  # pragma: no cover - only fires on a runaway program
    raise _Timeout


def _outcome(fn: Callable, args: tuple, kwargs: dict) -> tuple:
    try:
        value = fn(*_copy(args), **kwargs)
    except _Timeout:
        raise
    except Exception as exc:  # noqa: BLE001 - the exception type is the outcome being compared
        return ("err", type(exc).__name__)
    return ("ok", _canon(value))


@functools.lru_cache(maxsize=256)
def _compiled(code: str, filename: str = "<synth>") -> Any:
    """Compiled once: each version runs in the check, the test's reference run and its input run."""
    return compile(code, filename, "exec")


def _copy(x: Any) -> Any:
    import copy

    return copy.deepcopy(x)


def _canon(v: Any) -> Any:
    """Comparable form that keeps dict order and the int/float/bool distinction."""
    if isinstance(v, dict):
        return ("dict", tuple((_canon(k), _canon(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(_canon(x) for x in v))
    if isinstance(v, float):
        return ("float", round(v, 9))
    return (type(v).__name__, v)


def run_checked(fam: Family, names: dict, old: Feats, new: Feats, old_code: str, new_code: str,
                calls: list[Call], behaviour_change: bool, time_limit: float = 2.0) -> str | None:
    """Execute both versions against their references; returns None if all is well, else the reason."""
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_alarm:
        prev = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        fns = []
        for code, feats in ((old_code, old), (new_code, new)):
            ns: dict = {"__name__": "synth_program"}
            exec(_compiled(code), ns)  # noqa: S102 - code generated by this module, not a model
            fns.append((fam.callable(names, feats, ns), fam.ref(names, feats), fam.params(names, feats)))
        changed = False
        for args, kwargs in calls:
            res = []
            for fn, ref, params in fns:
                if not set(kwargs) <= params:
                    res.append(None)
                    continue
                got, want = _outcome(fn, args, kwargs), _outcome(ref, args, kwargs)
                if got != want:
                    return "reference_mismatch"
                res.append(got)
            if res[0] is None and res[1] is not None:
                changed = True
            elif res[0] is not None and res[0] != res[1]:
                changed = True
        if changed != behaviour_change:
            return "no_behaviour_change" if behaviour_change else "behaviour_changed"
        return None
    except _Timeout:
        return "timeout"
    except SyntaxError:
        return "syntax"
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, prev)


def _each_step_observable(fam: Family, names: dict, rng: random.Random, old: Feats, mid: Feats, new: Feats,
                          only_second: Feats) -> bool:
    """Both halves of a two-part request must matter: the result differs from doing either one alone."""
    code = fam.render(dict(names), new)
    for other in (mid, only_second):
        if other == new:
            return False
        calls = fam.inputs(random.Random(rng.random()), names, other, new)
        if run_checked(fam, names, other, new, fam.render(dict(names), other), code, calls, True):
            return False
    return True


# --------------------------------------------------------------------------- executable tests
# The EditEval format: program = candidate + "\n\n" + test + "\n\n" + "check()". The test replays the
# verification calls and compares with what the trusted reference OUTPUT program returned at synthesis
# time, so a test-split instance is scored by behaviour, not by exact text. Names are prefixed ``_ic_``
# so they cannot shadow the candidate's own.
_TEST_IMPORTS = "import builtins as _ic_builtins\nimport math as _ic_math\n"
_TEST_CASES = "\n# (args, kwargs, 'ok' | 'err', expected value | expected exception name)\n_IC_CASES = {cases}\n"
_TEST_SAME = '''

def _ic_same(got, want):
    """Equal as the reference sees it: dict order, list vs tuple and str/None/bool types count; numbers
    compare by value (1 == 1.0) with a tiny tolerance for float rounding."""
    if (isinstance(want, tuple) and len(want) == 2 and want[0] == "err" and isinstance(got, tuple)
            and len(got) == 2 and isinstance(got[1], BaseException)):
        return isinstance(got[1], getattr(_ic_builtins, want[1], Exception))
    if isinstance(want, dict):
        return (isinstance(got, dict) and len(got) == len(want)
                and all(_ic_same(gk, wk) and _ic_same(gv, wv) for (gk, gv), (wk, wv) in zip(got.items(), want.items())))
    if isinstance(want, (list, tuple)):
        return type(got) is type(want) and len(got) == len(want) and all(map(_ic_same, got, want))
    if isinstance(want, (int, float)) and not isinstance(want, bool):
        return (isinstance(got, (int, float)) and not isinstance(got, bool)
                and _ic_math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9))
    return type(got) is type(want) and got == want
'''
_TEST_CALL = '\n_IC_NAME = {name!r}\n\n\ndef _ic_call(args, kwargs):\n{driver}\n'
_TEST_CHECK = '''

def check():
    for args, kwargs, status, want in _IC_CASES:
        call = _IC_NAME + "(" + ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]) + ")"
        try:
            got = _ic_call(args, kwargs)
        except Exception as exc:
            if status == "err" and isinstance(exc, getattr(_ic_builtins, want, Exception)):
                continue
            expected = f"{want} to be raised" if status == "err" else repr(want)
            raise AssertionError(f"{call} raised {exc!r}; expected {expected}") from None
        if status == "err":
            raise AssertionError(f"{call} returned {got!r}; expected {want} to be raised")
        assert _ic_same(got, want), f"{call} returned {got!r}; expected {want!r}"
'''
# the fixed helpers are compiled once; the in-process check runs them with the cases as objects (the
# literal is known to round-trip, see _literal_safe), which saves parsing a large literal per instance
_TEST_FIXED_CODE = compile(_TEST_IMPORTS + _TEST_SAME + _TEST_CHECK, "<synth-test>", "exec")


@contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise ``_Timeout`` after ``seconds`` (main thread only; elsewhere the code simply runs)."""
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    if use_alarm:
        prev = signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, prev)


def _literal_safe(v: Any) -> bool:
    """True when ``repr(v)`` is a Python literal that ``ast.literal_eval`` turns back into an equal value
    of the same types (exact builtin types only: a subclass such as Counter would repr differently)."""
    t = type(v)
    if t in (str, int, bool, type(None)):
        return True
    if t is float:
        return math.isfinite(v)
    if t in (list, tuple):
        return all(map(_literal_safe, v))
    if t is dict:
        return all(_literal_safe(k) and _literal_safe(x) for k, x in v.items())
    return False


def _builtin_exception(name: str) -> bool:
    cls = getattr(builtins, name, None)
    return isinstance(cls, type) and issubclass(cls, Exception)


def _passes(code: str, call_code: Any, cases: bytes) -> bool:
    """Run the synthesizer's own (trusted) code and its test in-process; True when check() passes.
    Same namespace and order as the test program: code, cases, driver, fixed helpers, check()."""
    ns: dict = {"__name__": "synth_test"}
    try:
        exec(_compiled(code), ns)  # noqa: S102 - code generated by this module, not a model
        ns["_IC_CASES"] = pickle.loads(cases)  # noqa: S301 - a fresh copy of our own cases
        exec(call_code, ns)  # noqa: S102 - the test's driver, rendered by this module
        exec(_TEST_FIXED_CODE, ns)  # noqa: S102 - the fixed test helpers above
        ns["check"]()
    except _Timeout:
        raise
    except Exception:  # noqa: BLE001 - any failure of the trusted program means the test does not pass
        return False
    return True


def build_test(fam: Family, names: dict, new: Feats, old_code: str, new_code: str, calls: list[Call],
               behaviour_change: bool, time_limit: float = 2.0) -> tuple[str | None, str | None]:
    """An EditEval-style ``check()`` for an instance; returns (test source, None) or (None, why not).

    Expected outcomes come from executing the reference output on the verification calls; the test
    must pass on the output and, for a behaviour edit, fail on the input (a refactoring's input must
    pass), else it could not tell a right edit from no edit and is dropped.
    """
    try:
        with _time_limit(time_limit):
            ns: dict = {"__name__": "synth_program"}
            exec(_compiled(new_code), ns)  # noqa: S102 - code generated by this module
            fn = fam.callable(names, new, ns)
            cases = []
            for args, kwargs in calls:
                try:
                    status, value = "ok", fn(*pickle.loads(pickle.dumps(args)), **kwargs)  # noqa: S301 - own data
                except _Timeout:
                    raise
                except Exception as exc:  # noqa: BLE001 - the expected exception is part of the behaviour
                    status, value = "err", type(exc).__name__
                    if not _builtin_exception(value):
                        return None, "test_unknown_exception"
                cases.append((args, kwargs, status, value))
            if not _literal_safe(cases):
                return None, "test_not_literal"
            call_src = _TEST_CALL.format(name=names["fn"], driver="\n".join("    " + s for s in fam.driver(names)))
            blob, call_code = pickle.dumps(cases), _compiled(call_src, "<synth-test>")
            if not _passes(new_code, call_code, blob):
                return None, "test_fails_reference"
            if _passes(old_code, call_code, blob) == behaviour_change:
                return None, "test_passes_input" if behaviour_change else "test_fails_input"
    except _Timeout:
        return None, "test_timeout"
    return _TEST_IMPORTS + _TEST_CASES.format(cases=repr(cases)) + call_src + _TEST_SAME + _TEST_CHECK, None


class _FirstDomain(random.Random):
    """Random draws as usual, except that the draw of a family's domain lands on its first one."""

    def __init__(self, seed: str, domains: list[tuple]) -> None:
        super().__init__(seed)
        self._domains = domains

    def choice(self, seq):
        got = super().choice(seq)
        return seq[0] if seq is self._domains else got


def make_program_instance(seed: int, index: int, first_phrasing: bool = False,
                          first_domain: bool = False) -> tuple[str, dict | None, str | None]:
    """Build program instance number ``index``; returns (kind, instance or None, rejection reason).

    The two ablations' data (``synth.one_phrasing``, ``synth.one_scenario``) make the same random draws
    up to what they change. ``first_phrasing``: the same instance (code, edits, checks), its instruction
    said with each edit's first phrasing and the plainest glue. ``first_domain``: the same program and
    edit, written for the family's first domain (its scenario and the names it brings); the draws that
    depend on the names (test inputs, a second edit, the wording) are made again from there."""
    fam = FAMILIES[index % len(FAMILIES)]
    seed_text = f"{seed}:program:{index}"
    rng = random.Random(seed_text)
    names = fam.names(rng)
    if first_domain:  # the names as drawn for the first domain; the program and edit below stay the same
        names = fam.names(_FirstDomain(seed_text, fam.domains))
    old = fam.base(rng)
    edits = [e for e in fam.edits if e.applies(old)]
    bug_fixes = [e for e in edits if e.kind == "fix_bug"]
    if bug_fixes:  # a program with a planted bug is only ever paired with its fix
        edits = bug_fixes
    if not edits:
        return "none", None, "no_applicable_edit"
    edit = rng.choices(edits, weights=[KIND_WEIGHTS.get(e.kind, 1.0) * e.weight for e in edits])[0]
    new = edit.apply(old, rng)
    steps = [(edit, old, new)]
    if edit.behaviour_change and edit.kind != "fix_bug" and _chance(rng, COMBINED_SHARE):
        # a second, independent behaviour change in the same request: harder and less template-like
        touched = {k for k in new if new[k] != old[k]}
        more = [e for e in fam.edits if e.behaviour_change and e.kind not in (edit.kind, "fix_bug") and e.applies(new)]
        rng.shuffle(more)
        for e2 in more[:3]:
            s2 = rng.random()
            newer = e2.apply(new, random.Random(s2))
            if touched & {k for k in newer if newer[k] != new[k]}:
                continue
            if _each_step_observable(fam, names, rng, old, new, newer, e2.apply(old, random.Random(s2))):
                steps.append((e2, new, newer))
                new = newer
                break
    old_code, new_code = fam.render(dict(names), old), fam.render(dict(names), new)
    if old_code == new_code:
        return edit.kind, None, "unchanged"
    calls = fam.inputs(rng, names, old, new)
    reason = run_checked(fam, names, old, new, old_code, new_code, calls, edit.behaviour_change)
    if reason:
        return edit.kind, None, reason
    parts = []
    for e, before, after in steps:
        fmt = {**names, **e.extra(names, before, after)}
        if isinstance(fam, StringSearch):
            fmt.setdefault("q", StringSearch.QUERY[old["mode"]][0])
        text = rng.choice(e.phrasings)
        text = (e.phrasings[0] if first_phrasing else text).format(**fmt).strip()
        parts.append(text[0].upper() + text[1:] if text[0] != "`" else text)
    if len(parts) == 2:
        glue = rng.choice([" ", " Also, ", " In addition, ", "\n", " Then: "])
        glue = " " if first_phrasing else glue
        second = parts[1] if glue in (" ", "\n") else parts[1][0].lower() + parts[1][1:] if parts[1][0] != "`" else parts[1]
        instruction = parts[0].rstrip() + glue + second
    else:
        instruction = parts[0]
    variant = f"{fam.name}:{edit.kind}:{index}"
    test, why = build_test(fam, names, new, old_code, new_code, calls, edit.behaviour_change)
    extra = {"test": test} if test else {"test_dropped": why}
    return edit.kind, {
        "kind": edit.kind, "instruction": instruction, "input": old_code, "output": new_code, "scenario": names["scenario"],
        "intent": edit.intent, "behaviour_change": edit.behaviour_change, "origin": f"program:{fam.name}",
        "also": [e.kind for e, _, _ in steps[1:]],
        "variant": variant, "family": fam.name, "function": names["fn"], **extra,
    }, None
