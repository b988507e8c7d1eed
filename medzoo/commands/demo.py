"""``medzoo demo``: the whole chain on generated data."""

from __future__ import annotations

from medzoo.commands.arguments import add_command


def add_demo(sub) -> None:
    """``medzoo demo``."""
    p = add_command(sub, "demo", "the whole chain on generated data, in a few minutes",
                    "medzoo demo --out demo-out")
    p.add_argument("--out", default="medzoo-demo")
    p.add_argument("--difficulty", default="medium", choices=["easy", "medium", "hard"],
                   help="phantom difficulty (default medium: the models differ, the tests are defined)")
    p.add_argument("--patients", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)


def cmd_demo(args) -> int:
    """``medzoo demo``: the whole chain on generated data; returns 0."""
    from medzoo.demo import run_demo

    run_demo(args.out, patients=args.patients, seed=args.seed, difficulty=args.difficulty)
    return 0
