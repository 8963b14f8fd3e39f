"""CLI commands ``latentstudio transfer``, ``latentstudio deidentify`` and ``latentstudio identity …``.

``register(sub)`` adds them to the ``latentstudio`` argparse subparsers. Faces are given as photos
(aligned and inverted with the ``fast`` preset first) or as code files (.npz / .npy). Expected
problems (bad file, no face, bad amount, missing mapper) become ``latentstudio.cli.common.UserError``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.identity import REFINE_STEPS
from latentstudio.latent import W_PLUS
from latentstudio.cli.common import as_user_errors as _as_user_errors
from latentstudio.cli.common import OWN_SURROUNDINGS_HELP, PRESET_NAMES, interruptible, progress_printer
from latentstudio.cli.common import user_error as _user_error


@dataclass
class Face:
    """A face given on the command line: its W+ code and, for photos, what paste-back needs."""

    code: np.ndarray
    label: str
    photo: Path | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # a code file's, or a Placement's arrays
    aligned: np.ndarray | None = None  # the aligned photo, when this command aligned it


def load_face(path: str, preset: str, generator) -> Face:  # noqa: ANN001 - Generator
    """A photo (aligned + inverted) or a code file → Face."""
    p = Path(path)
    if p.suffix.lower() in CODE_SUFFIXES:
        from latentstudio.codes import load_code, load_code_extras

        code = load_code(p)  # LatentError (exit 2) when missing or malformed
        extras = load_code_extras(p)
        photo = Path(str(extras["photo"])) if "photo" in extras else None
        return Face(code, p.name, photo, extras)
    if not p.is_file():
        raise _user_error(f"{p}: no such photo or code file")
    from latentstudio.photo import invert_photo

    pc = invert_photo(p, preset=preset, generator=generator, progress=progress_printer(f"{p.name} ({preset})"))
    return Face(np.asarray(pc.w_plus, np.float32).reshape(W_PLUS), p.name, p, pc.placement.arrays(),
                pc.alignment.image)


def _models(args: argparse.Namespace):  # noqa: ANN202 - IdentityModels
    from latentstudio.identity.mapper import MapperError
    from latentstudio.runtime import Runtime

    try:
        return Runtime(args.device, mapper_weights=args.weights).identity()
    except MapperError as exc:
        raise _user_error(str(exc)) from exc
    except RuntimeError as exc:  # e.g. CUDA requested but absent
        raise _user_error(str(exc)) from exc


def _paste(face: Face, rgb: np.ndarray) -> np.ndarray:
    from latentstudio.face.placement import Placement

    if face.photo is None or "quad" not in face.extras:
        raise _user_error(f"--paste-back needs the attribute face as a photo, or a code from "
                          f"`latentstudio invert` (it stores the photo, quad and landmarks); "
                          f"{face.label} has none")
    return Placement.from_arrays(face.extras, face.photo).paste(rgb, other_person=True)


def _write(args: argparse.Namespace, code: np.ndarray, models, paste_into: Face | None,  # noqa: ANN001
           meta: str, outside: np.ndarray) -> None:
    """Write the result: a code (.npz) or an image rendered at --size (pasted back if asked), in
    the surroundings of ``outside`` (the face whose attributes it keeps) unless --own-surroundings.
    A code file then carries ``outside`` too, so ``render --code`` shows the same picture."""
    from latentstudio.codes import save_code
    from latentstudio.render import render_scene

    out = Path(args.output)
    by = None if args.own_surroundings else models.surroundings
    extras = {} if by is None else {"surroundings": outside}
    if out.suffix.lower() == ".npz":
        save_code(out, code, **extras)
    else:
        from latentstudio.face.image_io import save_image
        from latentstudio.identity.surroundings import in_surroundings

        rgb = render_scene(models.generator, in_surroundings(code, outside, by), args.size)
        if paste_into is not None:
            rgb = _paste(paste_into, rgb)
        save_image(out, rgb, {"latentstudio": meta})
    if getattr(args, "save_code", None):
        save_code(args.save_code, code, **extras)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- commands
def _identity_target(face: Face, models) -> np.ndarray | None:  # noqa: ANN001
    """The dlib descriptor of the identity face's photo, or None for a bare code (or a code whose
    photo is gone or no longer shows the face)."""
    from latentstudio.identity import api
    from latentstudio.safety import InputError

    aligned = face.aligned
    if aligned is None and face.photo is not None and face.photo.is_file():
        from latentstudio.photo import align_photo

        index = int(face.extras["face_index"]) if "face_index" in face.extras else None
        try:
            aligned = align_photo(face.photo, index)[0].image
        except (InputError, OSError):
            return None
    return None if aligned is None else api.embed_aligned_photo(aligned, models=models)


def _refined(code: np.ndarray, ident: Face, attrs: Face, steps: int, models) -> np.ndarray:  # noqa: ANN001
    from latentstudio.identity import api

    return api.refine_transfer(code, attrs.code, identity_code=ident.code,
                               identity_embedding=_identity_target(ident, models), steps=steps,
                               progress=progress_printer(), models=models)


def _note_pose(code: np.ndarray, attribute_code: np.ndarray, models) -> None:  # noqa: ANN001
    from latentstudio.identity import api

    note = api.pose_note(code, attribute_code, models=models)
    if note:
        print(f"note: {note}", file=sys.stderr)


def cmd_transfer(args: argparse.Namespace) -> int:
    from latentstudio.identity import api

    with _as_user_errors():
        for name in ("id_alpha", "attr_alpha"):
            api._amount(getattr(args, name), "--" + name.replace("_", "-"))
        if args.refine is not None and not 1 <= args.refine <= 1000:
            raise _user_error(f"--refine takes 1 to 1000 steps, got {args.refine}")
        models = _models(args)
        ident = load_face(args.identity, args.preset, models.generator)
        attrs = load_face(args.attributes, args.preset, models.generator)
        # base = the attribute face; other = the identity face: id_alpha of its identity, and
        # (1 − attr_alpha) of its attributes
        code = api.blend(attrs.code, ident.code, args.id_alpha, 1.0 - args.attr_alpha, lock=args.lock,
                         models=models)
        if args.refine:
            code = _refined(code, ident, attrs, args.refine, models)
        _note_pose(code, attrs.code, models)
        _write(args, code, models, attrs if args.paste_back else None,
               f"transfer identity={ident.label} attributes={attrs.label} "
               f"id_alpha={args.id_alpha:g} attr_alpha={args.attr_alpha:g}"
               + (f" refine={args.refine}" if args.refine else ""),
               outside=api.attribute_face(attrs.code, ident.code, 1.0 - args.attr_alpha))
    return 0


def cmd_deidentify(args: argparse.Namespace) -> int:
    from latentstudio.identity import api

    with _as_user_errors():
        api._amount(args.strength, "--strength")
        models = _models(args)
        face = load_face(args.face, args.preset, models.generator)
        code = api.deidentify(face.code, args.strength, None if args.mean else args.seed, lock=args.lock,
                              models=models)
        _note_pose(code, face.code, models)
        _write(args, code, models, face if args.paste_back else None,
               f"deidentify {face.label} strength={args.strength:g} "
               + ("mean identity" if args.mean else f"seed={args.seed}"), outside=face.code)
    return 0


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig
    from latentstudio.identity.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        return TrainConfig(**given)
    except (TypeError, ValueError) as exc:
        raise _user_error(f"bad training option: {exc}") from exc


def _run_interruptible(job) -> int:  # noqa: ANN001 - job(progress, cancelled) -> None
    """Run ``job`` with the CLI's progress printer; Ctrl-C once cancels it after its current step."""
    with interruptible() as stop, _as_user_errors():
        job(progress_printer(), stop)
    return 0


