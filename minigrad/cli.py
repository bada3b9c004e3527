"""The ``minigrad`` command: ``tour``, ``exercises``, ``grade`` and ``launch``."""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="minigrad", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("tour", help="run a short version of every chapter and write its figures")
    t.add_argument("--out", default=None, help="folder for the figures (default: figures/)")
    t.add_argument("--quick", action="store_true", help="a sub-minute version")
    t.add_argument("--only", nargs="*", default=None, help="chapters to run, e.g. ch01 ch03")

    e = sub.add_parser("exercises", help="list exercises or write a student release")
    esub = e.add_subparsers(dest="action", required=True)
    lst = esub.add_parser("list", help="chapter, id, points and title of every exercise and question")
    lst.add_argument("--chapter", type=int, default=None, help="only this chapter")
    r = esub.add_parser("release", help="write the student copy with stubs and no hidden tests")
    r.add_argument("out_dir")
    r.add_argument("--chapters", default=None,
                   help="assigned chapters, e.g. 3, 1,3 or 1-4: stubbed with every later chapter, "
                        "earlier ones shipped solved (default: every chapter stubbed)")
    r.add_argument("--seed", type=int, default=0, help="shuffles the options of choice questions")
    k = esub.add_parser("key", help="write the instructor's filled answers.toml for a release")
    k.add_argument("out", help="the answers.toml to write")
    ks = k.add_mutually_exclusive_group()
    ks.add_argument("--seed", type=int, default=None, help="the seed the release was made with")
    ks.add_argument("--release", default=None,
                    help="a student release folder: its seed and chapters (from release_info.json)")

    g = sub.add_parser("grade", help="grade a submission (default: the current directory)")
    g.add_argument("path", nargs="?", default=".")
    g.add_argument("--reference", default=None,
                   help="the instructor's checkout: the official grade, with the hidden tests "
                        "(without it: the submission's own public tests, a check only)")
    g.add_argument("--release-seed", type=int, default=None,
                   help="the seed the release was made with (its shuffled choice letters)")
    g.add_argument("--json", default=None,
                   help="write Gradescope's results.json here (needs --reference)")
    g.add_argument("--timeout", type=float, default=120.0, help="seconds per exercise")
    g.add_argument("--jobs", type=int, default=2, help="runs at once")
    g.add_argument("--only", nargs="*", default=None, help="exercise and question ids to grade")

    gs = esub.add_parser("gradescope", help="write a Gradescope autograder zip: setup.sh, "
                                            "run_autograder, the reference and its hidden tests")
    gs.add_argument("out_zip")
    gs.add_argument("--release-seed", type=int, default=None,
                    help="the seed the students' release was made with (its choice letters)")

    la = sub.add_parser("launch", help="run a per-rank script on N ranks (MPI processes or simulated)")
    la.add_argument("-n", "--nprocs", type=int, required=True, help="number of ranks")
    la.add_argument("--backend", choices=("mpi", "sim"), default="mpi",
                    help="mpi: one process per rank under mpiexec; sim: virtual GPUs in this process")
    la.add_argument("--timeout", type=float, default=None,
                    help="seconds before a hung run is ended, naming the rank")
    la.add_argument("--hostfile", default=None, help="MPI hostfile (host[:slots] per line)")
    la.add_argument("-m", dest="module", action="store_true", help="script is a module name")
    la.add_argument("script")
    la.add_argument("script_args", nargs=argparse.REMAINDER)

    args = p.parse_args(argv)
    if args.command == "launch":
        from .distributed.launch import LaunchError, launch
        try:
            launch(args.script, args.nprocs, args.backend, args.script_args, args.timeout,
                   module=args.module, hostfile=args.hostfile)
        except LaunchError as e:
            print(f"minigrad launch: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "tour":
        from .tour import run_tour
        run_tour(args.out, quick=args.quick, only=args.only)
        return 0
    if args.command == "exercises":
        from .exercises import cli as ex_cli
        return ex_cli.exercises(args)
    if args.command == "grade":
        from .exercises import cli as ex_cli
        return ex_cli.grade(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
