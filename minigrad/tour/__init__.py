"""``minigrad tour``: a short run of every chapter, one module per chapter.

A chapter plugs in by adding ``minigrad/tour/chNN_<topic>.py`` with a
``TITLE`` string and ``run(out_dir: Path, quick: bool) -> list[(what, value)]``
that saves its figures into ``out_dir`` and returns the rows of the summary.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from pathlib import Path


def chapters():
    """The tour's chapter modules, in chapter order."""
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("ch"))
    return [importlib.import_module(f"{__name__}.{n}") for n in names]


def run_tour(out_dir=None, quick: bool = False, only=None, stream=None) -> list:
    """Run every chapter's section; print a summary table; return its rows."""
    import sys

    from tqdm import tqdm

    from ..tensor import manual_seed
    from ..viz import figures_dir

    stream = stream or sys.stdout
    out = figures_dir(out_dir)
    mods = [m for m in chapters() if not only or any(m.__name__.split(".")[-1].startswith(o) for o in only)]
    rows = []
    bar = tqdm(mods, desc="minigrad tour", unit="chapter", file=sys.stderr)
    for mod in bar:
        bar.set_postfix_str(mod.TITLE)
        manual_seed(0)
        t0 = time.perf_counter()
        results = mod.run(Path(out), quick)
        dt = time.perf_counter() - t0
        for what, value in results:
            rows.append((mod.TITLE, what, str(value)))
        rows.append((mod.TITLE, "time", f"{dt:.1f} s"))
    w0 = max(len(r[0]) for r in rows) if rows else 10
    w1 = max(len(r[1]) for r in rows) if rows else 10
    print(f"\n{'chapter':<{w0}}  {'what it showed':<{w1}}  value", file=stream)
    print(f"{'-' * w0}  {'-' * w1}  -----", file=stream)
    for ch, what, value in rows:
        print(f"{ch:<{w0}}  {what:<{w1}}  {value}", file=stream)
    figs = sorted(p.name for p in Path(out).glob("*.png"))
    print(f"\n{len(figs)} figures in {out}/", file=stream)
    return rows
