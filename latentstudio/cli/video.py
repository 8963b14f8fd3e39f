"""``latentstudio video``: edit the face of a clip (``latentstudio.video``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from latentstudio.cli.common import (OWN_SURROUNDINGS_HELP, PRESET_NAMES, UserError, as_user_errors, interruptible,
                                     progress_printer, user_error)


def cmd_video(args: argparse.Namespace) -> int:
    from latentstudio.cli.edit import all_directions, parse_keep, parse_set
    from latentstudio.edit.apply import apply_edits
    from latentstudio.edit.boundaries import parse_layers
    from latentstudio.latent import W_PLUS
    from latentstudio.runtime import Runtime
    from latentstudio.safety import check_output
    from latentstudio.video import VideoEdit, edit_clip

    src, out = Path(args.input), Path(args.output)
    with as_user_errors():
        if out.suffix:
            check_output(str(out), [str(src)] + ([args.identity] if args.identity else []), UserError)
        if args.start is not None and args.end is not None and args.end <= args.start:
            raise user_error(f"--end ({args.end}) must be after --start ({args.start})")
        if args.deidentify is not None and args.identity:
            raise user_error("give --identity or --deidentify, not both")
        alphas = parse_set(args.set or [])
        keep = parse_keep(args.keep)
        layers = parse_layers(args.layers) if args.layers else None
        directions = all_directions()
        apply_edits(np.zeros(W_PLUS, np.float32), alphas, directions, keep=keep, layers=layers)  # validate first
        if args.steps is not None and args.steps < 1:
            raise user_error(f"--steps must be at least 1, got {args.steps}")
        runtime = Runtime(args.device)
        identity = None
        if args.identity:
            from latentstudio.cli.identity import load_face

            identity = load_face(args.identity, args.preset, runtime.generator()).code
        edit = VideoEdit(alphas=alphas, keep=tuple(keep), layers=layers, identity=identity, id_alpha=args.id_alpha,
                         deidentify=args.deidentify or 0.0, deid_seed=args.seed, coherency=not args.no_coherency,
                         surroundings=not args.own_surroundings)
        with interruptible() as stop:
            rep = edit_clip(src, out, edit, runtime=runtime, directions=directions, preset=args.preset, steps=args.steps,
                            face=args.face, start=args.start, end=args.end, progress=progress_printer(),
                            cancelled=stop)
    if rep.passed_through:
        shown = ", ".join(map(str, rep.passed_through[:20])) + (" …" if len(rep.passed_through) > 20 else "")
        print(f"note: no face in {len(rep.passed_through)} frame(s), left unchanged: {shown}", file=sys.stderr)
    print(f"wrote {out} ({rep.edited} of {rep.frames} frames edited; first frame {rep.seconds_first:.1f} s, "
          f"then {rep.seconds_per_frame:.1f} s a frame)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("video", help="edit the face of a video clip (one identity through every frame)")
    v.add_argument("input", help="a clip (.mp4 .mov .webm .avi .mkv) or a folder of frames")
    v.add_argument("-o", "--output", required=True, help="the edited clip (.mp4 …), or a folder for PNG frames")
    v.add_argument("--set", action="append", metavar="NAME=VALUE", help="edit strength α (repeatable)")
    v.add_argument("--keep", action="append", metavar="NAME,NAME", help="directions the edit must not move")
    v.add_argument("--layers", metavar="A-B", help="apply the edits to W+ slots A..B only (0-22)")
    v.add_argument("--identity", metavar="PHOTO|CODE", help="put this face's identity into every frame")
    v.add_argument("--id-alpha", type=float, default=1.0, help="how much of --identity (0..1)")
    v.add_argument("--deidentify", nargs="?", type=float, const=1.0, default=None, metavar="STRENGTH",
                   help="give every frame the same new person (strength 0..1, default 1)")
    v.add_argument("--seed", type=int, default=0, help="which new person --deidentify gives")
    v.add_argument("--own-surroundings", action="store_true", help=OWN_SURROUNDINGS_HELP)
    v.add_argument("--no-coherency", action="store_true",
                   help="do not put the clip's own identity into every frame (per-frame codes as inverted)")
    v.add_argument("--face", type=int, default=None, help="which face to follow (0 = largest confident)")
    v.add_argument("--preset", choices=PRESET_NAMES, default="fast", help="the first frame's inversion")
    v.add_argument("--steps", type=int, default=None, help="override the preset's step count (first frame)")
    v.add_argument("--device", choices=("cpu", "cuda"), default=None)
    v.add_argument("--start", type=float, default=None, metavar="S", help="from this many seconds")
    v.add_argument("--end", type=float, default=None, metavar="S", help="up to this many seconds")
    v.set_defaults(func=cmd_video)