def _nets(device: str | None):  # noqa: ANN202 - Nets
    from latentstudio.face.chip import IdentityNet
    from latentstudio.face.landmark_net import LandmarkNetError, load_landmark_net
    from latentstudio.identity.train import Nets
    from latentstudio.models.generator import Generator

    g = Generator.load(device)
    try:
        return Nets(g, IdentityNet.load(g.device), load_landmark_net(g.device))
    except LandmarkNetError as exc:
        raise _user_error(str(exc)) from exc


def cmd_identity_data(args: argparse.Namespace) -> int:
    from latentstudio.face.chip import IdentityNet
    from latentstudio.identity.data import build
    from latentstudio.models.generator import Generator

    if args.chunks < 1:
        raise _user_error(f"--chunks must be at least 1, got {args.chunks}")

    def job(progress, cancelled) -> None:  # noqa: ANN001
        g = Generator.load(args.device)
        folder = build(args.chunks, folder=Path(args.data) if args.data else None, generator=g,
                       identity_net=IdentityNet.load(g.device), progress=progress, cancelled=cancelled,
                       ray=args.ray)
        print(f"training faces in {folder}")

    return _run_interruptible(job)


def cmd_identity_train(args: argparse.Namespace) -> int:
    from latentstudio.identity.data import DataError
    from latentstudio.identity.train import train_mapper, write_result

    cfg = _train_config(args)

    def job(progress, cancelled) -> None:  # noqa: ANN001
        try:
            result = train_mapper(cfg, _nets(args.device), data_folder=Path(args.data) if args.data else None,
                                  workdir=Path(args.workdir) if args.workdir else None, restart=args.restart,
                                  progress=progress, cancelled=cancelled)
        except DataError as exc:
            raise _user_error(str(exc)) from exc
        write_result(result, cfg, Path(args.output), {"machine": args.machine} if args.machine else None)
        print(f"wrote {args.output} (last losses: "
              + ", ".join(f"{k} {v:.4f}" for k, v in result.last_losses.items()) + ")")

    return _run_interruptible(job)


