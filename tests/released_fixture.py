"""A small copy of the released InstructCoder data in its exact layout, written by the tests.

The release (``likaixin/InstructCoder``) is a folder of JSON files, each a list of
``{"instruction", "input", "output"}`` objects: ``train.json``, ``valid.json`` and the authors' seeds
``github_seed.json``. The hub cannot be reached here, so the tests write this stand-in: a few hand-written
rows in the release's style, rows from the project's synthesizer for volume, and, on request, one row
copied from an EditEval task (which stage 03's decontamination must catch).

    python tests/released_fixture.py <folder> [--synth 60] [--editeval <edit_eval.jsonl>]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HAND_ROWS = [
    {"instruction": "Add a timeout to the HTTP request in 'fetch_forecast' so a slow weather service does not hang "
                    "the dashboard.",
     "input": "import requests\n\n\ndef fetch_forecast(city):\n    url = f\"https://api.example.com/forecast/{city}\"\n"
              "    response = requests.get(url)\n    return response.json()\n",
     "output": "import requests\n\n\ndef fetch_forecast(city, timeout=5):\n"
               "    url = f\"https://api.example.com/forecast/{city}\"\n"
               "    response = requests.get(url, timeout=timeout)\n    return response.json()\n"},
    {"instruction": "Replace the manual loop in 'total_inventory_value' with a generator expression passed to sum().",
     "input": "def total_inventory_value(items):\n    total = 0\n    for item in items:\n"
              "        total += item['price'] * item['quantity']\n    return total\n",
     "output": "def total_inventory_value(items):\n"
               "    return sum(item['price'] * item['quantity'] for item in items)\n"},
    {"instruction": "Raise a ValueError with a clear message when a patient's age is negative in 'register_patient'.",
     "input": "def register_patient(name, age, records):\n    records.append({'name': name, 'age': age})\n"
              "    return len(records)\n",
     "output": "def register_patient(name, age, records):\n    if age < 0:\n"
               "        raise ValueError(f\"age must not be negative, got {age}\")\n"
               "    records.append({'name': name, 'age': age})\n    return len(records)\n"},
    {"instruction": "Cache the results of 'shipping_cost' with functools.lru_cache, since the same routes are priced "
                    "again and again.",
     "input": "def shipping_cost(origin, destination, weight):\n    distance = abs(hash(origin) - hash(destination)) % 1000\n"
              "    return round(distance * 0.01 * weight, 2)\n",
     "output": "from functools import lru_cache\n\n\n@lru_cache(maxsize=1024)\n"
               "def shipping_cost(origin, destination, weight):\n"
               "    distance = abs(hash(origin) - hash(destination)) % 1000\n"
               "    return round(distance * 0.01 * weight, 2)\n"},
    {"instruction": "Write the game's high scores to the file with a context manager instead of opening and closing "
                    "it by hand.",
     "input": "def save_high_scores(scores, path):\n    f = open(path, 'w')\n    for name, score in scores:\n"
              "        f.write(f\"{name},{score}\\n\")\n    f.close()\n",
     "output": "def save_high_scores(scores, path):\n    with open(path, 'w') as f:\n"
               "        for name, score in scores:\n            f.write(f\"{name},{score}\\n\")\n"},
    {"instruction": "Log a warning through the logging module, not print, when a sensor reading is out of range.",
     "input": "def check_reading(sensor_id, value, low, high):\n    if value < low or value > high:\n"
              "        print(f\"sensor {sensor_id} out of range: {value}\")\n        return False\n    return True\n",
     "output": "import logging\n\nlogger = logging.getLogger(__name__)\n\n\n"
               "def check_reading(sensor_id, value, low, high):\n    if value < low or value > high:\n"
               "        logger.warning(\"sensor %s out of range: %s\", sensor_id, value)\n        return False\n"
               "    return True\n"},
]

SEED_ROWS = [
    {"instruction": "Strip surrounding whitespace from every tag before storing it.",
     "input": "def store_tags(tags, db):\n    for tag in tags:\n        db.add(tag)\n",
     "output": "def store_tags(tags, db):\n    for tag in tags:\n        db.add(tag.strip())\n"},
    {"instruction": "Return an empty list instead of None when no user matches the query.",
     "input": "def find_users(users, name):\n    found = [u for u in users if u.name == name]\n"
              "    return found or None\n",
     "output": "def find_users(users, name):\n    return [u for u in users if u.name == name]\n"},
    {"instruction": "Sort the report's rows by date, newest first.",
     "input": "def report_rows(rows):\n    return list(rows)\n",
     "output": "def report_rows(rows):\n    return sorted(rows, key=lambda r: r['date'], reverse=True)\n"},
]


def synth_rows(n: int, seed: int = 7) -> list[dict[str, str]]:
    """``n`` rows from the project's synthesizer, reduced to the release's three fields."""
    from instructcoder_utils.config import SynthConfig
    from instructcoder_utils.synth import synthesize

    recs, _ = synthesize(SynthConfig(max_instances=n, max_source_files=60, workers=1), seed=seed, progress=False)
    return [{k: r[k] for k in ("instruction", "input", "output")} for r in recs]


EDITEVAL_TASK = 3  # short enough to pass every profile's token limit, so decontamination is what removes it


def editeval_row(path: str | Path, index: int = EDITEVAL_TASK) -> dict[str, str]:
    """One EditEval task copied as a training row: what a contaminated release would hold."""
    lines = [ln for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]
    task = json.loads(lines[index])
    return {k: task[k] for k in ("instruction", "input", "output")}


def write_release(folder: str | Path, train: list[dict], valid: list[dict], seeds: list[dict]) -> Path:
    """The release's files under ``folder``: JSON lists, as the authors published them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.json", train), ("valid.json", valid), ("github_seed.json", seeds)):
        (folder / name).write_text(json.dumps(rows, indent=2, ensure_ascii=False), encoding="utf-8")
    return folder


def write_fixture(folder: str | Path, synth: int = 0, editeval: str | Path | None = None) -> Path:
    """Hand rows (+ ``synth`` synthesized rows, + one EditEval copy): the last two rows go to valid.json."""
    rows = list(HAND_ROWS) + (synth_rows(synth) if synth else [])
    if editeval:
        rows.insert(2, editeval_row(editeval))
    return write_release(folder, rows[:-2], rows[-2:], SEED_ROWS)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--synth", type=int, default=60, help="synthesized rows added to the hand-written ones")
    ap.add_argument("--editeval", default=None, help="an EditEval JSONL: copy one task into train.json")
    args = ap.parse_args()
    out = write_fixture(args.folder, args.synth, args.editeval)
    print({p.name: len(json.loads(p.read_text())) for p in sorted(out.glob("*.json"))})
