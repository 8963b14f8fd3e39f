"""``latentstudio batch``: one command over many photos (``latentstudio.batch``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from latentstudio.cli.common import (OWN_SURROUNDINGS_HELP, PRESET_NAMES, as_user_errors, interruptible,
                                     progress_printer, user_error)


def cmd_batch(args: argparse.Namespace) -> int:
    from latentstudio.batch import Options, plan, run
    from latentstudio.cli.edit import parse_keep, parse_set
    from latentstudio.edit.boundaries import parse_layers

    outdir = Path(args.output)
    with as_user_errors():
        if args.workers is not None and args.workers < 1:
            raise user_error(f"--workers must be at least 1, got {args.workers}")
        options = Options(op=args.op, alphas=parse_set(args.set or []), keep=tuple(parse_keep(args.keep)),
                          layers=parse_layers(args.layers) if args.layers else None, strength=args.strength,
                          seed=args.seed, identity=args.identity, id_alpha=args.id_alpha,
                          paste_back=args.paste_back, preset=args.preset, steps=args.steps, size=args.size,
                          device=args.device, surroundings=not args.own_surroundings)
        jobs = plan(args.inputs, outdir, args.op)
        with interruptible() as stop:
            workers = args.workers if args.workers is not None else (0 if args.ray is not False else 1)
            results = run(jobs, options, outdir, workers=workers, ray=args.ray, resume=args.resume,
                          progress=progress_printer(f"batch {args.op}"), cancelled=stop)
    failed = [r for r in results if r.status != "ok"]
    for r in failed[:20]:
        print(f"failed: {r.input}: {r.error}", file=sys.stderr)
    skipped = len(jobs) - len(results)
    print(f"{len(results) - len(failed)} done, {len(failed)} failed"
          + (f", {skipped} already done" if skipped else "") + f"; manifest: {outdir / 'manifest.jsonl'}")
    return 2 if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    from latentstudio.batch import OPS

    b = sub.add_parser("batch", help="edit, de-identify, transfer, invert or align many photos (workers or Ray)")
    b.add_argument("op", choices=OPS)
    b.add_argument("inputs", nargs="+", help="photos or codes, folders (recursive) or .txt lists")
    b.add_argument("-o", "--output", required=True, help="output folder (same relative paths as the inputs)")
    b.add_argument("--set", action="append", metavar="NAME=VALUE", help="edit strength α (repeatable)")
    b.add_argument("--keep", action="append", metavar="NAME,NAME", help="directions the edit must not move")
    b.add_argument("--layers", metavar="A-B", help="apply the edits to W+ slots A..B only (0-22)")
    b.add_argument("--strength", type=float, default=1.0, help="deidentify: how far (0..1)")
    b.add_argument("--seed", type=int, default=0, help="deidentify's new person; the inversion's noise")
    b.add_argument("--identity", metavar="PHOTO|CODE", help="transfer: whose identity every input gets")
    b.add_argument("--id-alpha", type=float, default=1.0, help="transfer: how much of it (0..1)")
    b.add_argument("--paste-back", action="store_true", help="paste each result back into its photo")
    b.add_argument("--own-surroundings", action="store_true", help="transfer, deidentify: " + OWN_SURROUNDINGS_HELP)
    b.add_argument("--preset", choices=PRESET_NAMES, default="fast")
    b.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    b.add_argument("--size", type=int, choices=(256, 512, 1024), default=1024)
    b.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    b.add_argument("--workers", type=int, default=None,
                   help="worker processes, each loading the models once (default 1; with --ray: the cluster's CPUs)")
    b.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                   help="run on a Ray cluster (ADDRESS, or a local one); pip install -e '.[cluster]'")
    b.add_argument("--resume", action="store_true", help="skip inputs the manifest has done; retry failures")
    b.set_defaults(func=cmd_batch)