def cmd_identity_info(args: argparse.Namespace) -> int:
    from latentstudio.identity.mapper import ASSET, MapperError, mapper_info

    path = Path(args.weights) if args.weights else ASSET
    try:
        info = mapper_info(path)
    except MapperError as exc:
        raise _user_error(str(exc)) from exc
    print(f"mapper: {path}")
    for k, v in sorted(info.items()):
        print(f"  {k}: {v}")
    return 0


# ----------------------------------------------------------------------------- register
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=PRESET_NAMES, default="fast", help="inversion preset for photos")
    p.add_argument("--size", type=int, choices=(256, 512, 1024), default=1024, help="render size of the image")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--weights", help="mapper weights (default: assets/mapper.safetensors)")
    p.add_argument("--paste-back", action="store_true", help="paste the face back into the photo")
    p.add_argument("--no-lock", dest="lock", action="store_false",
                   help="skip the attribute lock (which puts the head pose and the mouth back where "
                        "the attribute face has them; ~3 s on 2 CPU cores)")
    p.add_argument("--own-surroundings", action="store_true", help=OWN_SURROUNDINGS_HELP)
    p.add_argument("--save-code", help="also write the resulting W+ code (.npz)")
    p.add_argument("-o", "--output", required=True, help="image file, or .npz for the code only")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``transfer``, ``deidentify`` and ``identity {train,info}`` to the parser."""
    t = sub.add_parser("transfer", help="the identity of one face with the attributes of another")
    t.add_argument("--identity", required=True, metavar="A", help="identity source: photo or code")
    t.add_argument("--attributes", required=True, metavar="B",
                   help="attribute source (pose, expression, lighting, hair): photo or code")
    t.add_argument("--id-alpha", type=float, default=1.0,
                   help="how much of A's identity (0..1: the share of the way to A's identity by our recogniser)")
    t.add_argument("--attr-alpha", type=float, default=1.0, help="how much of B's attributes (0..1)")
    t.add_argument("--refine", type=int, nargs="?", const=REFINE_STEPS, default=None, metavar="STEPS",
                   help="optimise the result for this pair against the real identity loss and B's "
                        f"landmarks and surroundings (default {REFINE_STEPS} steps, ~0.1 s a step on 2 CPU cores)")
    _common(t)
    t.set_defaults(func=cmd_transfer)

    d = sub.add_parser("deidentify", help="replace a face's identity, keeping its attributes")
    d.add_argument("face", metavar="PHOTO", help="photo or code")
    d.add_argument("--strength", type=float, default=1.0, help="0 = unchanged … 1 = new identity")
    d.add_argument("--seed", type=int, default=0, help="which random identity")
    d.add_argument("--mean", action="store_true", help="use the mean identity instead of a random one")
    _common(d)
    d.set_defaults(func=cmd_deidentify)

    ident = sub.add_parser("identity", help="train or inspect the identity mapper").add_subparsers(dest="identity_cmd")
    data = ident.add_parser("data", help="render and measure the training faces (resumable)")
    data.add_argument("--chunks", type=int, default=40, help="chunks of 200 faces (default 40)")
    data.add_argument("--data", help="folder (default in $LATENTSTUDIO_HOME/cache)")
    data.add_argument("--device", choices=("cpu", "cuda"), default=None)
    data.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                      help="make the chunks on a Ray cluster (ADDRESS, or a local one)")
    data.set_defaults(func=cmd_identity_data)

    tr = ident.add_parser("train", help="train the mapper (resumable: rerun the same command)")
    tr.add_argument("--steps", type=int, help="optimiser steps (default 400)")
    tr.add_argument("--batch", type=int, help="pairs per step (default 4)")
    tr.add_argument("--size", type=int, choices=(128, 256, 512), help="render size of the losses (default 128)")
    tr.add_argument("--lr", type=float)
    tr.add_argument("--bands", type=int, help="bands of principal axes with one gate per slot (default 16)")
    tr.add_argument("--rank", type=int, help="rank of the cross-slot correction (default 32)")
    tr.add_argument("--lr-rank", dest="lr_rank", type=float, help="learning rate of the correction")
    tr.add_argument("--noise", type=float, help="per-slot noise on the training codes (× W's spread)")
    tr.add_argument("--augment", type=float, help="random moves along yaw/pitch/smile/mouth-open (± α)")
    tr.add_argument("--inverted", type=float,
                    help="share of the training codes replaced by the encoder's guess of their render (0..1)")
    tr.add_argument("--w-id", dest="w_id", type=float, help="identity loss weight")
    tr.add_argument("--w-lm", dest="w_lm", type=float, help="landmark loss weight")
    tr.add_argument("--w-bg", dest="w_bg", type=float, help="background loss weight")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--init", metavar="WEIGHTS", help="start from these mapper weights (fine-tune; they may have "
                                                      "kept other boundaries)")
    tr.add_argument("--keep", type=lambda t: tuple(n for n in t.split(",") if n),
                    help="comma-separated boundaries whose components always stay B's (default: "
                         "yaw,pitch,smile,mouth_open,surprise,eyes_open; add lighting to keep B's light)")
    tr.add_argument("--device", choices=("cpu", "cuda"), default=None)
    tr.add_argument("--data", help="training faces (default: `identity data`'s folder)")
    tr.add_argument("--workdir", help="checkpoints (default in $LATENTSTUDIO_HOME/cache)")
    tr.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    tr.add_argument("--machine", help="note stored in the weight file (e.g. 'H200, 16 cores')")
    tr.add_argument("-o", "--output", default="assets/mapper.safetensors")
    tr.set_defaults(func=cmd_identity_train)

    info = ident.add_parser("info", help="what the installed mapper was trained on")
    info.add_argument("--weights")
    info.set_defaults(func=cmd_identity_info)
