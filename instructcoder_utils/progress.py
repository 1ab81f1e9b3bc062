"""Progress bars where the reader is: widgets in JupyterLab, plain lines in a batch run's log.

``instructcoder run`` executes the notebooks with papermill, whose log forwards what a cell prints but not
its widgets: with ``tqdm.auto`` alone, a 40-minute training said nothing in the terminal between
"running 04_training.ipynb" and its end. The runner sets ``INSTRUCTCODER_PROGRESS=lines`` for its
kernels (set it yourself when running a notebook with papermill directly), and every bar then prints
one line at most every ``LINE_SECONDS`` and one at its end.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable
from typing import Any, TextIO

ENV = "INSTRUCTCODER_PROGRESS"
LINE_SECONDS = 30.0


class _Lines:
    """A file for tqdm that turns its carriage-return redraws into lines of their own, skipping a redraw
    of the same count at the same elapsed second as the line before (closing a bar redraws its last
    state; only the rate would differ)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> None:
        text = text.strip("\r\n").rstrip()
        # up to the elapsed time: "desc: pct|bar| n/total [elapsed" before "<remaining, rate, postfix]", or
        # "desc: n [elapsed" before ", rate, postfix]" for a bar without a total
        # without the bar's graphics: their width follows the length of the rate printed after them
        head, _, tail = text.rpartition("[")
        key = re.sub(r"\|[^|]*\|", "|", head) + tail.split("<")[0].split(",")[0]
        if text and key != self.last:
            self.stream.write(text + "\n")
            self.last = key

    def flush(self) -> None:
        self.stream.flush()


def bar(iterable: Iterable | None = None, **kwargs: Any):
    """A tqdm bar: plain lines in a batch run (see above), a widget where ipywidgets is installed, else
    tqdm's text bar (without tqdm.auto's warning that ipywidgets is missing)."""
    if os.environ.get(ENV) == "lines":
        from tqdm import tqdm

        # miniters=1 keeps tqdm's monitor thread away: it redraws a bar whose dynamic miniters grew above 1
        # without resetting its last-print time, so the next update printed the line again a second later
        kwargs.update(file=_Lines(sys.stderr), ascii=True, dynamic_ncols=False, ncols=110, miniters=1,
                      mininterval=max(kwargs.get("mininterval", 0.0), LINE_SECONDS))
        return tqdm(iterable, **kwargs)
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm(iterable, **kwargs)
