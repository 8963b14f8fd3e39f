"""CLI groups ``latentstudio boundaries …`` and ``latentstudio edit …`` (thin: call the core).

``register(sub)`` adds them to the ``latentstudio`` argparse subparsers. Every expected problem
(bad file, unknown boundary, bad value) is raised as ``latentstudio.cli.common.UserError`` (exit 2).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

import numpy as np

from latentstudio.cli.common import as_user_errors, user_error
from latentstudio.cli.common import progress_printer
from latentstudio.runtime import Runtime
from latentstudio.edit.boundaries import Boundary, BoundaryError
from latentstudio.latent import NUM_SLOTS, W_PLUS
from latentstudio.safety import check_amount, check_output


def all_directions(pca: bool = True) -> dict[str, Boundary]:
    """Every slider the editor knows: shipped + user boundaries, then the PCA components."""
    from latentstudio.edit.boundaries import load_all
    from latentstudio.edit.pca import load_pca_boundaries

    out = load_all()
    if pca:
        for name, b in load_pca_boundaries().items():
            out.setdefault(name, b)
    return out


# ----------------------------------------------------------------------------- boundaries
def cmd_list(args: argparse.Namespace) -> int:
    with as_user_errors():
        found = all_directions(pca=args.pca)
    if not found:
        print("no boundaries installed")
        return 0
    print(f"{'name':<14} {'label':<22} {'val.acc':>7} {'N':>7}  {'layers':<6} {'range':<13} source")
    for b in found.values():
        acc = "-" if b.val_accuracy is None or not math.isfinite(b.val_accuracy) else f"{b.val_accuracy:.3f}"
        n = "-" if b.n is None else str(b.n)
        rng = f"{b.range[0]:+.1f}..{b.range[1]:+.1f}"
        print(f"{b.name:<14} {b.label[:22]:<22} {acc:>7} {n:>7}  {b.layers[0]}-{b.layers[1]:<4} {rng:<13} {b.source}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from latentstudio.edit.boundaries import load_all, save_index, user_dir
    from latentstudio.edit.train import import_boundary

    out = Path(args.out) if args.out else user_dir()
    with as_user_errors():
        if args.space == "z" and not 100 <= args.samples <= 10_000_000:
            raise BoundaryError(f"--samples must be between 100 and 10000000, got {args.samples}")
        if args.name in load_all() and not args.force:
            raise BoundaryError(f"a boundary named {args.name!r} exists; pick another --name or pass --force")
        command = "latentstudio boundaries import " + " ".join(
            shlex.quote(a) for a in (Path(args.file).name, "--name", args.name, "--space", args.space))
        b = import_boundary(args.file, args.name, args.space, label=args.label, samples=args.samples,
                            command=command, generator=Runtime("cpu").generator() if args.space == "z" else None)
        save_index(out, [b])
    acc = "" if b.val_accuracy is None else f", Z→W validation accuracy {b.val_accuracy:.3f}"
    print(f"imported {b.name} into {out}{acc}")
    return 0


def _train_command(args: argparse.Namespace, names: list[str]) -> str:
    return (f"latentstudio boundaries train --attributes {','.join(names)} --n {args.n} "
            f"--seed {args.seed} --psi {args.psi:g} --size {args.size} --ratio {args.ratio:g}"
            + ("" if args.whiten == "auto" else f" --whiten {args.whiten}"))


def cmd_train(args: argparse.Namespace) -> int:
    from latentstudio.edit.boundaries import save_index, user_dir

    out = Path(args.out) if args.out else user_dir()
    with as_user_errors():
        if args.positive or args.negative:
            boundaries = [_train_labelled(args)]
        else:
            boundaries = _train_predictors(args)
        save_index(out, boundaries)
    for b in boundaries:
        print(f"{b.name:<12} validation accuracy {b.val_accuracy if b.val_accuracy is not None else float('nan'):.3f}"
              f"  (N={b.n})")
    print(f"wrote {len(boundaries)} boundaries to {out}")
    return 0


def _train_predictors(args: argparse.Namespace) -> list[Boundary]:
    from latentstudio.edit.train import ATTRIBUTES, SampleSpec, predictor_version, train_attributes, whitened

    names = list(ATTRIBUTES) if args.attributes == "all" else [a.strip() for a in args.attributes.split(",") if a.strip()]
    spec = SampleSpec(n=args.n, seed=args.seed, psi=args.psi, size=args.size)
    fits = train_attributes(names, spec, ratio=args.ratio, val_fraction=args.val_fraction,
                            generator=Runtime(args.device).generator(), batch=args.batch, workers=args.workers,
                            cache_dir=Path(args.cache) if args.cache else None,
                            keep_images=args.keep_images, whiten=args.whiten, progress=progress_printer("train"),
                            ray=args.ray)
    command = _train_command(args, names)
    out = []
    for name, fit in fits.items():
        info = ATTRIBUTES[name]
        out.append(Boundary(
            name=name, normal=fit.normal, label=info.label, sign=info.sign, range=info.range,
            layers=info.layers, val_accuracy=fit.val_accuracy, n=args.n,
            predictor=f"latentstudio.edit.predictors:{name}", command=command, source="trained",
            details={"psi": args.psi, "render_size": args.size, "ratio": args.ratio,
                     "positives": fit.n_pos, "negatives": fit.n_neg, "validation_samples": fit.n_val,
                     "train_accuracy": round(fit.train_accuracy, 4), "svm_c": fit.c, "seed": args.seed,
                     "whitened": whitened(name, args.whiten), "predictor_version": predictor_version()}))
    return out


def _train_labelled(args: argparse.Namespace) -> Boundary:
    from latentstudio.edit.train import fit_labelled

    if not (args.positive and args.negative and args.name):
        raise BoundaryError("user-labelled training needs --positive DIR, --negative DIR and --name NAME")
    fit = fit_labelled(Path(args.positive), Path(args.negative), val_fraction=args.val_fraction,
                       seed=args.seed, generator=Runtime(args.device).generator, progress=progress_printer("label"))
    command = (f"latentstudio boundaries train --positive {shlex.quote(Path(args.positive).name)} "
               f"--negative {shlex.quote(Path(args.negative).name)} --name {args.name}")
    return Boundary(name=args.name, normal=fit.normal, label=args.label or args.name.replace("_", " ").capitalize(),
                    sign="+ = like the positive examples", val_accuracy=fit.val_accuracy,
                    n=fit.n_pos + fit.n_neg, predictor="user labels", command=command, source="user",
                    details={"positives": fit.n_pos, "negatives": fit.n_neg,
                             "train_accuracy": round(fit.train_accuracy, 4)})


def cmd_pca(args: argparse.Namespace) -> int:
    from latentstudio.edit.pca import PCA_FILE, fit_pca, save_pca

    path = Path(args.output) if args.output else PCA_FILE
    pca = fit_pca(Runtime("cpu").generator(), samples=args.samples, components=args.components, seed=args.seed)
    save_pca(pca, path)
    print(f"wrote {path}: {args.components} components, std[:5] = "
          + ", ".join(f"{s:.2f}" for s in pca.std[:5]))
    return 0


# ----------------------------------------------------------------------------------- edit
def parse_set(items: list[str]) -> dict[str, float]:
    """["smile=1.5", "age=-2"] → {"smile": 1.5, "age": -2.0}; BoundaryError on bad items."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            alpha = float(value)
        except ValueError:
            alpha = float("nan")
        if not sep or not name or not math.isfinite(alpha):
            raise BoundaryError(f"bad --set {item!r}: expected NAME=NUMBER, e.g. smile=1.5")
        if name in out:
            raise BoundaryError(f"--set {name} given twice")
        out[name] = alpha
    return out


