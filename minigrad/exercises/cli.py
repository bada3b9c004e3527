"""The ``minigrad exercises`` and ``minigrad grade`` subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .registry import all_exercises, all_questions


def exercises(args) -> int:
    if args.action == "list":
        rows = [(f"ch{e.chapter}", e.id, e.points, "code", e.title)
                for e in sorted(all_exercises(), key=lambda e: (e.chapter, e.id))]
        rows += [(f"ch{q.chapter}", q.id, q.points, q.kind, q.prompt.strip().splitlines()[0][:70])
                 for q in sorted(all_questions(), key=lambda q: (q.chapter, q.id))]
        rows.sort(key=lambda r: (int(r[0][2:]), r[3] != "code", r[1]))
        w = max([len(r[1]) for r in rows] + [2])
        print(f"{'chapter':<7}  {'id':<{w}}  {'points':>6}  {'kind':<10}  title")
        for ch, i, p, kind, title in rows:
            print(f"{ch:<7}  {i:<{w}}  {p:>6}  {kind:<10}  {title}")
        print(f"\n{sum(r[2] for r in rows)} points in {len(rows)} exercises and questions")
        return 0
    if args.action == "release":
        from .release import release
        out = release(args.out_dir)
        print(f"student copy written to {out}/ (hand out this folder; keep the solutions)")
        return 0
    return 2


def grade(args) -> int:
    from .grade import grade as run_grade
    from .grade import gradescope_json, report

    rows = run_grade(args.path, timeout=args.timeout, only=args.only)
    report(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(gradescope_json(rows), indent=1) + "\n")
        print(f"Gradescope results written to {args.json}", file=sys.stderr)
    return 0
