"""`backprop export`: a checkpoint as a torch.nn.Sequential state dict, and the code that loads it."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..checkpoint import CheckpointError, load_checkpoint
from ..export import export_torch
from .options import check_writable_dir, fail


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register `export` on the subparsers object ``sub``; returns its parser."""
    p = sub.add_parser("export", help="write a checkpoint as a torch.nn.Sequential state dict")
    p.add_argument("checkpoint")
    p.add_argument("--to", required=True, metavar="MODEL_PT", help="the .pt file to write")
    return p


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Export; returns the exit status."""
    check_writable_dir(parser, "--to", os.path.dirname(os.path.abspath(args.to)))
    if os.path.isdir(args.to):
        parser.error(f"--to: {args.to} is a directory; name the .pt file to write")
    try:
        checkpoint = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        return fail(str(error))
    code = export_torch(checkpoint, args.to)
    print(f"wrote {args.to}: load it with\n{code}")
    return 0
