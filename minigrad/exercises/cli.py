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
        from .release import parse_chapters, release, release_info
        chapters = parse_chapters(args.chapters) if args.chapters is not None else None
        out = release(args.out_dir, chapters=chapters, seed=args.seed)
        info = release_info(out)
        print(f"student copy written to {out}/ (hand out this folder; keep the solutions): "
              f"chapters {info['chapters']} stubbed, {info['solved']} solved, seed {info['seed']}")
        return 0
    if args.action == "key":
        from .release import answer_key, release_info
        seed, chapters = (0 if args.seed is None else args.seed), None
        if args.release is not None:
            info = release_info(args.release)
            seed, chapters = info["seed"], info["chapters"]
        Path(args.out).write_text(answer_key(seed, chapters))
        print(f"answer key (seed {seed}) written to {args.out}: keep it away from students")
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