def cmd_calibrate(args: argparse.Namespace) -> int:
    from latentstudio.edit.boundaries import SHIPPED_DIR, load_index
    from latentstudio.edit.predictors import SCORE_NAMES
    from latentstudio.edit.responses import measure, predictor_scorer
    from latentstudio.edit.train import sample_w
    from latentstudio.models.generator import Generator

    folder = Path(args.out) if args.out else SHIPPED_DIR
    with as_user_errors():
        if args.faces < 2:
            raise BoundaryError("--faces must be at least 2")
        bs = load_index(folder)
        names = [n for n in bs if n in SCORE_NAMES] if args.names == "all" else \
            [n.strip() for n in args.names.split(",") if n.strip()]
        bad = [n for n in names if n not in bs or n not in SCORE_NAMES]
        if bad or not names:
            raise BoundaryError(f"cannot calibrate {', '.join(bad) or 'nothing'}: a boundary in {folder} "
                                f"whose name is a predictor ({', '.join(SCORE_NAMES)}) is needed")
        g = Generator.load(args.device)
        w = sample_w(g, np.arange(args.seed, args.seed + args.faces), 0.7)  # ψ 0.7, as the training samples
        table = measure(predictor_scorer(g), bs, names, np.repeat(w[:, None], NUM_SLOTS, axis=1),
                        progress=progress_printer())
        print(f"wrote {table.save(folder)}")
    return 0


