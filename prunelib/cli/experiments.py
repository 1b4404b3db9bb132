"""``prunelib experiments``: compute (or list) the book's suites of cached runs.

    prunelib experiments --profile cpu --suite sweep              # compute what is missing or stale
    prunelib experiments --profile cpu --list                     # cached, stale, running or missing
    prunelib experiments --profile gpu --suite sweep --executor ray   # one Ray task per run

Starting the same command in a second shell adds a worker (runs are claimed while computed).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..experiments.cache import ENV_VAR, state
from ..experiments.executors import EXECUTORS, run_all
from ..experiments.profiles import PROFILES, get_profile
from ..experiments.runs import profile_root
from ..experiments.suites import SUITES, sensitivity_suite

#: the measurements the allocation suite is derived from
ALLOCATION_INPUTS = ("sensitivity-wanda-block", "sensitivity-sparsegpt-block", "outliers")


def register(verbs) -> None:
    """Add ``experiments`` to the ``prunelib`` command."""
    parser = verbs.add_parser("experiments", help="compute or list the book's suites of cached runs",
                              description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default=None, choices=tuple(PROFILES),
                        help="calibration and evaluation protocol (default $PRUNEBOOK_PROFILE, else cpu)")
    parser.add_argument("--suite", default="all", choices=("all", *SUITES))
    parser.add_argument("--list", action="store_true", help="list the runs: cached, stale, running or missing")
    parser.add_argument("--force", action="store_true", help="recompute cached runs")
    parser.add_argument("--executor", default="local", choices=EXECUTORS,
                        help="local: one run after another here; ray: one Ray task per run ($RAY_ADDRESS or a "
                             "local cluster; needs prunelib[ray])")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"results root (default ${ENV_VAR}, else results/experiments of the checkout)")
    parser.set_defaults(handler=run_experiments)


def _mark(result: dict | None) -> str:
    return "missing" if result is None else ("stale  " if "stale" in result else "cached ")


def run_experiments(args, argv) -> int:
    if args.results is not None:  # the one setting every part of the suite reads
        os.environ[ENV_VAR] = str(args.results.expanduser().resolve())
    profile = get_profile(args.profile)
    names = list(SUITES) if args.suite == "all" else [args.suite]
    root = profile_root(profile)
    measured = {}
    if "sensitivity" in names:  # first: the allocation suite is derived from its results
        measured = sensitivity_suite(profile, only_stored=args.list)
        if args.list:
            for name, result in measured.items():
                print(f"{_mark(result)}  {name}")
    if args.list and "allocation" in names:
        stored_now = measured or sensitivity_suite(profile, only_stored=True)  # read once when listed above
        if not all(stored_now[name] for name in ALLOCATION_INPUTS):
            names.remove("allocation")  # listing must not start the sensitivity measurements
            print("(the allocation suite is listed once its sensitivities and outlier ratios exist)")
    listing = {"only_stored": True} if args.list else {}  # listing never computes, not even a stale input
    specs = list(dict.fromkeys(spec for name in names if name != "sensitivity"
                               for spec in SUITES[name](profile, **(listing if name == "allocation" else {}))))
    if args.list:
        for spec in specs:
            path = spec.path(root)
            print(f"{state(path, spec.definition(), spec.code):7s}  {os.path.relpath(path)}")
        return 0
    run_all(specs, root=root, force=args.force, executor=args.executor)
    return 0
