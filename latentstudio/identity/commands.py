"""CLI commands ``latentstudio transfer``, ``latentstudio deidentify`` and ``latentstudio identity …``.

``register(sub)`` adds them to the ``latentstudio`` argparse subparsers. Faces are given as photos
(aligned and inverted with the ``fast`` preset first) or as code files (.npz / .npy). Expected
problems (bad file, no face, bad amount, missing mapper) become ``latentstudio.cli.UserError``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from latentstudio.codes import CODE_SUFFIXES
from latentstudio.edit.commands import as_user_errors as _as_user_errors
from latentstudio.edit.commands import user_error as _user_error


@dataclass
class Face:
    """A face given on the command line: its W+ code and, for photos, what paste-back needs."""

    code: np.ndarray
    label: str
    photo: Path | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # quad, landmarks


def load_face(path: str, preset: str, device: str | None) -> Face:
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
    from latentstudio.invert import invert_photo

    from latentstudio.cli import _progress_printer

    inv = invert_photo(p, preset=preset, device=device,
                       progress=_progress_printer(f"inverting {p.name} ({preset})"))
    extras = {"quad": np.asarray(inv.alignment.quad, np.float64),
              "landmarks": np.asarray(inv.landmarks, np.float64)}
    return Face(np.asarray(inv.inversion.w_plus, np.float32).reshape(23, 512), p.name, p, extras)


def _models(args: argparse.Namespace):  # noqa: ANN202 - IdentityModels
    from latentstudio.identity.api import load_models
    from latentstudio.identity.mapper import MapperError

    try:
        return load_models(args.device, args.weights)
    except MapperError as exc:
        raise _user_error(str(exc)) from exc
    except RuntimeError as exc:  # e.g. CUDA requested but absent
        raise _user_error(str(exc)) from exc


def _paste(face: Face, rgb: np.ndarray) -> np.ndarray:
    from latentstudio.face.image_io import load_image
    from latentstudio.face.pasteback import paste_back

    quad, landmarks = face.extras.get("quad"), face.extras.get("landmarks")
    if face.photo is None or quad is None or landmarks is None:
        raise _user_error(f"--paste-back needs the attribute face as a photo, or a code from "
                          f"`latentstudio invert` (it stores the photo, quad and landmarks); "
                          f"{face.label} has none")
    if not face.photo.is_file():
        raise _user_error(f"--paste-back: the photo {face.photo} of {face.label} is gone")
    return paste_back(load_image(face.photo), rgb, np.asarray(quad, np.float64),
                      np.asarray(landmarks, np.float64))


def _write(args: argparse.Namespace, code: np.ndarray, models, paste_into: Face | None,  # noqa: ANN001
           meta: str) -> None:
    """Write the result: a code (.npz) or an image rendered at --size (pasted back if asked)."""
    out = Path(args.output)
    if out.suffix.lower() == ".npz":
        from latentstudio.codes import save_code

        save_code(out, code)
    else:
        from latentstudio.face.image_io import save_image
        from latentstudio.models.generator import to_uint8

        g = models.generator
        with g.lock:
            rgb = to_uint8(g.synthesize(code, size=args.size))[0]
        if paste_into is not None:
            rgb = _paste(paste_into, rgb)
        save_image(out, rgb, {"latentstudio": meta})
    if getattr(args, "save_code", None):
        from latentstudio.codes import save_code

        save_code(args.save_code, code)
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- commands
def cmd_transfer(args: argparse.Namespace) -> int:
    from latentstudio.identity import api

    with _as_user_errors():
        for name in ("id_alpha", "attr_alpha"):
            api._amount(getattr(args, name), "--" + name.replace("_", "-"))
        models = _models(args)
        ident = load_face(args.identity, args.preset, args.device)
        attrs = load_face(args.attributes, args.preset, args.device)
        # base = identity face: its identity moves by (1 − id_alpha) towards the attribute face's,
        # its attributes by attr_alpha towards the attribute face's
        code = api.blend(ident.code, attrs.code, 1.0 - args.id_alpha, args.attr_alpha, models=models)
        _write(args, code, models, attrs if args.paste_back else None,
               f"transfer identity={ident.label} attributes={attrs.label} "
               f"id_alpha={args.id_alpha:g} attr_alpha={args.attr_alpha:g}")
    return 0


def cmd_deidentify(args: argparse.Namespace) -> int:
    from latentstudio.identity import api

    with _as_user_errors():
        api._amount(args.strength, "--strength")
        models = _models(args)
        face = load_face(args.face, args.preset, args.device)
        code = api.deidentify(face.code, args.strength, None if args.mean else args.seed, models=models)
        _write(args, code, models, face if args.paste_back else None,
               f"deidentify {face.label} strength={args.strength:g} "
               + ("mean identity" if args.mean else f"seed={args.seed}"))
    return 0


def _train_config(args: argparse.Namespace):  # noqa: ANN202 - TrainConfig
    from latentstudio.identity.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in names and v is not None}
    try:
        return TrainConfig(**given)
    except (TypeError, ValueError) as exc:
        raise _user_error(f"bad training option: {exc}") from exc


def cmd_identity_train(args: argparse.Namespace) -> int:
    from latentstudio.identity.data import TrainingCancelled
    from latentstudio.identity.train import train_mapper, write_result

    cfg = _train_config(args)
    stop = {"flag": False}

    def on_sigint(signum, frame) -> None:  # noqa: ANN001
        if stop["flag"]:
            raise KeyboardInterrupt
        stop["flag"] = True
        print("\nstopping after this step (checkpoint kept; Ctrl-C again to abort now)…",
              file=sys.stderr, flush=True)

    start = time.monotonic()

    def show(p) -> None:  # noqa: ANN001 - Progress
        print(f"[{time.monotonic() - start:7.1f}s] {p.stage} {p.step}/{p.total} {p.message}",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with _as_user_errors():
            result = train_mapper(cfg, workdir=Path(args.workdir) if args.workdir else None,
                                  device=args.device, restart=args.restart,
                                  checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                                  progress=show, cancelled=lambda: stop["flag"])
    except TrainingCancelled as exc:
        print(f"latentstudio: {exc}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    write_result(result, cfg, Path(args.output), {"machine": args.machine} if args.machine else None)
    print(f"wrote {args.output} (surrogate errors: "
          + ", ".join(f"{k} {v:.4f}" for k, v in result.surrogate_errors.items()) + ")")
    return 0


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
    p.add_argument("--preset", choices=("fast", "quality"), default="fast", help="inversion preset for photos")
    p.add_argument("--size", type=int, choices=(256, 512, 1024), default=1024, help="render size of the image")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    p.add_argument("--weights", help="mapper weights (default: assets/mapper.safetensors)")
    p.add_argument("--paste-back", action="store_true", help="paste the face back into the photo")
    p.add_argument("--save-code", help="also write the resulting W+ code (.npz)")
    p.add_argument("-o", "--output", required=True, help="image file, or .npz for the code only")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``transfer``, ``deidentify`` and ``identity {train,info}`` to the parser."""
    t = sub.add_parser("transfer", help="the identity of one face with the attributes of another")
    t.add_argument("--identity", required=True, metavar="A", help="identity source: photo or code")
    t.add_argument("--attributes", required=True, metavar="B",
                   help="attribute source (pose, expression, lighting, hair): photo or code")
    t.add_argument("--id-alpha", type=float, default=1.0, help="how much of A's identity (0..1)")
    t.add_argument("--attr-alpha", type=float, default=1.0, help="how much of B's attributes (0..1)")
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
    tr = ident.add_parser("train", help="train the mapper (resumable: rerun the same command)")
    tr.add_argument("--faces", type=int, help="generated training faces (default 5000)")
    tr.add_argument("--psi", type=float, help="truncation of the training faces (default 0.7)")
    tr.add_argument("--surrogate-epochs", dest="surrogate_epochs", type=int)
    tr.add_argument("--latent-steps", dest="latent_steps", type=int, help="steps without rendering")
    tr.add_argument("--latent-batch", dest="latent_batch", type=int)
    tr.add_argument("--render-steps", dest="render_steps", type=int, help="steps with 256² renders")
    tr.add_argument("--render-batch", dest="render_batch", type=int)
    tr.add_argument("--lr", type=float, help="latent-stage learning rate")
    tr.add_argument("--render-lr", dest="render_lr", type=float, help="render-stage learning rate")
    tr.add_argument("--w-id", dest="w_id", type=float, help="identity loss weight")
    tr.add_argument("--w-lm", dest="w_lm", type=float, help="landmark loss weight")
    tr.add_argument("--w-adv", dest="w_adv", type=float, help="latent discriminator weight")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--device", choices=("cpu", "cuda"), default=None)
    tr.add_argument("--workdir", help="checkpoints and caches (default in $LATENTSTUDIO_HOME/cache)")
    tr.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    tr.add_argument("--checkpoint-every", type=int, default=500)
    tr.add_argument("--log-every", type=int, default=100)
    tr.add_argument("--machine", help="note stored in the weight file (e.g. 'H200, 16 cores')")
    tr.add_argument("-o", "--output", default="assets/mapper.safetensors")
    tr.set_defaults(func=cmd_identity_train)

    info = ident.add_parser("info", help="what the installed mapper was trained on")
    info.add_argument("--weights")
    info.set_defaults(func=cmd_identity_info)