def parse_keep(items: list[str] | None) -> list[str]:
    """["gender,age", "yaw"] → ["gender", "age", "yaw"]."""
    return [n.strip() for item in items or [] for n in item.split(",") if n.strip()]


def cmd_edit(args: argparse.Namespace) -> int:
    from latentstudio.edit.apply import apply_edits
    from latentstudio.edit.boundaries import parse_layers

    if bool(args.photo) == bool(args.code):
        raise user_error("give either a PHOTO or --code code.npz (not both)")
    with as_user_errors():
        alphas = parse_set(args.set or [])
        keep = parse_keep(args.keep)
        layers = parse_layers(args.layers) if args.layers else None
        directions = all_directions()
        apply_edits(np.zeros(W_PLUS, np.float32), alphas, directions, keep=keep, layers=layers)  # validate first
        for name, alpha in alphas.items():
            check_amount(name, alpha, directions[name].range, BoundaryError)
        runtime = Runtime(args.device)
        try:
            runtime.generator()
        except RuntimeError as exc:  # e.g. CUDA asked for but absent
            raise user_error(str(exc)) from exc
        w_plus, extras, photo = _source_code(args, runtime)
        table = keep_table(args.keep_method, alphas, keep, layers, directions)
        from latentstudio.tune import generator_for_code

        g = generator_for_code(runtime.generator(), extras)  # tuned codes: their weights
        if table is None:
            edited = apply_edits(w_plus, alphas, directions, keep=keep, layers=layers)
        else:
            from latentstudio.edit.responses import hold_kept, predictor_scorer

            held = hold_kept(w_plus, alphas, directions, keep, table, predictor_scorer(g, full=True))
            edited = held.w_plus
            print("keep (measured): steps " + ", ".join(f"{n} {t:+.2f}" for n, t in held.steps.items())
                  + "; left over (stds) " + ", ".join(f"{n} {r:+.2f}" for n, r in held.residual.items()),
                  file=sys.stderr)
        scene, surroundings = edited, None  # what is rendered; the code file's surroundings
        if args.repair is not None:  # the face only: hair, headwear and background stay the edited code's
            from latentstudio.edit.repair import repair
            from latentstudio.identity.surroundings import in_surroundings

            outside, by = np.asarray(edited, np.float32), runtime.surroundings()
            fixed = repair(outside, directions, generator=g, max_strength=args.repair,
                           scene=lambda c: in_surroundings(c, outside, by))
            edited = scene = fixed.w_plus
            if fixed.alpha > 0 and by is not None:
                scene, surroundings = in_surroundings(edited, outside, by), outside
            print(f"repair: moved {fixed.alpha:g} along the quality direction, quality score "
                  f"{fixed.score_before:.2f} -> {fixed.score_after:.2f} (target {fixed.threshold:.2f})",
                  file=sys.stderr)
        from latentstudio.render import render_scene

        rgb = render_scene(g, scene, args.size)
        if args.paste_back is not None:
            target = args.paste_back or photo
            if not target:
                raise BoundaryError("--paste-back needs the photo the code came from: --paste-back PHOTO")
            check_output(args.output, [target], BoundaryError)  # the photo the code names is an input too
            rgb = paste_into(Path(target), rgb, extras)
        meta = {"latentstudio": "edit " + " ".join(f"{k}={v:g}" for k, v in alphas.items())
                + (f" repair={args.repair:g}" if args.repair is not None else "")
                + (f" keep={','.join(keep)}" if keep else "") + (f" layers={args.layers}" if args.layers else "")}
        from latentstudio.face.image_io import save_image

        save_image(Path(args.output), rgb, meta)
        if args.save_code:
            from latentstudio.codes import save_code

            kept = {k: v for k, v in extras.items() if k not in ("w_plus", "surroundings")}
            if surroundings is not None:  # `render --code` shows it as written here
                kept["surroundings"] = surroundings
            save_code(args.save_code, edited, **kept)
    print(f"wrote {args.output}")
    return 0


