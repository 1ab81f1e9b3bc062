"""Edit prompts shared by training (04) and evaluation (05): one template, one place.

A template turns (instruction, input code) into the model's prompt text and an output program into
the response the model is trained to write. The template name is part of every cache key, so a
change here invalidates cached generations. The tuned model is always evaluated with the template
it was trained on; the base model is scored with each of ``BASE_PROMPTS`` and keeps its best.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

FENCE = "```"


@dataclass(frozen=True)
class Template:
    name: str
    chat: bool  # rendered with the tokenizer's chat template
    system: str | None
    user: str  # format string with {instruction} and {input}
    response: str  # format string with {output}
    stop: tuple[str, ...]  # generation may stop at any of these (after the response starts)
    edit_format: str = "whole"  # "whole": the reply is the edited program; "diff": search/replace blocks


TEMPLATES: dict[str, Template] = {
    # Chat template, code fenced, explicit reply format (best untuned prompt measured so far).
    "chat_v1": Template(
        name="chat_v1",
        chat=True,
        system=None,
        user=(
            "{instruction}\n\n```python\n{input}\n```\n\n"
            "Reply with the complete edited code in one ```python block."
        ),
        response="```python\n{output}\n```",
        stop=("\n```\n", "\n```<", "<|im_end|>"),
    ),
    # Same prompt as chat_v1, but the reply names only the changed region: SEARCH/REPLACE blocks inside
    # one fence. Loss falls on the edit instead of on copying the program, and replies are short.
    "chat_diff_v1": Template(
        name="chat_diff_v1",
        chat=True,
        system=None,
        user=(
            "{instruction}\n\n```python\n{input}\n```\n\n"
            "Reply with the changed lines as SEARCH/REPLACE blocks in one ```python block."
        ),
        response="```python\n{output}\n```",
        stop=("\n```\n", "\n```<", "<|im_end|>"),
        edit_format="diff",
    ),
    # Chat template with a system role that describes the task.
    "chat_system_v1": Template(
        name="chat_system_v1",
        chat=True,
        system="You are an expert Python programmer. You edit code exactly as the user asks and "
        "return the whole edited program.",
        user="Instruction: {instruction}\n\nCode:\n```python\n{input}\n```",
        response="```python\n{output}\n```",
        stop=("\n```\n", "\n```<", "<|im_end|>"),
    ),
    # Plain instruction + code, no chat markup (the DESIGN's first baseline).
    "plain_v1": Template(
        name="plain_v1",
        chat=False,
        system=None,
        user="{instruction}\n\n{input}\n\nEdited code:\n",
        response="{output}\n",
        stop=("\n\n\n\n",),  # two blank lines are PEP 8 between definitions: not an end
    ),
    # The paper's Alpaca prompt (instruction + input -> response).
    "alpaca_v1": Template(
        name="alpaca_v1",
        chat=False,
        system=None,
        user=(
            "Below is an instruction that describes a task, paired with an input that provides further "
            "context. Write a response that appropriately completes the request.\n\n"
            "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
        ),
        response="{output}",
        stop=("\n### ",),
    ),
    # Markdown sections, no chat markup: for a base (not instruction-tuned) LM, which continues a document
    # rather than answering, the fenced "before" block and the section headings ask for a fenced "after" one.
    "markdown_v1": Template(
        name="markdown_v1",
        chat=False,
        system=None,
        user="### Code\n```python\n{input}\n```\n\n### Change\n{instruction}\n\n### Changed code\n",
        response="```python\n{output}\n```",
        stop=("\n### ",),
    ),
}

BASE_PROMPTS = ("chat_v1", "chat_system_v1", "plain_v1", "alpaca_v1", "markdown_v1")


def fingerprint(t: Template) -> str:
    """What a template's cache keys hash: its fields, the edit format only where it is not the default
    (so adding that field kept every whole-program cache valid)."""
    fields = {k: v for k, v in vars(t).items() if not (k == "edit_format" and v == "whole")}
    return repr(sorted(fields.items())) if "edit_format" in fields else repr(t).replace(", edit_format='whole'", "")


def get_template(name: str) -> Template:
    if name not in TEMPLATES:
        raise ValueError(f"unknown prompt template {name!r}; templates: {', '.join(TEMPLATES)}")
    return TEMPLATES[name]


def render_prompt(template: str | Template, instruction: str, input_code: str, tokenizer=None) -> str:
    """The prompt text up to where the model starts its response."""
    t = get_template(template) if isinstance(template, str) else template
    user = t.user.format(instruction=instruction.strip(), input=input_code.rstrip("\n"))
    if not t.chat:
        return user
    if tokenizer is None:
        raise ValueError(f"template {t.name!r} needs the tokenizer's chat template")
    messages = ([{"role": "system", "content": t.system}] if t.system else []) + [{"role": "user", "content": user}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_response(template: str | Template, output_code: str, input_code: str = "") -> str:
    """The response text the model is trained to produce (EOS is appended by the trainer): the edited
    program, or for a ``diff`` template the search/replace blocks that turn the input into it."""
    t = get_template(template) if isinstance(template, str) else template
    body = make_diff(input_code, output_code) if t.edit_format == "diff" else output_code
    return t.response.format(output=body.rstrip("\n"))


SEARCH, DIVIDER, REPLACE = "<<<<<<< SEARCH", "=======", ">>>>>>> REPLACE"


def make_diff(before: str, after: str, merge_gap: int = 2) -> str:
    """Search/replace blocks that turn ``before`` into ``after``, line based. Changes closer than
    ``merge_gap`` unchanged lines share one block; each block's search text is widened by context
    lines until it occurs exactly once in ``before`` (so applying it is unambiguous)."""
    import difflib

    a, b = before.rstrip("\n").split("\n"), after.rstrip("\n").split("\n")
    hunks: list[list[int]] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        if hunks and i1 - hunks[-1][1] <= merge_gap:
            hunks[-1][1], hunks[-1][3] = i2, j2
        else:
            hunks.append([i1, i2, j1, j2])
    text = "\n".join(a)
    blocks = []
    for i1, i2, j1, j2 in hunks:
        while (i1 == i2 or text.count("\n".join(a[i1:i2])) != 1) and (i1 > 0 or i2 < len(a)):
            if i1 > 0:
                i1, j1 = i1 - 1, j1 - 1
            elif i2 < len(a):
                i2, j2 = i2 + 1, j2 + 1
        blocks.append("\n".join([SEARCH, *a[i1:i2], DIVIDER, *b[j1:j2], REPLACE]))
    return "\n".join(blocks)


_BLOCK = re.compile(r"^<<<<<<< SEARCH[ \t]*\n(.*?)^=======[ \t]*\n(.*?)^>>>>>>> REPLACE[ \t]*$", re.S | re.M)


def apply_diff(before: str, reply: str) -> str | None:
    """``before`` with each search/replace block of ``reply`` applied in order, or None when the reply
    has no block. A search text is matched exactly, else line by line ignoring trailing spaces; a block
    that matches nowhere is skipped (the program stays as it was there, and so usually fails its test)."""
    blocks = _BLOCK.findall(reply.replace("\r\n", "\n") + "\n")
    if not blocks:
        return None
    lines = before.rstrip("\n").split("\n")
    for old, new in blocks:
        old_l, new_l = old[:-1].split("\n") if old else [], new[:-1].split("\n") if new else []
        at = _find_lines(lines, old_l)
        if at is not None:
            lines[at: at + len(old_l)] = new_l
    return "\n".join(lines).rstrip() + "\n"


def _find_lines(lines: list[str], old: list[str]) -> int | None:
    if not old:
        return None
    for strip in (lambda x: x, str.rstrip, str.strip):
        want = [strip(x) for x in old]
        for i in range(len(lines) - len(old) + 1):
            if [strip(x) for x in lines[i: i + len(old)]] == want:
                return i
    return None


def edited_program(template: str | Template, reply: str, input_code: str) -> str:
    """The edited program a reply stands for: blocks applied to the input for a ``diff`` template
    (a reply with no block but a whole program is read as that program), else the extracted code."""
    t = get_template(template) if isinstance(template, str) else template
    if t.edit_format == "diff":
        text = reply.replace("<|im_end|>", "").replace("<|endoftext|>", "")
        applied = apply_diff(input_code, text)
        if applied is not None:
            return applied
    return extract_code(reply)


_FENCE_LINE = re.compile(r"^[ \t]*```", re.M)


def reply_end(template: str | Template, text: str) -> int | None:
    """Where a generated reply is complete, or None while it is not: just after the closing fence of
    the first fenced block (fence lines alternate open/close, so the second one closes the block), or
    just before a non-fence stop string of the template. A fence-bearing stop such as ``"\n```\n"``
    is handled by the fence rule, so an opening fence after a line of prose never ends the reply."""
    t = get_template(template) if isinstance(template, str) else template
    ends: list[int] = []
    fences = list(_FENCE_LINE.finditer(text))
    if len(fences) >= 2:
        ends.append(fences[1].end())
    for stop in t.stop:
        if FENCE in stop:
            continue
        i = text.find(stop)
        if i >= 0:
            ends.append(i)
    return min(ends) if ends else None


def looping(text: str, source: str, repeats: int = 3, max_block: int = 8) -> bool:
    """True when ``text`` ends with a block of 1..``max_block`` lines written ``repeats`` times in a row
    that its ``source`` does not repeat so: a small tuned model can fall into such a loop and would write
    it up to its token bound, so the caller stops the reply there (it is scored as written). Only complete
    lines count: a token often carries a newline and the next line's indent, so the text rarely ends at "\n"."""
    end = text.rfind("\n")
    if repeats < 2 or end < 0:
        return False
    lines = text[:end].split("\n")
    for k in range(1, max_block + 1):
        if len(lines) < k * repeats:
            break
        block = lines[-k:]
        if not any(line.strip() for line in block):
            continue
        if all(lines[-k * (r + 1):len(lines) - k * r] == block for r in range(1, repeats)):
            run = "\n".join(block * repeats)
            if run not in source:
                return True
    return False


