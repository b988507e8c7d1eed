"""Argument helpers shared by the command groups: the sub-parser layout, ``--segment-map``."""

from __future__ import annotations

import argparse


def formatter(prog):
    """argparse ``formatter_class`` of every medzoo parser: examples kept as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_command(sub, name: str, help_text: str, example: str):
    """Add the sub-parser ``name`` to ``sub``, with its help text and one example.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        What ``add_subparsers`` returned.
    name, help_text, example : str
        The command's name, one line of help, and an example command line (its epilog).

    Returns
    -------
    argparse.ArgumentParser
        The new sub-parser.
    """
    return sub.add_parser(name, help=help_text, description=help_text,
                          epilog=f"example:\n  {example}", formatter_class=formatter)


def segment_map_type(text: str) -> dict:
    """argparse type of --segment-map: ``"A=x,B=y"`` → ``{"A": "x", "B": "y"}``."""
    from medzoo.datasets.annotations import parse_segment_map

    try:
        return parse_segment_map(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
