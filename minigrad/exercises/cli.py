"""The ``minigrad exercises`` and ``minigrad grade`` subcommands."""

from __future__ import annotations

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
    if args.action == "gradescope":
        from .gradescope import write_bundle
        out = write_bundle(args.out_zip, release_seed=args.release_seed)
        print(f"Gradescope autograder written to {out} (upload it as the assignment's "
              f"autograder; it holds the solutions and the hidden tests: keep it private)")
        return 0
    return 2


def grade(args) -> int:
    from .grade import GradeError, gradescope_json, report, write_results
    from .grade import grade as run_grade

    if args.json and not args.reference:
        print("grade: results.json is an official grade: pass --reference DIR (the "
              "instructor's checkout); without it, grade checks your work against the "
              "public tests only", file=sys.stderr)
        return 2
    import signal

    # a SIGTERM (a CI runner's timeout) unwinds normally: every job's processes are
    # killed and its uids given back
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        rows = run_grade(args.path, reference=args.reference, timeout=args.timeout,
                         only=args.only, jobs=args.jobs, release_seed=args.release_seed)
    except (GradeError, KeyError, FileNotFoundError) as e:
        print(str(e).strip("'\""), file=sys.stderr)
        return 2
    report(rows)
    if not args.reference:
        print("(a check against the public tests; the official grade runs the hidden tests "
              "too: minigrad grade SUBMISSION --reference DIR)", file=sys.stderr)
    if args.json:
        write_results(Path(args.json), gradescope_json(rows, run_grade.last_seconds))
        print(f"Gradescope results written to {args.json}", file=sys.stderr)
    return 0
