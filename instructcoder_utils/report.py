"""Stage 06: the paper's tables and figures from this run's files, and a stand-alone HTML report.

Everything is read from what stages 01-05 wrote under ``outputs/<profile>/``; nothing is recomputed.
Required files missing -> a clear error naming them; optional parts missing -> a visible
"not run in this profile" note in the report.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .files import read_optional_json

# The paper's Table 3: GPT-4-judged accuracy (%) on 134 held-out real commits. Reported beside ours
# only as a reference: the setting (models, judge, test set) differs from ours.
PAPER_TABLE3 = pd.DataFrame(
    [
        ("ChatGPT (gpt-3.5-turbo)", "-", None, 90.5),
        ("LLaMA-7B", "0-shot vs tuned", 7.7, 69.2),
        ("LLaMA-13B", "0-shot vs tuned", 9.7, 75.9),
        ("LLaMA-33B", "0-shot vs tuned", 14.2, 89.3),
        ("BLOOM-560M", "tuned", None, 20.9),
        ("BLOOM-3B", "tuned", None, 51.2),
        ("BLOOM-7B", "tuned", None, 56.2),
        ("Alpaca-7B", "general instruction tuning", None, 39.3),
        ("Alpaca-13B", "general instruction tuning", None, 55.2),
        ("Alpaca-33B", "general instruction tuning", None, 70.6),
    ],
    columns=["model", "setting", "paper: base %", "paper: tuned %"],
)

REQUIRED = {
    "03_filtering/filter_report.json": "stage 03 (filtering)",
    "03_filtering/dataset": "stage 03 (filtering)",
    "03_filtering/tables/decontamination_rules.csv": "stage 03 (filtering)",
    "05_evaluation/scores.json": "stage 05 (evaluation)",
}


class MissingStageOutput(FileNotFoundError):
    pass


def check_required(out: Path) -> None:
    """Fail clearly when a stage this analysis needs has not written its files."""
    missing = [f"{rel} (written by {who})" for rel, who in REQUIRED.items() if not (out / rel).exists()]
    if missing:
        raise MissingStageOutput(
            f"{out.name}: missing required stage outputs: {'; '.join(missing)}. "
            "Run those stages first: instructcoder run --profile <name> --only <stage>"
        )


def write_table(df: pd.DataFrame, tables_dir: Path, name: str) -> pd.DataFrame:
    """Every table as CSV (for tools) and Markdown (for reading); returns the table for display."""
    from .stats import write_table as _write

    _write(df, tables_dir, name)
    return df


# --------------------------------------------------------------------------- HTML report
@dataclass
class Item:
    title: str  # "" for none (the answer's sentences)
    caption: str
    figure: Path | None = None
    table: pd.DataFrame | None = None
    note: str | None = None
    text: list[str] | None = None  # plain sentences, shown as a paragraph


@dataclass
class Report:
    """The page: its first section is the answer (one screen), then the run's facts, then the rest."""

    title: str
    facts: dict[str, Any] = field(default_factory=dict)
    sections: list[tuple[str, list[Item]]] = field(default_factory=list)

    def section(self, name: str) -> list[Item]:
        items: list[Item] = []
        self.sections.append((name, items))
        return items


CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.7em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.1em;margin-bottom:.3em}
figure{margin:.5em 0 1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}
figcaption,.caption{color:#555;font-size:.92em;margin:.2em 0 .6em 0}
table{border-collapse:collapse;margin:.4em 0 1.4em 0;font-size:.9em;max-width:100%}
td,th{border:1px solid #ccc;padding:.25em .55em;text-align:left;vertical-align:top;word-break:break-word}
th{background:#f3f3f3;word-break:normal;overflow-wrap:normal;hyphens:none}
.lead{font-size:1.05em;max-width:60em}.answer img{max-height:340px;width:auto}.note{background:#fff8e1;border-left:4px solid #f0ad4e;padding:.5em .8em}
.facts td:first-child{font-weight:bold;white-space:nowrap}.wrap{overflow-x:auto}
"""


def _img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def render_html(report: Report) -> str:
    """One self-contained page: images embedded as data URIs, no external resources."""
    out = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    parts: list[str] = []
    for i, (name, items) in enumerate(report.sections):
        part = [f"<section class='{'answer' if i == 0 else 'part'}'><h2>{html.escape(name)}</h2>"]
        for it in items:
            if it.title:
                part.append(f"<h3>{html.escape(it.title)}</h3>")
            if it.text:
                part.append(f"<p class='lead'>{html.escape(' '.join(it.text))}</p>")
            if it.note:
                part.append(f"<p class='note'>{html.escape(it.note)}</p>")
            if it.figure is not None and it.figure.is_file():
                part.append(f"<figure>{_img_tag(it.figure, it.title or it.caption)}<figcaption>"
                            f"{html.escape(it.caption)}</figcaption></figure>")
            elif it.table is not None:
                part.append(f"<p class='caption'>{html.escape(it.caption)}</p>")
                part.append("<div class='wrap'>" + it.table.to_html(index=False, na_rep="-", float_format="%.2f",
                                                                    border=0) + "</div>")
            elif not it.note and it.caption:
                part.append(f"<p class='caption'>{html.escape(it.caption)}</p>")
        part.append("</section>")
        parts.append("\n".join(part))
    if report.facts:  # the run's facts right after the answer (the first section)
        rows = "".join(
            f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>" for k, v in report.facts.items()
        )
        parts.insert(min(1, len(parts)), f"<h2>About this run</h2><table class='facts'>{rows}</table>")
    out += parts
    out.append("</body></html>")
    return "\n".join(out)


def write_report(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- browser check
CHECK_JS = r"""
const imgs = Array.from(document.images);
const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt);
const clipped = [];
for (const el of document.querySelectorAll('h1,h2,h3,p,figcaption,td,th')) {
  if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflow === 'hidden') clipped.push(el.textContent.slice(0, 60));
}
const wide = document.documentElement.scrollWidth > window.innerWidth + 1;
// a table header broken inside a word: one of its words laid out on more than one line
const split_headers = [];
for (const th of document.querySelectorAll('th')) {
  const node = th.firstChild;
  if (!node || node.nodeType !== Node.TEXT_NODE) continue;
  const re = /\S+/g;
  let m;
  while ((m = re.exec(node.textContent)) !== null) {
    const range = document.createRange();
    range.setStart(node, m.index);
    range.setEnd(node, m.index + m[0].length);
    const tops = new Set(Array.from(range.getClientRects()).map(r => Math.round(r.top)));
    if (tops.size > 1) split_headers.push(m[0]);
  }
}
const answer = document.querySelector('section.answer');
return {images: imgs.length, broken: broken, clipped: clipped, page_overflows: wide,
        split_headers: split_headers, answer_title: answer ? answer.querySelector('h2').textContent : null,
        answer_bottom: answer ? Math.round(answer.getBoundingClientRect().bottom + window.scrollY) : null,
        height: document.documentElement.scrollHeight};
"""


def check_in_browser(html_path: Path, screenshot: Path | None = None, width: int = 1280) -> dict[str, Any]:
    """Open the report in headless Chromium; report images that failed to load and clipped text.

    Needs Debian's chromium and chromium-driver (installed by ``make sysdeps``)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_bin = shutil.which("chromedriver")
    if not chromium or not driver_bin:
        raise RuntimeError("headless check needs chromium and chromedriver (make sysdeps installs them)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--window-size={width},900"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        driver.get(Path(html_path).resolve().as_uri())
        result = driver.execute_script(CHECK_JS)
        if screenshot is not None:
            height = min(int(result.get("height", 900)), 16000)
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
            })
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            result["screenshot"] = str(screenshot)
    finally:
        driver.quit()
    return result


def facts_from_run(out: Path) -> dict[str, Any]:
    """The run.json facts a reader needs to trust and re-run the result."""
    run = read_optional_json(out / "run.json") or {}
    stages = run.get("stages", {})
    facts = {
        "profile": f"{run.get('profile_name', out.name)} (hash {run.get('profile_hash', '?')})",
        "git commit": run.get("git_commit"),
        "seed": run.get("seed"),
        "started": run.get("started"),
        "base model": (run.get("profile") or {}).get("training", {}).get("base_model"),
        "packages": ", ".join(f"{k} {v}" for k, v in (run.get("packages") or {}).items()
                              if k in ("torch", "transformers", "peft", "datasets", "python") and v),
        "stage times": ", ".join(
            f"{s}: {e.get('seconds', '-')}s" for s, e in stages.items() if e.get("seconds") is not None
        ),
    }
    return {k: v for k, v in facts.items() if v}


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, default=str)
