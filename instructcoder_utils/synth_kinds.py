"""Structural edit kinds over real Python source (functions and classes from the standard library).

Why: real code has the shapes, names and idioms that hand-written templates lack. Every kind here
is a genuine AST transformation of one extracted function or class (rendered with ``ast.unparse`` on
both sides so the diff is only the edit) together with a check that the edit is what the instruction
says: the new name is present and the old one gone, the annotations were added and nothing else
changed, the prints became logger calls, and so on. These are refactorings: no execution, because
library code rarely runs on its own.
"""

from __future__ import annotations

import ast
import builtins
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

BUILTIN_NAMES = set(dir(builtins))


@dataclass
class Unit:
    """One function or class extracted from a module, with the module's imports for context.

    ``fresh()`` re-parses the unit's own source: a new tree to transform, much faster than deepcopy.
    """

    module: str
    qualname: str
    node: ast.AST
    imports: list[ast.stmt] = field(default_factory=list)
    source: str = ""
    _code: str | None = None

    def fresh(self) -> ast.AST:
        try:
            return ast.parse(self.source).body[0]
        except SyntaxError:  # dedenting broke a multi-line string: fall back to the unparsed node
            self.source = ast.unparse(self.node)
            return ast.parse(self.source).body[0]

    @property
    def code(self) -> str:
        """The input side, rendered from the same source as every output so only the edit differs."""
        if self._code is None:
            self._code = ast.unparse(self.fresh())
        return self._code

    @property
    def is_class(self) -> bool:
        return isinstance(self.node, ast.ClassDef)


@dataclass
class StructEdit:
    kind: str
    intent: str
    phrasings: list[str]
    transform: Callable[[Unit, random.Random], tuple[str, str, dict] | None]
    check: Callable[[str, str, dict], bool]
    behaviour_change: bool = False


# --------------------------------------------------------------------------- helpers
@lru_cache(maxsize=512)
def all_nodes(node: ast.AST) -> tuple[ast.AST, ...]:
    """``ast.walk`` as a cached tuple: several kinds look at the same unit."""
    return tuple(ast.walk(node))


def names_in(node: ast.AST) -> set[str]:
    """Every identifier a rename could collide with: names, arguments, attributes, definitions."""
    out: set[str] = set()
    for n in all_nodes(node):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.arg):
            out.add(n.arg)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Global, ast.Nonlocal)):
            out.update(n.names)
        elif isinstance(n, ast.alias):
            out.add((n.asname or n.name).split(".")[0])
    return out


def ident_tokens(code: str) -> set[str]:
    """Identifiers as they appear in the code (outside strings), via the AST."""
    return names_in(ast.parse(code))


def body_without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[1:]
    return body


def has_docstring(node: ast.AST) -> bool:
    return ast.get_docstring(node) is not None


def words(name: str) -> list[str]:
    name = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip("_"))
    return [w.lower() for w in name.split("_") if w]


def human(name: str) -> str:
    return " ".join(words(name))


@lru_cache(maxsize=512)
def own_nodes(fn: ast.AST) -> tuple[ast.AST, ...]:
    """Nodes of a function, not descending into nested functions, lambdas or classes."""
    out, stack = [], list(ast.iter_child_nodes(fn))
    while stack:
        n = stack.pop()
        out.append(n)
        if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(n))
    return tuple(out)


def is_func(node: ast.AST) -> bool:
    return isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))


def strip_annotations(tree: ast.AST) -> str:
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n.returns = None
        elif isinstance(n, ast.arg):
            n.annotation = None
    return ast.dump(tree)


def strip_docstrings(tree: ast.AST) -> str:
    for n in ast.walk(tree):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            n.body = body_without_docstring(n.body) or [ast.Pass()]
    return ast.dump(tree)


LOGGER_SETUP = "import logging\n\nlogger = logging.getLogger(__name__)\n\n\n"


class _Renamer(ast.NodeTransformer):
    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.old:
            node.id = self.new
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        if node.arg == self.old:
            node.arg = self.new
        self.generic_visit(node)
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if node.name == self.old:
            node.name = self.new
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        if node.name == self.old:
            node.name = self.new
        self.generic_visit(node)
        return node

    def visit_keyword(self, node: ast.keyword) -> ast.AST:
        self.generic_visit(node)
        return node


# --------------------------------------------------------------------------- renames
VERB_SYNONYMS = {
    "get": "fetch", "fetch": "get", "make": "build", "build": "make", "create": "make", "parse": "decode", "decode": "parse",
    "read": "load", "load": "read", "write": "save", "save": "write", "find": "locate", "check": "validate",
    "validate": "check", "compute": "calculate", "calculate": "compute", "convert": "transform", "handle": "process",
    "process": "handle", "add": "append", "remove": "delete", "delete": "remove", "update": "refresh", "format": "render",
    "render": "format", "split": "divide", "join": "combine", "open": "acquire", "close": "release", "set": "assign",
    "init": "setup", "reset": "clear", "clear": "reset", "run": "execute", "execute": "run", "send": "transmit",
    "print": "show", "show": "display", "emit": "produce", "encode": "serialize", "copy": "clone", "match": "test",
    "search": "scan", "scan": "search", "normalize": "canonicalize", "append": "push", "pop": "take", "to": "as",
    "is": "check_is", "has": "contains", "iter": "iterate", "register": "enroll", "lookup": "resolve", "resolve": "lookup",
}
VAR_RENAMES = {
    "s": "text", "i": "index", "j": "inner", "n": "count", "f": "fileobj", "fp": "fileobj", "d": "mapping", "l": "items",
    "lst": "items", "res": "result", "ret": "result", "rv": "result", "tmp": "temp", "buf": "buffer", "msg": "message",
    "e": "exc", "err": "error", "val": "value", "v": "value", "k": "key", "idx": "index", "cnt": "count", "num": "number",
    "p": "part", "fn": "func", "cb": "callback", "x": "value", "m": "match", "mo": "match", "c": "char", "ch": "char",
    "data": "payload", "result": "outcome", "path": "file_path", "value": "current_value", "text": "content", "parts": "pieces",
    "lines": "rows", "line": "row", "key": "lookup_key", "items": "entries", "obj": "target", "name": "item_name",
    "t": "item", "a": "first", "b": "second", "r": "response", "q": "queue_", "w": "width", "h": "height", "sz": "size",
    "pos": "position", "start": "begin", "end": "stop", "args": "arguments", "kw": "options", "kwds": "options",
    "ctx": "context", "conf": "config", "cfg": "config", "attr": "attribute", "attrs": "attributes", "node": "current_node",
    "item": "element", "filename": "file_name", "dirname": "directory", "fd": "descriptor", "sock": "connection",
    "resp": "response", "req": "request", "addr": "address", "hdr": "header", "hdrs": "headers", "src": "source",
    "dst": "destination", "dest": "destination", "prefix": "head", "suffix": "tail", "size": "length", "out": "output",
}