def keep_table(method: str, alphas: dict[str, float], keep: list[str], layers: tuple[int, int] | None,
               directions: dict[str, Boundary]):  # noqa: ANN201 - Responses | None
    """The response table ``edit --keep`` holds scores with, or None for InterFaceGAN's projection.

    ``auto``: measured when there is something to keep, no --layers, and the shipped table covers
    every edited and kept boundary; ``measured``: the same, but an error when it does not apply.
    """
    from latentstudio.edit.boundaries import SHIPPED_DIR
    from latentstudio.edit.responses import Responses, split_names

    edited, kept = split_names(alphas, keep)
    names = edited + kept
    if method == "projection" or not kept or not edited:
        return None
    table = Responses.load(SHIPPED_DIR)
    if table is not None and layers is None and table.covers(directions, names):
        return table
    if method == "measured":
        why = "--layers changes the slot ranges it was measured on" if layers is not None else \
            "no measured responses for " + ", ".join(names) + " (see `latentstudio boundaries calibrate`)"
        raise BoundaryError(f"--keep-method measured cannot be used: {why}")
    return None


def _source_code(args: argparse.Namespace, runtime: Runtime) -> tuple[np.ndarray, dict[str, np.ndarray], str | None]:
    """(W+ (23,512), extras (the placement …), photo path or None) from --code or by inverting PHOTO."""
    from latentstudio.codes import load_code, load_code_extras

    if args.code:
        code = load_code(args.code)  # LatentError (exit 2) when missing or malformed
        extras = load_code_extras(args.code)
        photo = str(extras["photo"]) if "photo" in extras else None  # invert's codes name their photo
        return code, extras, photo if photo and Path(photo).is_file() else None
    from latentstudio.photo import invert_photo

    pc = invert_photo(args.photo, preset=args.preset, generator=runtime.generator(), progress=progress_printer(),
                      nets=runtime)
    return np.asarray(pc.w_plus, np.float32).reshape(W_PLUS), pc.placement.arrays(), args.photo


def paste_into(photo_path: Path, aligned: np.ndarray, extras: dict[str, np.ndarray]) -> np.ndarray:
    """Paste an aligned render back into the photo at the code's stored placement (codes without
    stored landmarks: the photo's face closest to the stored quad)."""
    from latentstudio.face.placement import Placement

    return Placement.from_arrays(extras, photo_path, find_landmarks=True).paste(aligned)


