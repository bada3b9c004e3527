"""The ``minigrad exercises`` and ``minigrad grade`` subcommands."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .registry import show


def exercises(args) -> int:
    if args.action == "list":
        show(args.chapter)
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