def _new_func_name(name: str, taken: set[str], rng: random.Random) -> tuple[str, str] | None:
    """A plausible new name and the reason to say in the instruction."""
    core = name.strip("_")
    opts: list[tuple[str, str]] = []
    if re.search(r"[a-z][A-Z]", core) and not core[0].isupper():
        opts.append((("_" if name.startswith("_") else "") + "_".join(words(core)), "snake_case"))
    ws = words(core)
    if len(ws) >= 2 and ws[0] in VERB_SYNONYMS and "_" in core:
        opts.append((name[: len(name) - len(core)] + "_".join([VERB_SYNONYMS[ws[0]]] + ws[1:]), "synonym"))
    if name.startswith("_") and not name.startswith("__") and core.isidentifier():
        opts.append((core, "public"))
    if not name.startswith("_") and "_" in core and len(ws) >= 2:
        opts.append(("_" + name, "private"))
    opts = [(o, why) for o, why in opts if o != name and o not in taken and o not in BUILTIN_NAMES and o.isidentifier()]
    return rng.choice(opts) if opts else None


def t_rename_function(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node) or node.name.startswith("__"):
        return None
    taken = names_in(node)
    pick = _new_func_name(node.name, taken, rng)
    if not pick:
        return None
    new, why = pick
    out = _Renamer(node.name, new).visit(u.fresh())
    return u.code, ast.unparse(out), {"old": node.name, "new": new, "why": why}


def t_rename_class(u: Unit, rng: random.Random):
    node = u.node
    if not u.is_class or node.name.startswith("_"):
        return None
    taken = names_in(node)
    ws = words(node.name)
    opts = []
    if len(ws) >= 2:
        opts.append("".join(w.capitalize() for w in ws[1:] + ws[:1]) if ws[-1] not in ("error", "exception") else None)
    for suffix in ("Base", "Impl", "Helper", "Handler", "Manager"):
        if not node.name.endswith(suffix):
            opts.append(node.name + suffix)
    if node.name.endswith("Error"):
        opts.append(node.name[:-5] + "Exception")
    opts = [o for o in opts if o and o != node.name and o not in taken and o not in BUILTIN_NAMES]
    if not opts:
        return None
    new = rng.choice(opts)
    out = _Renamer(node.name, new).visit(u.fresh())
    return u.code, ast.unparse(out), {"old": node.name, "new": new, "why": "class"}