# ------------------------------------------------------------------------------- register
def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``boundaries`` and ``edit`` command groups to the ``latentstudio`` parser."""
    from latentstudio.edit.train import ATTRIBUTES, WHITEN_CHOICES

    bnd = sub.add_parser("boundaries", help="list, import, train editing boundaries").add_subparsers(dest="boundaries_cmd")

    ls = bnd.add_parser("list", help="installed boundaries with validation accuracy")
    ls.add_argument("--pca", action="store_true", help="also list the PCA (GANSpace) sliders")
    ls.set_defaults(func=cmd_list)

    im = bnd.add_parser("import", help="import a published boundary (.npy/.pt, Z or W space)")
    im.add_argument("file")
    im.add_argument("--name", required=True)
    im.add_argument("--space", choices=("z", "w"), required=True)
    im.add_argument("--label", help="label shown in the editor")
    im.add_argument("--samples", type=int, default=20000, help="samples for the Z→W conversion")
    im.add_argument("--out", help="boundary folder (default: the user folder in $LATENTSTUDIO_HOME)")
    im.add_argument("--force", action="store_true", help="replace a boundary of the same name")
    im.set_defaults(func=cmd_import)

    tr = bnd.add_parser("train", help="train InterFaceGAN boundaries from the predictors or from labelled folders")
    tr.add_argument("--attributes", default="all", help="comma-separated predictor names, or 'all'")
    tr.add_argument("--n", type=int, default=5000, help="samples to render and score")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--psi", type=float, default=0.7, help="truncation of the samples")
    tr.add_argument("--size", type=int, choices=(256, 512, 1024), default=256, help="render size for scoring")
    tr.add_argument("--ratio", type=float, default=0.02, help="top/bottom fraction kept as positives/negatives")
    tr.add_argument("--val-fraction", type=float, default=0.3)
    tr.add_argument("--whiten", choices=WHITEN_CHOICES, default="auto",
                    help="fit the SVM on whitened codes: auto = for the attributes where it was measured to help ("
                         + ", ".join(n for n, info in ATTRIBUTES.items() if info.whiten)
                         + "), all, or none (raw W, as InterFaceGAN)")
    tr.add_argument("--device", choices=("cpu", "cuda"), default=None)
    tr.add_argument("--batch", type=int, default=None, help="renders per synthesis call")
    tr.add_argument("--workers", type=int, default=0,
                    help="predictor processes (use on many-core machines); with --ray: actors (default all CPUs)")
    tr.add_argument("--ray", nargs="?", const=True, default=False, metavar="ADDRESS",
                    help="render and score the samples on a Ray cluster (ADDRESS, or a local one)")
    tr.add_argument("--cache", help="score cache folder (resumable; default in $LATENTSTUDIO_HOME)")
    tr.add_argument("--keep-images", action="store_true",
                    help="also cache the renders (size² × 3 bytes each) so re-scoring skips rendering")
    tr.add_argument("--out", help="boundary folder to write (default: the user folder)")
    tr.add_argument("--positive", help="user-labelled mode: folder of positive photos or codes")
    tr.add_argument("--negative", help="user-labelled mode: folder of negative photos or codes")
    tr.add_argument("--name", help="user-labelled mode: name of the new boundary")
    tr.add_argument("--label", help="user-labelled mode: label shown in the editor")
    tr.set_defaults(func=cmd_train)

    pc = bnd.add_parser("pca", help="compute GANSpace PCA directions of W")
    pc.add_argument("--samples", type=int, default=100_000)
    pc.add_argument("--components", type=int, default=20)
    pc.add_argument("--seed", type=int, default=0)
    pc.add_argument("-o", "--output", help="default: boundaries/pca_w.npz")
    pc.set_defaults(func=cmd_pca)

    ca = bnd.add_parser("calibrate", help="measure how every predictor responds to each boundary "
                        "(the table `edit --keep` holds scores with)")
    ca.add_argument("--names", default="all", help="comma-separated boundaries, or 'all' predictor-trained ones")
    ca.add_argument("--faces", type=int, default=60, help="held-out generated faces to average over")
    ca.add_argument("--seed", type=int, default=3_000_000, help="first seed (held out from training and the benchmark)")
    ca.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ca.add_argument("--out", help="folder of the boundaries and the table (default: the shipped boundaries/)")
    ca.set_defaults(func=cmd_calibrate)

    ed = sub.add_parser("edit", help="edit a photo or a latent code along boundaries")
    ed.add_argument("photo", nargs="?", help="photo to invert and edit")
    ed.add_argument("--code", help="latent code (.npz from `latentstudio invert`, or .npy)")
    ed.add_argument("--set", action="append", metavar="NAME=VALUE", help="edit strength α (repeatable)")
    ed.add_argument("--keep", action="append", metavar="NAME,NAME", help="directions the edit must not move")
    ed.add_argument("--keep-method", choices=("auto", "measured", "projection"), default="auto",
                    help="measured: hold the kept attributes' predictor scores in a closed loop "
                         "(boundaries/responses.npz); projection: InterFaceGAN's orthogonal "
                         "projection; auto (default): measured where the table covers the edit")
    ed.add_argument("--layers", metavar="A-B", help="apply the edits to W+ slots A..B only (0-22)")
    ed.add_argument("--paste-back", nargs="?", const="", default=None, metavar="PHOTO",
                    help="paste the edited face back into the photo (with --code: the photo the code names, or PHOTO)")
    ed.add_argument("--preset", default="fast", help="inversion preset for photo input")
    ed.add_argument("--size", type=int, choices=(256, 512, 1024), default=1024)
    ed.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ed.add_argument("--save-code", metavar="CODE.npz", help="also write the edited code")
    ed.add_argument("--repair", nargs="?", type=float, const=3.0, default=None, metavar="STRENGTH",
                    help="repair GAN artifacts: move along the quality direction until the face "
                         "looks clean, at most STRENGTH (default 3)")
    ed.add_argument("-o", "--output", required=True)
    ed.set_defaults(func=cmd_edit)
