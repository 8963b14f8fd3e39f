"""Inversion benchmarks (``latentstudio bench invert`` runs this file).

Presets (default mode)::

    python bench/invert.py --presets fast[,quality] [--faces 10] [--photos a.jpg …] [--device cpu|cuda]

Each preset on generated faces (seeds 5000…, ψ 0.7, ground truth known) and on real photos (the
five of ``bench/photos.py``, fetched once from PyPI, plus any ``--photos``): LPIPS-VGG at 256²
between the aligned target and the 1024² render of the code (both area-reduced), PSNR at 256²,
dlib identity distance (our port; the same network is the fast preset's identity loss, so it
flatters; same person < 0.6), OpenFace nn4.small2 identity distance (a second recogniser that no
loss uses; same person < 1.0), seconds per face (alignment of photos excluded, it is timed separately), and the
edit response: the mean predictor change of the shipped smile / age edit (α = +3, default slots)
on the inverted codes, divided by the mean change on the generated faces' true codes (a ratio of
means: one face's change can be near 0); 1 = as editable as a generated face. ``--tune STEPS`` adds
pivotal tuning (:mod:`latentstudio.tune`) after each inversion; the reconstruction and the edits
are then rendered with the tuned weights, and the time covers both.

Editability (``--editability``): reconstruction *and* editability, for several regularisers.

    python bench/invert.py --editability [--faces 4] [--steps 120] [--preset fast]

Configurations compared (same steps, same losses otherwise):

* ``W only``      — a single w broadcast to the 23 slots (w_fraction = 1)
* ``W+ free``     — per-slot codes from the start, no delta penalty (the "reconstructs anything" mode)
* ``W+ reg``      — ours: W phase, then W+ with the delta penalty (the default preset)

Metrics per configuration (means over faces):

* ``lpips``   LPIPS-VGG between the target and the 1024² render of the code, both area-reduced to 256²
* ``id``      dlib identity distance target ↔ reconstruction (when the identity net is installed)
* ``consist`` latent editing consistency (e4e smile and age directions, α = 3): invert x → w, edit
              w + d → image, invert that image → w', render w' − d; LPIPS to the render of w
* ``resp``    edit response: predictor change (smile, age) for w + d on the *inverted* code divided
              by the change on the ground-truth code (1 = as editable as a generated face)

The e4e directions (../shared/reference-boundaries/e4e_w) are used for this measurement only.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from latentstudio.invert import PRESETS, STARTS, Preset, invert  # noqa: E402
from latentstudio.losses.lpips import load_lpips  # noqa: E402
from latentstudio.models.generator import Generator, from_uint8, to_uint8  # noqa: E402
from latentstudio.tune import TuneSettings, pivotal_tune, tuned_generator  # noqa: E402

ALPHA = 3.0
EDITS = ("smile", "age")  # shipped boundaries whose response on inverted codes is measured


def edit_scores(g: Generator, code: np.ndarray | torch.Tensor, bs: dict,  # noqa: ANN001
                base: np.ndarray | None = None) -> dict[str, tuple[float, float]]:
    """name → (score of the render of ``code``, score after the shipped edit +ALPHA), for EDITS.
    ``base``: the render of ``code`` when the caller already has it."""
    from latentstudio.edit.apply import apply_edits
    from latentstudio.edit.predictors import predict_all

    wp = (code.detach().cpu().numpy() if isinstance(code, torch.Tensor) else np.asarray(code)).astype(np.float32)
    wp = np.array(np.broadcast_to(wp, (23, 512))) if wp.ndim == 1 else wp
    images = [render256(g, wp) if base is None else base]
    images += [render256(g, apply_edits(wp, {k: ALPHA}, bs)) for k in EDITS]
    s = predict_all(np.stack(images))
    return {k: (float(s[k][0]), float(s[k][1 + i])) for i, k in enumerate(EDITS)}


def render256(g: Generator, code: np.ndarray | torch.Tensor) -> np.ndarray:
    img = g.synthesize(torch.as_tensor(code), size=1024)
    return to_uint8(F.interpolate(img, size=256, mode="area"))[0]


def configs(preset: str) -> dict[str, object]:
    base = PRESETS[preset]
    return {"W only": replace(base, w_fraction=1.0),
            "W+ free": replace(base, w_fraction=0.0, delta_weight=0.0),
            "W+ reg (ours)": base}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


def photo_targets(paths: list[Path]) -> tuple[dict[str, np.ndarray], list[float]]:
    """name → aligned 256² target (area-reduced from the 1024² FFHQ alignment), alignment times
    (per photo, after a first untimed alignment has loaded the dlib models)."""
    from latentstudio.photo import align_photo

    out, times = {}, []
    if paths:
        t0 = time.time()
        align_photo(paths[0])
        print(f"first alignment, loading the dlib models: {time.time() - t0:.2f} s", flush=True)
    for p in paths:
        t0 = time.time()
        alignment, _, _ = align_photo(p)
        times.append(time.time() - t0)
        img = torch.from_numpy(alignment.image).permute(2, 0, 1)[None].float()
        out[f"photo:{p.name}"] = F.interpolate(img, size=256, mode="area").round().clamp(0, 255)[0].permute(1, 2, 0).numpy().astype(np.uint8)
    return out, times


def _elapsed(g: Generator, t0: float) -> float:
    if g.device.type == "cuda":
        torch.cuda.synchronize()
    return time.time() - t0


def measure(g: Generator, code: np.ndarray, target: np.ndarray, lp, idnet, openface,  # noqa: ANN001
            bs: dict) -> dict[str, float]:
    """Reconstruction (LPIPS-VGG, PSNR, dlib and OpenFace identity) and the edit moves of a code."""
    rec = render256(g, code)
    with torch.no_grad():
        lpips = float(lp(from_uint8(rec).to(g.device), from_uint8(target).to(g.device)))
        pair = from_uint8(np.stack([rec, target])).to(g.device)
        e, o = idnet.embed_aligned(pair), openface.embed_aligned(pair)
    m = {"lpips": lpips, "psnr": psnr(rec, target), "id": float((e[0] - e[1]).norm()),
         "id_openface": float((o[0] - o[1]).norm())}
    moved = edit_scores(g, code, bs, rec)  # what the shipped edits do to this code
    for k in EDITS:
        m[f"move_{k}"] = moved[k][1] - moved[k][0]
    return m


def overridden(preset: str, args: argparse.Namespace) -> Preset:
    """The preset with ``--start`` and every ``--set FIELD=VALUE`` applied (VALUE read as the
    field's type: ``--set delta_weight=5e-4``, ``--set lr=0.03``)."""
    p = replace(PRESETS[preset], start=args.start) if args.start else PRESETS[preset]
    for item in args.set:
        key, _, value = item.partition("=")
        if not hasattr(p, key):
            raise SystemExit(f"--set {item}: presets have no field {key!r}")
        old = getattr(p, key)
        typed: object = value.lower() in ("1", "true", "yes") if isinstance(old, bool) else \
            type(old)(value) if old is not None else float(value)
        p = replace(p, **{key: typed})
    return p


def run_presets(args: argparse.Namespace) -> None:
    from PIL import Image

    from latentstudio.edit.boundaries import SHIPPED_DIR, load_index
    from latentstudio.face.chip import IdentityNet
    from latentstudio.face.openface import OpenFaceIdentity
    from photos import real_photos

    g = Generator.load(args.device)
    lp = load_lpips("vgg", g.device)
    idnet = IdentityNet.load(g.device)
    openface = OpenFaceIdentity.load(g.device)  # a second recogniser, not used by any loss
    bs = load_index(SHIPPED_DIR)
    truth = {f"seed {args.seed0 + i}": g.seed_w(args.seed0 + i, 0.7) for i in range(args.faces)}
    targets = {name: render256(g, w) for name, w in truth.items()}  # the true codes' renders
    bench_photos = real_photos(fetch=not args.no_fetch)[:args.max_photos]
    photos, align_times = photo_targets(bench_photos + [Path(p) for p in args.photos])
    targets.update(photos)
    print(f"device {g.device}, torch threads {torch.get_num_threads()}; alignment "
          f"{np.mean(align_times):.2f} s per photo ({len(align_times)} photos)", flush=True)
    # what the edits do to the generated faces' true codes: the yardstick of "editable"
    true_move = {name: {k: b - a for k, (a, b) in edit_scores(g, w, bs, targets[name]).items()}
                 for name, w in truth.items()}
    mean_move = {k: float(np.mean([m[k] for m in true_move.values()])) for k in EDITS}
    print("edit +%g on true codes, mean predictor change: %s" % (ALPHA, mean_move), flush=True)
    rows = []
    for preset in args.presets.split(","):
        chosen = overridden(preset, args)
        if g.device.type == "cuda":  # untimed warm-up: CUDA context, cuDNN algorithm choice, allocator
            invert(next(iter(targets.values())), preset=chosen, steps=5, generator=g,
                   cuda_graphs=not args.eager)
        name0 = preset + "".join(f" {kv}" for kv in args.set) + (" eager" if args.eager else "") + \
            (f" {args.steps} steps" if args.steps else "")
        labels = [name0] + ([f"{name0}+tune{args.tune}@{args.tune_size}"] if args.tune else [])
        per: dict[str, dict[str, dict[str, list[float]]]] = {
            lb: {"generated": {}, "photos": {}} for lb in labels}
        for name, target in targets.items():
            if args.photos_only and not name.startswith("photo:"):
                continue
            t0 = time.time()
            code = invert(target, preset=chosen, steps=args.steps, generator=g,
                          cuda_graphs=not args.eager).w_plus
            variants = [(labels[0], g, _elapsed(g, t0))]
            if args.tune:  # pivotal tuning of the same code: the edits are rendered with the tuned weights too
                settings = TuneSettings(steps=args.tune, size=args.tune_size, lr=args.tune_lr)
                deltas = pivotal_tune(target, code, settings=settings, generator=g).deltas
                variants.append((labels[1], tuned_generator(g, deltas), _elapsed(g, t0)))
            kind = "photos" if name.startswith("photo:") else "generated"
            for label, gen, sec in variants:
                m = measure(gen, code, target, lp, idnet, openface, bs)
                m["sec"] = sec
                for k in EDITS:  # the yardstick: the target's own true code, for a photo the mean
                    m[f"ref_{k}"] = true_move[name][k] if name in true_move else mean_move[k]
                for k, v in m.items():
                    per[label][kind].setdefault(k, []).append(v)
                out = Path(args.out) / label
                out.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([target, render256(gen, code)], axis=1)).save(
                    out / f"{name.replace(':', '_').replace(' ', '_')}.png")
                print(f"{label} {name}: " + " ".join(f"{k} {v:.3f}" for k, v in m.items()), flush=True)
        for label in labels:
            for kind, stats in per[label].items():
                if stats:
                    rows.append((label, kind, len(stats["lpips"]), {k: float(np.mean(v)) for k, v in stats.items()},
                                 max(stats["lpips"]), max(stats["id"]), max(stats["id_openface"])))
    print("\n| preset | targets | n | LPIPS-VGG ↓ (max) | PSNR dB ↑ | dlib id ↓ (max) | OpenFace id ↓ (max) "
          "| smile / age edit response | s/face |")
    print("|---|---|---|---|---|---|---|---|---|")
    for preset, kind, n, m, lmax, imax, omax in rows:
        print(f"| {preset} | {kind} | {n} | {m['lpips']:.3f} ({lmax:.3f}) | {m['psnr']:.1f} | "
              f"{m['id']:.3f} ({imax:.3f}) | {m['id_openface']:.3f} ({omax:.3f}) | "
              f"{m['move_smile'] / m['ref_smile']:.2f} / {m['move_age'] / m['ref_age']:.2f} | {m['sec']:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="fast", help="comma-separated presets to benchmark")
    ap.add_argument("--photos", nargs="*", default=[],
                    help="more real photos (besides those of bench/photos.py)")
    ap.add_argument("--max-photos", type=int, default=None, metavar="N",
                    help="use only the first N photos of bench/photos.py (reduced CPU runs)")
    ap.add_argument("--start", choices=STARTS, default=None,
                    help="override the presets' starting point (see latentstudio.invert)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "invert"),
                    help="side-by-side target | reconstruction PNGs go here")
    ap.add_argument("--no-fetch", action="store_true",
                    help="do not download bench/photos.py's portraits; use what is cached")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--eager", action="store_true",
                    help="on CUDA, run every step eagerly instead of replaying a CUDA graph")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="override a preset field (repeatable), e.g. --set delta_weight=5e-4")
    ap.add_argument("--tune", type=int, default=0, metavar="STEPS",
                    help="also pivotal-tune the generator for STEPS steps after each inversion")
    ap.add_argument("--tune-size", type=int, choices=(256, 512, 1024), default=TuneSettings.size,
                    help="render route of the tuning steps")
    ap.add_argument("--tune-lr", type=float, default=TuneSettings.lr)
    ap.add_argument("--editability", action="store_true", help="compare the W / W+ regularisers instead")
    ap.add_argument("--faces", type=int, default=10)
    ap.add_argument("--photos-only", action="store_true",
                    help="invert only the photos (the --faces generated faces still set the edit yardstick)")
    ap.add_argument("--steps", type=int, default=None, help="override the preset's step count")
    ap.add_argument("--preset", default="fast", help="editability mode: the preset the configs derive from")
    ap.add_argument("--seed0", type=int, default=5000)
    ap.add_argument("--no-consistency", action="store_true", help="skip the second inversion")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if not args.editability:
        run_presets(args)
        return
    g = Generator.load("cpu")
    lp = load_lpips("vgg")
    from latentstudio.edit.apply import edit_delta
    from latentstudio.edit.boundaries import SHIPPED_DIR, load_index

    bs = load_index(SHIPPED_DIR)
    dirs = {k: torch.from_numpy(edit_delta({k: 1.0}, bs)) for k in EDITS}  # (23,512), default slots
    try:
        from latentstudio.face.chip import IdentityNet

        idnet = IdentityNet.load("cpu")
    except Exception:  # noqa: BLE001 - identity net not installed
        idnet = None
    from latentstudio.edit.predictors import predict_all

    def dist(a: np.ndarray, b: np.ndarray) -> float:
        return float(lp(from_uint8(a), from_uint8(b)))

    rows = []
    for name, preset in configs(args.preset).items():
        stats: dict[str, list[float]] = {"lpips": [], "id": [], "consist": [], "resp": []}
        t0 = time.time()
        for i in range(args.faces):
            w_true = g.seed_w(args.seed0 + i, 0.7)
            target = render256(g, w_true)
            code = invert(target, preset=preset, steps=args.steps, generator=g).w_plus
            rec = render256(g, code)
            stats["lpips"].append(dist(rec, target))
            if idnet is not None:
                e = idnet.embed_aligned(from_uint8(np.stack([rec, target])))
                stats["id"].append(float((e[0] - e[1]).norm()))
            for key, d in dirs.items():
                edited_true = render256(g, w_true + ALPHA * d)
                edited_inv = render256(g, torch.from_numpy(code) + ALPHA * d)
                s = predict_all(np.stack([target, edited_true, rec, edited_inv]))[key]
                if abs(s[1] - s[0]) > 1e-3:
                    stats["resp"].append(float((s[3] - s[2]) / (s[1] - s[0])))
                if not args.no_consistency:
                    code2 = invert(edited_inv, preset=preset, steps=args.steps, generator=g).w_plus
                    back = render256(g, torch.from_numpy(code2) - ALPHA * d)
                    stats["consist"].append(dist(back, rec))
        rows.append((name, {k: (np.mean(v) if v else float("nan")) for k, v in stats.items()},
                     (time.time() - t0) / args.faces))
    print(f"{args.faces} generated faces (seeds {args.seed0}…), {args.steps or PRESETS[args.preset].steps} steps, preset {args.preset}")
    print("| config | LPIPS ↓ | id dist ↓ | edit consistency LPIPS ↓ | edit response (1 = generated) | s/face |")
    print("|---|---|---|---|---|---|")
    for name, m, sec in rows:
        print(f"| {name} | {m['lpips']:.3f} | {m['id']:.3f} | {m['consist']:.3f} | {m['resp']:.2f} | {sec:.0f} |")


if __name__ == "__main__":
    main()