def t_rename_variable(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node) or any(isinstance(n, (ast.Global, ast.Nonlocal)) for n in all_nodes(node)):
        return None
    params = {a.arg for a in node.args.args + node.args.kwonlyargs + node.args.posonlyargs} - {"self", "cls"}
    local = {n.id for n in own_nodes(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    taken = names_in(node)
    # a name used in a nested scope that we do not rename would change meaning: only rename names whose every use is ours
    inner = {n.id for f in all_nodes(node) if f is not node and isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
             for n in ast.walk(f) if isinstance(n, ast.Name)}
    attrs = {n.attr for n in all_nodes(node) if isinstance(n, ast.Attribute)}
    cands = sorted((params | local) - inner - attrs - {"self", "cls", "_"})
    cands = [c for c in cands if c in VAR_RENAMES and VAR_RENAMES[c] not in taken and VAR_RENAMES[c] not in BUILTIN_NAMES]
    if not cands:
        return None
    old = rng.choice(cands)
    new = VAR_RENAMES[old]
    out = u.fresh()
    ren = _Renamer(old, new)
    for stmt in out.body:
        ren.visit(stmt)
    for a in out.args.args + out.args.kwonlyargs + out.args.posonlyargs:
        if a.arg == old:
            a.arg = new
    what = "parameter" if old in params else "variable"
    return u.code, ast.unparse(out), {"old": old, "new": new, "what": what}


def c_rename(inp: str, out: str, info: dict) -> bool:
    o, n = ident_tokens(inp), ident_tokens(out)
    return info["old"] in o and info["old"] not in n and info["new"] in n and info["new"] not in o


# --------------------------------------------------------------------------- signatures
def t_keyword_only(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node) or node.args.vararg or node.args.kwonlyargs or not node.args.defaults:
        return None
    a = node.args
    nd = len(a.defaults)
    if nd > len(a.args) or any(x.arg in ("self", "cls") for x in a.args[-nd:]):
        return None
    out = u.fresh()
    b = out.args
    moved = b.args[-nd:]
    b.kwonlyargs = moved
    b.kw_defaults = b.defaults
    b.args = b.args[:-nd]
    b.defaults = []
    names = [m.arg for m in moved]
    return u.code, ast.unparse(out), {"params": names, "list": ", ".join(f"`{x}`" for x in names)}


def c_keyword_only(inp: str, out: str, info: dict) -> bool:
    fi, fo = ast.parse(inp).body[0], ast.parse(out).body[0]
    return ([x.arg for x in fo.args.kwonlyargs] == info["params"] and not fi.args.kwonlyargs
            and [x.arg for x in fi.args.args] == [x.arg for x in fo.args.args] + info["params"])


_LIT_TYPES = {bool: "bool", int: "int", float: "float", str: "str", bytes: "bytes"}


def _returns_type(node: ast.AST) -> str | None:
    own = own_nodes(node)
    if any(isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in own):
        return None
    rets = [n for n in own if isinstance(n, ast.Return)]
    vals = [r.value for r in rets if r.value is not None and not (isinstance(r.value, ast.Constant) and r.value.value is None)]
    if not vals:
        return "None"
    kinds = set()
    for v in vals:
        if isinstance(v, ast.Constant) and type(v.value) in _LIT_TYPES:
            kinds.add(_LIT_TYPES[type(v.value)])
        elif isinstance(v, ast.Compare) or (isinstance(v, ast.UnaryOp) and isinstance(v.op, ast.Not)):
            kinds.add("bool")
        elif isinstance(v, ast.JoinedStr):
            kinds.add("str")
        elif isinstance(v, (ast.List, ast.ListComp)):
            kinds.add("list")
        elif isinstance(v, (ast.Dict, ast.DictComp)):
            kinds.add("dict")
        elif isinstance(v, ast.Call) and isinstance(v.func, ast.Name) and v.func.id in ("len", "int", "str", "bool", "float", "list", "dict", "tuple", "set"):
            kinds.add({"len": "int"}.get(v.func.id, v.func.id))
        else:
            return None
    if len(kinds) != 1:
        return None
    return kinds.pop() + (" | None" if len(vals) < len(rets) else "")


def t_type_hints(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node):
        return None
    a = node.args
    if node.returns or any(x.annotation for x in a.args + a.kwonlyargs + a.posonlyargs):
        return None
    lit_defaults = any(isinstance(d, ast.Constant) and type(d.value) in _LIT_TYPES for d in a.defaults + a.kw_defaults)
    if not lit_defaults and not _returns_type(node):
        return None
    out = u.fresh()
    b = out.args
    added = []
    pos = b.posonlyargs + b.args
    for arg, d in zip(pos[len(pos) - len(b.defaults):], b.defaults, strict=True):
        if isinstance(d, ast.Constant) and type(d.value) in _LIT_TYPES:
            arg.annotation = ast.Name(_LIT_TYPES[type(d.value)])
            added.append(arg.arg)
    for arg, d in zip(b.kwonlyargs, b.kw_defaults, strict=True):
        if isinstance(d, ast.Constant) and type(d.value) in _LIT_TYPES:
            arg.annotation = ast.Name(_LIT_TYPES[type(d.value)])
            added.append(arg.arg)
    ret = _returns_type(node)
    if ret:
        out.returns = ast.parse(ret, mode="eval").body
    if not added and not ret:
        return None
    return u.code, ast.unparse(out), {"params": added, "ret": ret or ""}


def c_type_hints(inp: str, out: str, info: dict) -> bool:
    ti, to = ast.parse(inp), ast.parse(out)
    changed = ast.dump(ti) != ast.dump(to)
    return changed and strip_annotations(ti) == strip_annotations(to)


# --------------------------------------------------------------------------- docstrings
def _docstring_for(node: ast.AST) -> str | None:
    ws = words(node.name)
    if not ws or (len(ws) < 2 and not (is_func(node) and node.args.args)):
        return None  # a one-word name with nothing to document would give a content-free docstring
    if isinstance(node, ast.ClassDef):
        return f"{' '.join(ws).capitalize()}."
    verb = ws[0]
    summary = " ".join(ws).capitalize()
    if verb in ("is", "has", "can", "should"):
        summary = f"Return True if {' '.join(ws[1:]) or 'the condition holds'}."
    elif verb in ("get", "fetch"):
        summary = f"Return the {' '.join(ws[1:]) or 'value'}."
    else:
        summary += "."
    params = [x.arg for x in node.args.posonlyargs + node.args.args + node.args.kwonlyargs if x.arg not in ("self", "cls")]
    lines = [summary]
    if params:
        lines += ["", "Args:"] + [f"    {p}: the {human(p) or p}." for p in params]
    ret = _returns_type(node)
    if ret and ret != "None":
        lines += ["", "Returns:", f"    {ret}."]
    # indented like the body it sits in, as a hand-written docstring would be
    return "\n".join(("    " + ln if ln and i else ln) for i, ln in enumerate(lines)) + ("\n    " if len(lines) > 1 else "")


def t_add_docstring(u: Unit, rng: random.Random):
    node = u.node
    if has_docstring(node) or node.name.startswith("__"):
        return None
    doc = _docstring_for(node)
    if not doc:
        return None
    out = u.fresh()
    out.body.insert(0, ast.Expr(ast.Constant(doc)))
    return u.code, ast.unparse(out), {"name": node.name, "what": "class" if u.is_class else "function"}


def c_add_docstring(inp: str, out: str, info: dict) -> bool:
    ni, no = ast.parse(inp).body[0], ast.parse(out).body[0]
    return not has_docstring(ni) and has_docstring(no) and strip_docstrings(ast.parse(inp)) == strip_docstrings(ast.parse(out))


def t_remove_docstring_args(u: Unit, rng: random.Random):
    """Rewrite a one-line docstring into a fuller Google-style one (keeps the summary)."""
    node = u.node
    if not is_func(node) or not has_docstring(node):
        return None
    doc = ast.get_docstring(node)
    params = [x.arg for x in node.args.posonlyargs + node.args.args + node.args.kwonlyargs if x.arg not in ("self", "cls")]
    if "\n" in doc or not params or len(doc) > 90:
        return None
    new = doc.rstrip(".") + ".\n\n    Args:\n" + "".join(f"        {p}: the {human(p) or p}.\n" for p in params) + "    "
    out = u.fresh()
    out.body[0] = ast.Expr(ast.Constant(new))
    return u.code, ast.unparse(out), {"name": node.name, "params": params}


def c_rewrite_docstring(inp: str, out: str, info: dict) -> bool:
    doc = ast.get_docstring(ast.parse(out).body[0]) or ""
    return "Args:" in doc and all(f"{p}:" in doc for p in info["params"]) and strip_docstrings(ast.parse(inp)) == strip_docstrings(ast.parse(out))


# --------------------------------------------------------------------------- logging
def _is_print(n: ast.AST) -> bool:
    return isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "print"


class _PrintToLog(ast.NodeTransformer):
    def __init__(self) -> None:
        self.count = 0
        self.ok = True

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if not _is_print(node):
            return node
        level = "info"
        for kw in node.keywords:
            if kw.arg == "file" and "stderr" in ast.unparse(kw.value):
                level = "warning"
            elif kw.arg == "file" or kw.arg in ("sep", "end", "flush") or kw.arg is None:
                self.ok = False
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.ok = False
        args = node.args
        if len(args) == 1 and isinstance(args[0], (ast.Constant, ast.JoinedStr)) and not (isinstance(args[0], ast.Constant) and "%" in str(args[0].value)):
            call_args = [args[0]]
        else:
            call_args = [ast.Constant(" ".join(["%s"] * len(args)))] + list(args)
        self.count += 1
        return ast.Call(ast.Attribute(ast.Name("logger"), level), call_args, [])


def t_print_logging(u: Unit, rng: random.Random):
    node = u.node
    n_print = sum(1 for n in all_nodes(node) if _is_print(n))
    if not n_print or any(isinstance(n, ast.Name) and n.id == "logger" for n in all_nodes(node)):
        return None
    tr = _PrintToLog()
    out = tr.visit(u.fresh())
    if not tr.ok or tr.count != n_print:
        return None
    return u.code, LOGGER_SETUP + ast.unparse(out), {"n": n_print, "name": node.name}


def c_print_logging(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    logs = [n for n in ast.walk(to) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "logger"]
    return not any(_is_print(n) for n in ast.walk(to)) and len(logs) == info["n"] and "getLogger" in out


def t_log_errors(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node) or any(isinstance(n, ast.Name) and n.id == "logger" for n in all_nodes(node)):
        return None
    if not any(isinstance(h, ast.ExceptHandler) and h.type is not None for h in own_nodes(node)):
        return None
    out = u.fresh()
    handlers = [h for h in own_nodes(out) if isinstance(h, ast.ExceptHandler) and h.type is not None]
    if not handlers:
        return None
    for h in handlers:
        what = ast.unparse(h.type)
        msg = f"{node.name} failed with {what}" if len(what) < 40 else f"{node.name} failed"
        h.body.insert(0, ast.Expr(ast.Call(ast.Attribute(ast.Name("logger"), "exception"), [ast.Constant(msg)], [])))
    return u.code, LOGGER_SETUP + ast.unparse(out), {"n": len(handlers), "name": node.name}


def c_log_errors(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    hs = [h for h in ast.walk(to) if isinstance(h, ast.ExceptHandler) and h.body and "logger.exception" in ast.unparse(h.body[0])]
    return len(hs) >= info["n"] and "getLogger" in out


# --------------------------------------------------------------------------- constants and parameters
def _magic_literals(node: ast.AST) -> list[tuple[ast.Constant, str]]:
    """Numeric literals with a context that suggests a name, e.g. ``width=72`` or ``len(x) > 255``."""
    found = []
    for n in own_nodes(node):
        if isinstance(n, ast.keyword) and n.arg and isinstance(n.value, ast.Constant) and type(n.value.value) in (int, float) \
                and n.value.value not in (0, 1, -1, 2) and not isinstance(n.value.value, bool):
            found.append((n.value, n.arg))
        elif isinstance(n, ast.Compare) and len(n.comparators) == 1 and isinstance(n.comparators[0], ast.Constant) \
                and type(n.comparators[0].value) is int and n.comparators[0].value not in (0, 1, -1, 2):
            left = n.left
            if isinstance(left, ast.Call) and isinstance(left.func, ast.Name) and left.func.id == "len" and left.args \
                    and isinstance(left.args[0], (ast.Name, ast.Attribute)):
                base = left.args[0].id if isinstance(left.args[0], ast.Name) else left.args[0].attr
                found.append((n.comparators[0], f"max_{base}_length"))
            elif isinstance(left, ast.Name):
                found.append((n.comparators[0], f"{left.id}_limit"))
            elif isinstance(left, ast.Attribute):
                found.append((n.comparators[0], f"{left.attr}_limit"))
    return found


def _const_name(hint: str) -> str:
    return "_".join(words(hint)).upper()


def t_extract_constant(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node):
        return None
    lits = _magic_literals(node)
    if not lits:
        return None
    lit, hint = rng.choice(lits)
    name = _const_name(hint if hint.startswith(("max_", "min_", "default")) or "limit" in hint else "default_" + hint)
    if name in names_in(node) or not name.isidentifier():
        return None
    out = u.fresh()
    value = lit.value
    idx = next(i for i, n in enumerate(own_nodes(node)) if n is lit)
    target = own_nodes(out)[idx]
    count = 0
    for n in ast.walk(out):
        for fname, val in ast.iter_fields(n):
            if val is target:
                setattr(n, fname, ast.Name(name))
                count += 1
            elif isinstance(val, list):
                for i, x in enumerate(val):
                    if x is target:
                        val[i] = ast.Name(name)
                        count += 1
    if count != 1:
        return None
    return u.code, f"{name} = {value!r}\n\n\n" + ast.unparse(out), {"name": name, "value": value, "fn": node.name}


def c_extract_constant(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    first = to.body[0]
    return (isinstance(first, ast.Assign) and first.targets[0].id == info["name"] and first.value.value == info["value"]
            and any(isinstance(n, ast.Name) and n.id == info["name"] for n in ast.walk(to.body[-1])))


def t_parametrize(u: Unit, rng: random.Random):
    """Turn a hard-coded literal into a new parameter whose default is that literal."""
    node = u.node
    if not is_func(node) or node.args.vararg or node.args.kwarg:
        return None
    lits = _magic_literals(node)
    if not lits:
        return None
    lit, hint = rng.choice(lits)
    pname = "_".join(words(hint))
    if pname in names_in(node) or not pname.isidentifier():
        return None
    out = u.fresh()
    idx = next(i for i, n in enumerate(own_nodes(node)) if n is lit)
    target = own_nodes(out)[idx]
    for n in ast.walk(out):
        for fname, val in ast.iter_fields(n):
            if val is target:
                setattr(n, fname, ast.Name(pname))
    out.args.kwonlyargs.append(ast.arg(pname))
    out.args.kw_defaults.append(ast.Constant(lit.value))
    return u.code, ast.unparse(out), {"param": pname, "value": lit.value, "fn": node.name}


def c_parametrize(inp: str, out: str, info: dict) -> bool:
    fo = ast.parse(out).body[0]
    kws = {a.arg: d for a, d in zip(fo.args.kwonlyargs, fo.args.kw_defaults, strict=True)}
    return info["param"] in kws and kws[info["param"]].value == info["value"] and info["param"] not in ident_tokens(inp)


# --------------------------------------------------------------------------- f-strings
_PCT = re.compile(r"%(?:\((\w+)\))?([-#0 +]*\d*(?:\.\d+)?)([srd%])")


def _pct_to_fstring(fmt: str, args: list[ast.expr]) -> ast.JoinedStr | None:
    parts: list[ast.expr] = []
    pos, ai = 0, 0
    for m in _PCT.finditer(fmt):
        if m.group(1) or m.group(2):
            return None
        if m.start() > pos:
            parts.append(ast.Constant(fmt[pos: m.start()]))
        pos = m.end()
        if m.group(3) == "%":
            parts.append(ast.Constant("%"))
            continue
        if m.group(3) == "d" or ai >= len(args):
            return None
        parts.append(ast.FormattedValue(args[ai], ord("r") if m.group(3) == "r" else -1, None))
        ai += 1
    if ai != len(args):
        return None
    if pos < len(fmt):
        parts.append(ast.Constant(fmt[pos:]))
    return ast.JoinedStr(_merge_consts(parts))


def _merge_consts(parts: list[ast.expr]) -> list[ast.expr]:
    out: list[ast.expr] = []
    for p in parts:
        if out and isinstance(p, ast.Constant) and isinstance(out[-1], ast.Constant):
            out[-1] = ast.Constant(out[-1].value + p.value)
        else:
            out.append(p)
    return out


_BRACE = re.compile(r"\{(\d*)(![rsa])?(:[^{}]*)?\}")


def _format_to_fstring(fmt: str, args: list[ast.expr]) -> ast.JoinedStr | None:
    if "{{" in fmt or "}}" in fmt:
        return None
    parts: list[ast.expr] = []
    pos, auto = 0, 0
    for m in _BRACE.finditer(fmt):
        if m.start() > pos:
            parts.append(ast.Constant(fmt[pos: m.start()]))
        pos = m.end()
        if m.group(1):
            i = int(m.group(1))
        else:
            i, auto = auto, auto + 1
        if i >= len(args):
            return None
        conv = {"!r": ord("r"), "!s": ord("s"), "!a": ord("a")}.get(m.group(2) or "", -1)
        spec = ast.JoinedStr([ast.Constant(m.group(3)[1:])]) if m.group(3) else None
        if m.group(3) and ("{" in m.group(3)):
            return None
        parts.append(ast.FormattedValue(args[i], conv, spec))
    if "{" in fmt[pos:] or "}" in fmt[pos:] or any("{" in p.value or "}" in p.value for p in parts if isinstance(p, ast.Constant)):
        return None
    if pos < len(fmt):
        parts.append(ast.Constant(fmt[pos:]))
    return ast.JoinedStr(_merge_consts(parts))


def _simple(e: ast.expr) -> bool:
    return isinstance(e, (ast.Name, ast.Attribute, ast.Subscript, ast.Call, ast.Constant)) and "\\" not in ast.unparse(e) \
        and not any(isinstance(x, (ast.JoinedStr, ast.Lambda)) for x in ast.walk(e)) and "'" not in ast.unparse(e) \
        and '"' not in ast.unparse(e)


class _ToFString(ast.NodeTransformer):
    def __init__(self) -> None:
        self.count = 0

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.op, ast.Mod) and isinstance(node.left, ast.Constant) and isinstance(node.left.value, str):
            args = node.right.elts if isinstance(node.right, ast.Tuple) else None
            if args is None and isinstance(node.right, (ast.Call, ast.Attribute, ast.Constant)) and not (
                    isinstance(node.right, ast.Constant) and isinstance(node.right.value, tuple)):
                args = [node.right]
            if args and all(_simple(a) for a in args):
                js = _pct_to_fstring(node.left.value, args)
                if js is not None:
                    self.count += 1
                    return js
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "format" and isinstance(f.value, ast.Constant) \
                and isinstance(f.value.value, str) and not node.keywords and node.args and all(_simple(a) for a in node.args):
            js = _format_to_fstring(f.value.value, node.args)
            if js is not None:
                self.count += 1
                return js
        return node


def t_fstring(u: Unit, rng: random.Random):
    node = u.node
    if not any((isinstance(n, ast.BinOp) and isinstance(n.op, ast.Mod) and isinstance(n.left, ast.Constant))
               or (isinstance(n, ast.Attribute) and n.attr == "format") for n in all_nodes(node)):
        return None
    tr = _ToFString()
    out = tr.visit(u.fresh())
    if not tr.count:
        return None
    try:
        new = ast.unparse(out)
        ast.parse(new)
    except (SyntaxError, ValueError):
        return None
    return u.code, new, {"n": tr.count, "name": node.name}


def c_fstring(inp: str, out: str, info: dict) -> bool:
    def count(t: ast.AST) -> int:
        return sum(1 for n in ast.walk(t) if isinstance(n, ast.JoinedStr) and any(isinstance(v, ast.FormattedValue) for v in n.values))
    return count(ast.parse(out)) > count(ast.parse(inp))


# --------------------------------------------------------------------------- dead code and imports
def t_dead_code(u: Unit, rng: random.Random):
    """Input: the function with an unreachable statement planted after its final return."""
    node = u.node
    if not is_func(node):
        return None
    body = node.body
    if not isinstance(body[-1], ast.Return) or len(body) < 3:
        return None
    simple = [s for s in body_without_docstring(body)[:-1] if isinstance(s, (ast.Assign, ast.Expr, ast.AugAssign))]
    if not simple:
        return None
    chosen = rng.choice(simple)
    pick = next(i for i, st in enumerate(body) if st is chosen)
    bad = u.fresh()
    bad.body.append(u.fresh().body[pick])
    return ast.unparse(bad), u.code, {"name": node.name}


def c_dead_code(inp: str, out: str, info: dict) -> bool:
    fi, fo = ast.parse(inp).body[0], ast.parse(out).body[0]
    return isinstance(fi.body[-2], ast.Return) and [ast.dump(s) for s in fi.body[:-1]] == [ast.dump(s) for s in fo.body]


def _import_names(stmt: ast.stmt) -> list[str]:
    return [(a.asname or a.name).split(".")[0] for a in stmt.names]


def t_unused_imports(u: Unit, rng: random.Random):
    if not u.imports:
        return None
    used = names_in(u.node)
    simple = [s for s in u.imports if len(s.names) == 1 and s.names[0].name != "*"]
    keep = [s for s in simple if _import_names(s)[0] in used]
    unused = [s for s in simple if _import_names(s)[0] not in used]
    if not unused:
        return None
    extra = rng.sample(unused, min(len(unused), rng.randint(1, 3)))
    order = {id(s): i for i, s in enumerate(u.imports)}
    all_in = sorted(keep + extra, key=lambda s: order[id(s)])
    body = u.code
    inp = "\n".join(ast.unparse(s) for s in all_in) + "\n\n\n" + body
    out = ("\n".join(ast.unparse(s) for s in keep) + "\n\n\n" if keep else "") + body
    return inp, out, {"removed": [_import_names(s)[0] for s in extra], "name": u.node.name}


def c_unused_imports(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    imports = [s for s in to.body if isinstance(s, (ast.Import, ast.ImportFrom))]
    rest = ast.Module([s for s in to.body if s not in imports], [])
    used = names_in(rest)
    ti = ast.parse(inp)
    removed = {n for s in ti.body if isinstance(s, (ast.Import, ast.ImportFrom)) for n in _import_names(s)} - {
        n for s in imports for n in _import_names(s)}
    return all(n in used for s in imports for n in _import_names(s)) and removed == set(info["removed"]) and not (removed & used)


# --------------------------------------------------------------------------- classes
def _init_fields(cls: ast.ClassDef) -> tuple[ast.FunctionDef, list[str]] | None:
    init = next((s for s in cls.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
    if init is None:
        return None
    fields = []
    for n in ast.walk(init):
        if isinstance(n, (ast.Assign, ast.AnnAssign)):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self" and not t.attr.startswith("__") \
                        and t.attr not in fields:
                    fields.append(t.attr)
    return init, fields


def t_add_repr(u: Unit, rng: random.Random):
    node = u.node
    if not u.is_class or any(isinstance(s, ast.FunctionDef) and s.name in ("__repr__", "__getattr__", "__slots__") for s in node.body):
        return None
    got = _init_fields(node)
    if not got or not (1 <= len(got[1]) <= 6):
        return None
    fields = [f for f in got[1] if not f.startswith("_")] or got[1]
    inner = ", ".join(f"{f}={{self.{f}!r}}" for f in fields)
    meth = ast.parse(f'def __repr__(self):\n    return f"{{type(self).__name__}}({inner})"\n').body[0]
    out = u.fresh()
    idx = next(i for i, s in enumerate(out.body) if isinstance(s, ast.FunctionDef) and s.name == "__init__") + 1
    out.body.insert(idx, meth)
    return u.code, ast.unparse(out), {"fields": fields, "name": node.name}


def c_add_repr(inp: str, out: str, info: dict) -> bool:
    co = ast.parse(out).body[0]
    reprs = [s for s in co.body if isinstance(s, ast.FunctionDef) and s.name == "__repr__"]
    return len(reprs) == 1 and all(f"self.{f}" in ast.unparse(reprs[0]) for f in info["fields"]) and "__repr__" not in inp


def t_dataclass(u: Unit, rng: random.Random):
    node = u.node
    if not u.is_class or node.bases or node.keywords or node.decorator_list:
        return None
    init = next((s for s in node.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
    if init is None or init.args.vararg or init.args.kwarg or init.args.kwonlyargs or init.args.posonlyargs:
        return None
    params = init.args.args[1:]
    body = body_without_docstring(init.body)
    if not params or len(body) != len(params):
        return None
    for p, s in zip(params, body, strict=True):
        if not (isinstance(s, ast.Assign) and len(s.targets) == 1 and isinstance(s.targets[0], ast.Attribute)
                and isinstance(s.targets[0].value, ast.Name) and s.targets[0].value.id == "self"
                and s.targets[0].attr == p.arg and isinstance(s.value, ast.Name) and s.value.id == p.arg):
            return None
    defaults = [None] * (len(params) - len(init.args.defaults)) + list(init.args.defaults)
    lines = []
    need_any = False
    for p, d in zip(params, defaults, strict=True):
        if d is not None and not isinstance(d, ast.Constant):
            return None
        ann = ast.unparse(p.annotation) if p.annotation else (_LIT_TYPES.get(type(d.value)) if d is not None and d.value is not None else None)
        if ann is None:
            ann, need_any = "Any", True
        lines.append(f"    {p.arg}: {ann}" + (f" = {ast.unparse(d)}" if d is not None else ""))
    rest = [s for s in node.body if s is not init]
    doc = []
    if rest and has_docstring(node):
        doc, rest = [rest[0]], rest[1:]
    head = "from dataclasses import dataclass\n" + ("from typing import Any\n" if need_any else "") + "\n\n"
    cls_src = f"@dataclass\nclass {node.name}:\n"
    cls_src += "".join("    " + ln + "\n" for d in doc for ln in ast.unparse(d).splitlines())
    cls_src += "\n".join(lines) + "\n"
    for s in rest:
        cls_src += "\n" + "".join("    " + ln + "\n" for ln in ast.unparse(s).splitlines())
    out = head + ast.unparse(ast.parse(cls_src))
    return u.code, out, {"name": node.name, "fields": [p.arg for p in params]}


def c_dataclass(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    cls = next(s for s in to.body if isinstance(s, ast.ClassDef))
    anns = [s.target.id for s in cls.body if isinstance(s, ast.AnnAssign)]
    return any("dataclass" in ast.unparse(d) for d in cls.decorator_list) and anns == info["fields"] and \
        not any(isinstance(s, ast.FunctionDef) and s.name == "__init__" for s in cls.body)


# --------------------------------------------------------------------------- control flow
_NEG = {ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt,
        ast.In: ast.NotIn, ast.NotIn: ast.In, ast.Is: ast.IsNot, ast.IsNot: ast.Is}


def negate(cond: ast.expr) -> ast.expr:
    if isinstance(cond, ast.UnaryOp) and isinstance(cond.op, ast.Not):
        return cond.operand
    if isinstance(cond, ast.Compare) and len(cond.ops) == 1:
        return ast.Compare(cond.left, [_NEG[type(cond.ops[0])]()], cond.comparators)
    return ast.UnaryOp(ast.Not(), cond)


def t_early_return(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node):
        return None
    body = node.body
    last = body[-1]
    if not isinstance(last, ast.If) or last.orelse or len(last.body) < 2:
        return None
    out = u.fresh()
    lo = out.body[-1]
    out.body = out.body[:-1] + [ast.If(negate(lo.test), [ast.Return(None)], [])] + lo.body
    return u.code, ast.unparse(out), {"name": node.name, "cond": ast.unparse(last.test)[:60]}


def c_early_return(inp: str, out: str, info: dict) -> bool:
    fi, fo = ast.parse(inp).body[0], ast.parse(out).body[0]
    n = len(fi.body) - 1
    guard = fo.body[n]
    return (isinstance(fi.body[-1], ast.If) and isinstance(guard, ast.If) and isinstance(guard.body[0], ast.Return)
            and [ast.dump(s) for s in fo.body[n + 1:]] == [ast.dump(s) for s in fi.body[-1].body])


def _append_loops(stmts: list[ast.stmt]) -> list[int]:
    """Indexes i where stmts[i] is ``x = []`` and stmts[i+1] a for loop that only appends to x."""
    hits = []
    for i in range(len(stmts) - 1):
        a, b = stmts[i], stmts[i + 1]
        if not (isinstance(a, ast.Assign) and len(a.targets) == 1 and isinstance(a.targets[0], ast.Name)
                and isinstance(a.value, ast.List) and not a.value.elts and isinstance(b, ast.For) and not b.orelse and len(b.body) == 1):
            continue
        name = a.targets[0].id
        inner = b.body[0]
        cond = None
        if isinstance(inner, ast.If) and not inner.orelse and len(inner.body) == 1:
            cond, inner = inner.test, inner.body[0]
        if (isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Call) and isinstance(inner.value.func, ast.Attribute)
                and inner.value.func.attr == "append" and isinstance(inner.value.func.value, ast.Name)
                and inner.value.func.value.id == name and len(inner.value.args) == 1 and not inner.value.keywords
                and name not in names_in(b.iter) and name not in names_in(inner.value.args[0])
                and (cond is None or name not in names_in(cond))
                and not any(isinstance(x, (ast.Yield, ast.YieldFrom, ast.Await, ast.NamedExpr)) for x in ast.walk(b))):
            hits.append(i)
    return hits


def t_comprehension(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node) or not any(isinstance(n, ast.For) for n in own_nodes(node)) or not any(
            _append_loops(b.body) for b in all_nodes(node) if isinstance(getattr(b, "body", None), list)):
        return None
    out = u.fresh()
    blocks = [n for n in ast.walk(out) if hasattr(n, "body") and isinstance(n.body, list)]
    for blk in blocks:
        hits = _append_loops(blk.body)
        if hits:
            i = hits[0]
            a, loop = blk.body[i], blk.body[i + 1]
            inner = loop.body[0]
            ifs = []
            if isinstance(inner, ast.If):
                ifs, inner = [inner.test], inner.body[0]
            comp = ast.ListComp(inner.value.args[0], [ast.comprehension(loop.target, loop.iter, ifs, 0)])
            blk.body[i: i + 2] = [ast.Assign([ast.Name(a.targets[0].id, ast.Store())], comp, lineno=0)]
            return u.code, ast.unparse(out), {"var": a.targets[0].id, "name": node.name}
    return None


def c_comprehension(inp: str, out: str, info: dict) -> bool:
    to, ti = ast.parse(out), ast.parse(inp)
    lc = sum(isinstance(n, ast.ListComp) for n in ast.walk(to)) - sum(isinstance(n, ast.ListComp) for n in ast.walk(ti))
    fl = sum(isinstance(n, ast.For) for n in ast.walk(ti)) - sum(isinstance(n, ast.For) for n in ast.walk(to))
    return lc == 1 and fl == 1


def t_io_errors(u: Unit, rng: random.Random):
    node = u.node
    if not is_func(node):
        return None
    for i, s in enumerate(node.body):
        if isinstance(s, ast.With) and s.items and isinstance(s.items[0].context_expr, ast.Call) \
                and isinstance(s.items[0].context_expr.func, ast.Name) and s.items[0].context_expr.func.id == "open" \
                and s.items[0].context_expr.args:
            target = ast.unparse(s.items[0].context_expr.args[0])
            if len(target) > 40 or "logger" in names_in(node):
                return None
            out = u.fresh()
            handler = ast.parse(f'try:\n    pass\nexcept OSError as exc:\n    logger.error("cannot open %s: %s", {target}, exc)\n    raise\n').body[0]
            handler.body = [out.body[i]]
            out.body[i] = handler
            return u.code, LOGGER_SETUP + ast.unparse(out), {"name": node.name, "target": target}
    return None


def c_io_errors(inp: str, out: str, info: dict) -> bool:
    to = ast.parse(out)
    return any(isinstance(n, ast.Try) and any(h.type is not None and "OSError" in ast.unparse(h.type) for h in n.handlers)
               and any(isinstance(b, ast.With) for b in n.body) for n in ast.walk(to))


# --------------------------------------------------------------------------- the catalogue
STRUCT_EDITS: list[StructEdit] = [
    StructEdit("rename_function", "refactor", [
        "Rename `{old}` to `{new}` and update every reference.", "Change the name of the function `{old}` to `{new}`.",
        "Call this function `{new}` instead of `{old}`.", "Refactor: `{old}` should be named `{new}`.",
        "Use the name `{new}` for `{old}`, including recursive calls."], t_rename_function, c_rename),
    StructEdit("rename_class", "refactor", [
        "Rename the class `{old}` to `{new}`.", "Change the class name from `{old}` to `{new}` everywhere in this code.",
        "`{old}` should be called `{new}`; update its uses too.", "Give `{old}` the new name `{new}`."], t_rename_class, c_rename),
    StructEdit("rename_variable", "readability", [
        "Rename the {what} `{old}` to `{new}`.", "Use a more descriptive name for `{old}`: call it `{new}`.",
        "Replace the identifier `{old}` with `{new}` throughout the function.", "Improve readability by renaming `{old}` to `{new}`.",
        "Change `{old}` to `{new}` everywhere it is used."], t_rename_variable, c_rename),
    StructEdit("add_keyword_only", "api change", [
        "Make the optional arguments {list} keyword-only.", "Force callers to pass {list} by keyword.",
        "Add a bare `*` so that {list} can only be given as keyword arguments.",
        "Change the signature so the parameters with defaults ({list}) are keyword-only."], t_keyword_only, c_keyword_only),
    StructEdit("add_type_hints", "type hints", [
        "Add type hints to this function.", "Annotate the function with type hints where the types are obvious.",
        "Add type annotations (return type and defaulted parameters).", "Type-annotate the signature.",
        "Include type hints for the return value and the simple parameters."], t_type_hints, c_type_hints),
    StructEdit("add_docstring", "documentation", [
        "Add a docstring to `{name}`.", "Document the {what} `{name}` with a docstring.",
        "Write a short docstring for `{name}` describing its arguments.", "`{name}` has no docstring; add one.",
        "Provide documentation for `{name}` in a docstring."], t_add_docstring, c_add_docstring),
    StructEdit("rewrite_docstring", "documentation", [
        "Expand the docstring of `{name}` with an Args section.", "Rewrite the docstring in Google style, documenting each parameter.",
        "Document every parameter of `{name}` in its docstring.", "Improve the docstring: list the arguments."],
        t_remove_docstring_args, c_rewrite_docstring),
    StructEdit("print_to_logging", "logging", [
        "Replace the print calls with logging.", "Use the logging module instead of print in `{name}`.",
        "Switch from print() to a module-level logger.", "Route the output of `{name}` through `logging` rather than print.",
        "Convert prints to logger calls."], t_print_logging, c_print_logging),
    StructEdit("log_errors", "logging", [
        "Log caught exceptions with logger.exception.", "Add error logging to the except blocks of `{name}`.",
        "Record exceptions that `{name}` handles in the log.", "When an exception is caught, log it with its traceback.",
        "Make the error handlers in `{name}` log what went wrong."], t_log_errors, c_log_errors),
    StructEdit("extract_constant", "readability", [
        "Extract the magic number {value} into a module-level constant `{name}`.",
        "Replace the literal {value} in `{fn}` with a named constant `{name}`.",
        "Move the hard-coded {value} into a constant called `{name}`.", "Introduce a constant `{name}` for {value}.",
        "Give the number {value} a name: define `{name}` at module level and use it."], t_extract_constant, c_extract_constant),
    StructEdit("add_parameter", "add feature", [
        "Make the hard-coded {value} configurable through a keyword-only parameter `{param}` (default {value}).",
        "Add a `{param}` keyword argument to `{fn}` that replaces the literal {value}; keep {value} as the default.",
        "Let callers override {value} via a new `{param}` parameter.", "Turn the constant {value} in `{fn}` into a parameter `{param}`.",
    ], t_parametrize, c_parametrize),
    StructEdit("use_fstrings", "modernize", [
        "Use f-strings instead of %-formatting and str.format.", "Convert the string formatting to f-strings.",
        "Modernize the string formatting in `{name}` with f-strings.", "Rewrite the formatted strings as f-strings.",
        "Switch to f-string literals."], t_fstring, c_fstring),
    StructEdit("remove_dead_code", "cleanup", [
        "Remove the unreachable code at the end of `{name}`.", "Delete the statement after the final return; it never runs.",
        "Clean up dead code in `{name}`.", "There is code after `return` that can never execute. Remove it."],
        t_dead_code, c_dead_code),
    StructEdit("remove_unused_imports", "cleanup", [
        "Remove unused imports.", "Delete the imports that are not used.", "Drop imports this code does not need.",
        "Clean up the import list: {removed_list} is not used.", "Get rid of unused import statements."],
        t_unused_imports, c_unused_imports),
    StructEdit("add_repr", "add feature", [
        "Add a `__repr__` to `{name}` that shows {fields_list}.", "Implement __repr__ for `{name}`.",
        "Give `{name}` a readable repr listing its attributes.", "Make `repr()` of a `{name}` show its fields.",
        "Define `__repr__` on `{name}` for easier debugging."], t_add_repr, c_add_repr),
    StructEdit("to_dataclass", "refactor", [
        "Convert `{name}` into a dataclass.", "Use @dataclass for `{name}` instead of a hand-written __init__.",
        "Refactor `{name}` with the dataclasses module.", "Replace the boilerplate constructor of `{name}` with a dataclass.",
        "Turn `{name}` into a `@dataclass` with fields {fields_list}."], t_dataclass, c_dataclass),
    StructEdit("early_return", "readability", [
        "Invert the final `if` into an early return to reduce nesting.", "Use a guard clause in `{name}`.",
        "Flatten `{name}`: return early when the condition is false.", "Reduce indentation with an early return.",
        "Replace the trailing `if {cond}:` block with a guard clause."], t_early_return, c_early_return),
    StructEdit("loop_to_comprehension", "refactor", [
        "Replace the append loop with a list comprehension.", "Build `{var}` with a list comprehension.",
        "Use a comprehension instead of the for loop that fills `{var}`.", "Simplify `{name}` with a list comprehension.",
        "Turn the loop that appends to `{var}` into a comprehension."], t_comprehension, c_comprehension),
    StructEdit("add_error_handling", "error handling", [
        "Add error handling around the file access: log OSError and re-raise.",
        "Wrap the `open({target})` block in try/except OSError that logs the failure.",
        "Log I/O errors in `{name}` before propagating them.", "Handle OSError when opening {target}: log it, then re-raise.",
        "Catch and log failures to open the file in `{name}`."], t_io_errors, c_io_errors),
]
STRUCT_BY_KIND: dict[str, list[StructEdit]] = {}
for _e in STRUCT_EDITS:
    STRUCT_BY_KIND.setdefault(_e.kind, []).append(_e)


def fmt_fields(info: dict) -> dict[str, Any]:
    extra = {}
    if "removed" in info:
        extra["removed_list"] = ", ".join(f"`{x}`" for x in info["removed"])
    if "fields" in info:
        extra["fields_list"] = ", ".join(f"`{x}`" for x in info["fields"])
    return {**info, **extra}