def cut_reply(template: str | Template, text: str) -> str:
    """The reply up to where it is complete (the whole text when it never completed)."""
    end = reply_end(template, text)
    return text if end is None else text[:end]


_FENCED = re.compile(r"```[ \t]*(?:python|py|Python|python3)?[ \t]*\n(.*?)(?:\n```|\Z)", re.S)


def extract_code(reply: str) -> str:
    """The edited program from a model reply: the longest fenced block that parses as Python (else the
    longest fenced block), else the reply without leading/trailing prose lines. Handles missing closing
    fences (a reply cut at its token bound) and chat end tokens."""
    text = reply.replace("<|im_end|>", "").replace("<|endoftext|>", "")
    blocks = [b for b in _FENCED.findall(text) if b.strip()]
    if blocks:
        parsing = [b for b in blocks if _parses(b)]
        return max(parsing or blocks, key=len).rstrip() + "\n"
    # No fence: drop leading/trailing prose lines that are clearly not code.
    lines = text.strip("\n").splitlines()
    while lines and _is_prose(lines[-1]):
        lines.pop()
    while lines and _is_prose(lines[0]):
        lines.pop(0)
    return "\n".join(lines).rstrip() + "\n" if lines else ""


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


_CODE_START = re.compile(
    r"^(?:(?:def|class|import|from|return|if|elif|else|for|while|try|except|finally|with|raise|assert|yield|"
    r"async|await|pass|break|continue|global|nonlocal|lambda|del|print|not|and|or|in|is)\b|[@#\"')\]}]|"
    r"[A-Za-z_][\w.]*\s*(?:[-+*/%&|^]?=|[(\[:.,]|$))"
)


def _is_prose(line: str) -> bool:
    """An English sentence, not a line of Python: it starts with a capitalized word that is not the
    start of a statement or expression, and has at least three words."""
    s = line.strip()
    if not s or _CODE_START.match(s):
        return False
    return s[0].isupper() and len(s.split()) >= 3
