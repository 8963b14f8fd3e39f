"""Identity-transfer benchmark on real photos (and generated pairs), judged by recognisers no loss uses.

    python bench/transfer.py [--heldout | --photos P …] [--codes DIR] [--refine STEPS] [--generated 20] [--weights FILE]
                             [--results bench/RESULTS.md] [--sheet bench/contact_sheets/transfer_real.jpg]

Real photos: ``bench/photos.py`` (the astronaut, Obama ×3, Biden); each is aligned and inverted with
the ``fast`` preset once (cached under ``--codes``, default bench/out/transfer/codes). Pairs: every
ordered pair (A = identity, B = attributes) of photos of different people. ``--heldout``: the six
faces of a group photo none of the settings were chosen on (``heldout_photos``; 30 pairs; its own
section of RESULTS, no contact sheet). ``--photos``: any photos, one person each (a checker's own set;
its own section, no contact sheet, codes cached in bench/out/transfer/photo_codes). Every code is rendered at 1024² and measured there:

- identity: OpenFace nn4.small2 distance (``latentstudio.face.openface``; no loss uses it; same
  person < 1.0) and dlib's own descriptor (``dlib.face_recognition_model_v1`` on a chip of the
  measured landmarks; same person < 0.6), both to A's and to B's aligned *photos*;
- attributes: yaw / pitch from dlib's 68 landmarks (``predict_all``), and the mouth (points 48–67,
  mean point distance / inter-ocular distance), all against B's reconstruction (B's own code);
  lighting (``edit.predictors.lighting``: which side the light comes from, by the two cheeks'
  lightness), its error against B's reconstruction and against A's photo (no target: the issue
  asks for B's lighting, and a result lit as A's photo shows it);
  background: LPIPS-VGG at 256² against B's reconstruction with the face hull (B's landmarks,
  jaw + brows + forehead) blanked in both;
- id amount sweep 0, 0.25, …, 1 (``blend(B, A, t, 0)``): Spearman(t, −OpenFace distance to A);
- de-identification of every photo (strength 1, seeds 0, 1 and 2: three new people each): OpenFace /
  dlib distance to the photo, yaw and mouth against the photo's reconstruction;
- the feed-forward blend's cost (median of 50 calls, 2 threads);
- ``--generated N`` (default 20) pairs of generated faces (ψ 0.7, seeds 8 000 000 …), measured the
  same way against the two faces' own renders, and their id-amount sweep (no targets: the
  issue's are on the real pairs).

Methods: ``mapper`` (the shipped feed-forward transfer, rendered as the app and the CLI show it:
in B's hair and background, ``identity.surroundings``; the id-amount sweep, refine and the
de-identifications are rendered the same way), ``mapper (the code's own render)`` (its code
alone, as before the surroundings), ``mix 0-3`` (slots 0–3 from B, 4–22 from
A: the plain style mix the mapper must beat), ``B`` (B's own code: the attribute reference) and,
with ``--refine N``, ``mapper + refine N``.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from dlib_reference import DlibIdentity
from photos import heldout_photos, real_photos

from latentstudio.edit.predictors import interocular, predict_all
from latentstudio.edit.predictors import load_models as load_predictors
from latentstudio.face.openface import OpenFaceIdentity
from latentstudio.identity import api
from latentstudio.identity.train import hull_masks
from latentstudio.identity.surroundings import InSurroundings, in_surroundings
from latentstudio.models.generator import from_uint8
from latentstudio.render import Scene, render_scene
from latentstudio.runtime import Runtime

SECTION = "## Identity transfer on real photos (issue 21)"
HELDOUT_SECTION = "## Identity transfer on held-out photos (issue 21)"
PHOTOS_SECTION = "## Identity transfer on the photos given with --photos (issue 21)"
#: per photo set (``photo_set``): its RESULTS section, its flag, how its photos are called, its code cache
SETS = {"portraits": (SECTION, "", "", "codes"), "heldout": (HELDOUT_SECTION, " --heldout", "held-out ", "heldout_codes"),
        "photos": (PHOTOS_SECTION, " --photos …", "given ", "photo_codes")}


def photo_set(args: argparse.Namespace) -> str:
    """Which photos a run measures: ``--photos``, ``--heldout`` or the portraits."""
    return "photos" if args.photos else "heldout" if args.heldout else "portraits"
PERSON = {"astronaut": "collins", "obama": "obama", "obama2": "obama", "obama3": "obama", "biden": "biden"}
SWEEP = (0.0, 0.25, 0.5, 0.75, 1.0)
DEID_SEEDS = (0, 1, 2)  # de-identification is measured with three different new people per photo
TARGETS = {"of_a": 0.90, "dl_a": 0.50, "yaw": 5.0, "pitch": 5.0, "mouth": 0.04, "bg": 0.15}


class Judge:
    """Renders codes at 1024² and measures them with nets no loss uses (OpenFace, dlib's own)."""

    def __init__(self, models: api.IdentityModels) -> None:
        from latentstudio.losses.lpips import load_lpips

        self.m = models
        self.openface = OpenFaceIdentity.load(models.device)
        self.dlib = DlibIdentity()
        self.pred = load_predictors()
        self.lpips = load_lpips("vgg", models.device)

    def render(self, items: np.ndarray | list) -> np.ndarray:
        """1024² renders of codes (N,23,512) or of a list of codes and ``render.Scene``s (a result
        in B's surroundings: what the app and the CLI show) → (N,1024,1024,3) uint8."""
        g = self.m.generator
        return np.stack([render_scene(g, c if isinstance(c, Scene) else np.asarray(c, np.float32), 1024)
                         for c in items])

    def measure(self, images: np.ndarray) -> dict[str, np.ndarray]:
        s = predict_all(images, self.pred)
        small = np.stack([cv2.resize(im, (256, 256), interpolation=cv2.INTER_AREA) for im in images])
        with torch.no_grad():
            of = self.openface.embed_aligned(from_uint8(images).to(self.m.device)).cpu().numpy()
        return {"yaw": s["yaw"], "pitch": s["pitch"], "light": s["lighting"], "valid": s["valid"],
                "lm": s["landmarks"] / images.shape[1],
                "of": of, "dlib": self.dlib.embed(images, s["landmarks"]), "small": small}

    def codes(self, codes: np.ndarray) -> dict[str, np.ndarray]:
        return self.measure(self.render(codes))

    def scores(self, m: dict[str, np.ndarray], i: int, a_ref: dict[str, np.ndarray], b_ref: dict[str, np.ndarray],
               b_rec: dict[str, np.ndarray]) -> dict[str, float]:
        """``scores`` plus the background LPIPS against B's reconstruction (``bg``)."""
        r = scores(m, i, a_ref, b_ref, b_rec)
        r["bg"] = float(self.background(m["small"][i:i + 1], b_rec["small"], b_rec["lm"])[0])
        return r

    def background(self, out_small: np.ndarray, ref_small: np.ndarray, ref_lm: np.ndarray) -> np.ndarray:
        """LPIPS-VGG at 256² outside the reference's face hull → (N,)."""
        mask = hull_masks(ref_lm, 256).to(self.m.device)
        a = from_uint8(out_small).to(self.m.device) * mask
        b = from_uint8(ref_small).to(self.m.device) * mask
        with torch.no_grad():
            return self.lpips(a, b).reshape(-1).cpu().numpy()


def scores(m: dict[str, np.ndarray], i: int, a_ref: dict[str, np.ndarray], b_ref: dict[str, np.ndarray],
           b_rec: dict[str, np.ndarray]) -> dict[str, float]:
    """One result (row i of m) against A's photo, B's photo and B's reconstruction (row 0 each)."""
    return {"of_a": float(np.linalg.norm(m["of"][i] - a_ref["of"][0])),
            "of_b": float(np.linalg.norm(m["of"][i] - b_ref["of"][0])),
            "dl_a": float(np.linalg.norm(m["dlib"][i] - a_ref["dlib"][0])),
            "dl_b": float(np.linalg.norm(m["dlib"][i] - b_ref["dlib"][0])),
            "yaw": float(abs(m["yaw"][i] - b_rec["yaw"][0])), "pitch": float(abs(m["pitch"][i] - b_rec["pitch"][0])),
            "light_b": float(abs(m["light"][i] - b_rec["light"][0])), "light_a": float(abs(m["light"][i] - a_ref["light"][0])),
            "mouth": float(np.linalg.norm(m["lm"][i, 48:] - b_rec["lm"][0, 48:], axis=-1).mean() / interocular(b_rec["lm"][0])),
            "valid": float(m["valid"][i] and b_rec["valid"][0])}


def spearman(x: list[float], y: list[float]) -> float:
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if np.std(rx) == 0 or np.std(ry) == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def photo_codes(folder: Path, generator, photos: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, Path]]:
    """Per photo: its fast-preset code (cached; inverted with ``generator`` when not), its aligned
    1024² crop, its path."""
    from latentstudio.codes import load_code, save_code
    from latentstudio.photo import align_photo, invert_photo

    codes, aligned, paths = {}, {}, {}
    for p in photos:
        name = p.stem
        cache = folder / f"{name}.npz"
        if cache.is_file():
            codes[name] = load_code(cache)
        else:
            t = time.monotonic()
            inv = invert_photo(p, preset="fast", generator=generator)
            codes[name] = np.asarray(inv.w_plus, np.float32).reshape(23, 512)
            folder.mkdir(parents=True, exist_ok=True)
            save_code(cache, codes[name], **inv.placement.arrays())
            print(f"inverted {name} in {time.monotonic() - t:.0f} s", file=sys.stderr)
        aligned[name] = align_photo(p)[0].image
        paths[name] = p
    return codes, aligned, paths


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    t0 = time.monotonic()
    models = Runtime(args.device, mapper_weights=args.weights).identity()
    judge = Judge(models)
    photos = [Path(p) for p in args.photos] if args.photos else heldout_photos() if args.heldout else real_photos()
    codes, aligned, paths = photo_codes(Path(args.codes), models.generator, photos)
    names = list(codes)
    photo = {n: judge.measure(aligned[n][None]) for n in names}
    rec = {n: judge.codes(codes[n][None]) for n in names}
    pairs = [(a, b) for a, b in itertools.permutations(names, 2) if PERSON.get(a, a) != PERSON.get(b, b)]

    methods = feed_forward_methods(codes, models, args.methods)
    if args.refine:
        methods[f"mapper + refine {args.refine}"] = lambda a, b: scene(api.refine_transfer(
            api.transfer(codes[a], codes[b], models=models), codes[b], identity_code=codes[a],
            identity_embedding=api.embed_aligned_photo(aligned[a], models=models), steps=args.refine, models=models),
            codes[b], models)
    per_pair, renders = measure_methods(judge, methods, pairs, photo, rec, t0)
    pasted, pasted_faces = paste_into_photos(pairs, renders["mapper"], Path(args.codes), paths)
    m = judge.measure(pasted_faces)
    per_pair[PASTED] = [judge.scores(m, i, photo[a], photo[b], photo[b]) for i, (a, b) in enumerate(pairs)]
    sweep = id_sweep(judge, models, codes, pairs, photo)
    generated = generated_pairs(judge, models, args.generated, args.methods) if args.generated else None

    deid = {}
    for seed in DEID_SEEDS:
        for n in names:
            image = judge.render([scene(api.deidentify(codes[n], 1.0, seed, models=models), codes[n], models)])
            r = judge.scores(judge.measure(image), 0, photo[n], photo[n], rec[n])
            deid[n, seed] = {"of": r["of_a"], "dl": r["dl_a"], "yaw": r["yaw"], "mouth": r["mouth"], "bg": r["bg"],
                             "image": image[0]}

    timing = blend_ms(models, codes[names[0]], codes[names[-1]])
    if args.sheet:
        contact_sheet(Path(args.sheet), pairs, Path(args.codes), aligned, pasted, renders["mapper"],
                      {n: d["image"] for (n, seed), d in deid.items() if seed == DEID_SEEDS[0]})
    return report(args, pairs, per_pair, sweep, deid, timing, time.monotonic() - t0, models, generated)


def scene(code: np.ndarray, outside: np.ndarray, models: api.IdentityModels) -> InSurroundings | np.ndarray:
    """``code`` as the app and the CLI show a result: in the surroundings of ``outside``."""
    return in_surroundings(code, outside, models.surroundings)


OWN = "mapper (the code's own render)"


def feed_forward_methods(codes: dict[str, np.ndarray], models: api.IdentityModels,
                         names: list[str]) -> dict[str, Callable[[str, str], np.ndarray | Scene]]:
    """The methods of ``names`` (the mapper always) as (A, B) → W+ code or scene, on ``codes``."""
    methods: dict[str, Callable[[str, str], np.ndarray | Scene]] = {
        "mapper": lambda a, b: scene(api.transfer(codes[a], codes[b], models=models), codes[b], models),
        OWN: lambda a, b: api.transfer(codes[a], codes[b], models=models),
        "mix 0-3": lambda a, b: np.concatenate([codes[b][:4], codes[a][4:]]),
        "B": lambda a, b: codes[b]}
    return {k: f for k, f in methods.items() if k in names or k == "mapper"}


def measure_methods(judge: Judge, methods: dict[str, Callable[[str, str], np.ndarray | Scene]], pairs: list[tuple[str, str]],
                    ref: dict[str, dict[str, np.ndarray]], rec: dict[str, dict[str, np.ndarray]],
                    t0: float) -> tuple[dict[str, list[dict[str, float]]], dict[str, np.ndarray]]:
    """Each method's result per pair (A, B), scored against A's and B's references (``ref``: the
    photos' measurements, or the generated faces' renders) and B's reconstruction (``rec``); and
    the results' 1024² renders per method."""
    per_pair: dict[str, list[dict[str, float]]] = {}
    renders: dict[str, np.ndarray] = {}
    for name, f in methods.items():
        renders[name] = judge.render([f(a, b) for a, b in pairs])
        m = judge.measure(renders[name])
        per_pair[name] = [judge.scores(m, i, ref[a], ref[b], rec[b]) for i, (a, b) in enumerate(pairs)]
        print(f"{name}: done ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
    return per_pair, renders


def id_sweep(judge: Judge, models: api.IdentityModels, codes: dict[str, np.ndarray], pairs: list[tuple[str, str]],
             ref: dict[str, dict[str, np.ndarray]]) -> list[tuple[float, list[float]]]:
    """Per pair: Spearman(id amount, −OpenFace distance to A's reference) over ``SWEEP``, and the distances."""
    sweep = []
    for a, b in pairs:
        m = judge.measure(judge.render([scene(api.blend(codes[b], codes[a], t, 0.0, models=models), codes[b], models)
                                        for t in SWEEP]))
        d = [float(np.linalg.norm(m["of"][i] - ref[a]["of"][0])) for i in range(len(SWEEP))]
        sweep.append((spearman(list(SWEEP), [-x for x in d]), d))
    return sweep


GENERATED_SEED = 8_000_000  # generated pair i: A = seed 8 000 000 + 2i, B = the next seed (ψ 0.7)


def generated_pairs(judge: Judge, models: api.IdentityModels, n: int,
                    names: list[str]) -> tuple[dict[str, list[dict[str, float]]], list[tuple[float, list[float]]]]:
    """The same measurements on ``n`` pairs of generated faces (ψ 0.7, one w on every slot), each
    judged against the two faces' own 1024² renders (no photo exists)."""
    g = models.generator
    codes = {f"g{k}": np.repeat(g.seed_w(GENERATED_SEED + k, 0.7).cpu().numpy()[None], 23, 0).astype(np.float32)
             for k in range(2 * n)}
    ref = {k: judge.codes(c[None]) for k, c in codes.items()}
    pairs = [(f"g{2 * i}", f"g{2 * i + 1}") for i in range(n)]
    per_pair, _ = measure_methods(judge, feed_forward_methods(codes, models, names), pairs, ref, ref,
                                  time.monotonic())
    return per_pair, id_sweep(judge, models, codes, pairs, ref)


def blend_ms(models: api.IdentityModels, a: np.ndarray, b: np.ndarray) -> float:
    """Median ms of one feed-forward blend call (what a panel slider move costs before rendering)."""
    api.blend(a, b, 0.5, 0.3, models=models)
    ts = []
    for i in range(50):
        t = time.perf_counter()
        api.blend(a, b, 0.5 + i / 1000, 0.3, models=models)
        ts.append(time.perf_counter() - t)
    return 1000 * statistics.median(ts)


def paste_into_photos(pairs: list[tuple[str, str]], transfers: np.ndarray, codes_folder: Path,
                      paths: dict[str, Path]) -> tuple[list[np.ndarray], np.ndarray]:
    """Each transfer's 1024² render (N, 1024, 1024, 3) pasted into B's photo as the app's "In photo"
    view and ``--paste-back`` do; returns the photos and their face found again and aligned."""
    from latentstudio.codes import load_code_extras
    from latentstudio.face.align import align_face, ffhq_quad
    from latentstudio.face.detect import detect_faces
    from latentstudio.face.placement import Placement

    photos, faces = [], []
    for (a, b), out in zip(pairs, transfers):
        place = Placement.from_arrays(load_code_extras(codes_folder / f"{b}.npz"), paths[b])
        pasted = place.paste(out, other_person=True)
        face = min(detect_faces(pasted), key=lambda f: float(np.abs(ffhq_quad(f.landmarks) - place.quad).sum()))
        photos.append(pasted)
        faces.append(align_face(pasted, face).image)
    return photos, np.stack(faces)


PASTED = "mapper, pasted into B's photo"  # measured against B's aligned photo, background included


def contact_sheet(path: Path, pairs: list[tuple[str, str]], codes_folder: Path, aligned: dict[str, np.ndarray],
                  pasted: list[np.ndarray], transfers: np.ndarray, deid: dict[str, np.ndarray]) -> None:
    """Rows: A's photo | B's photo | transfer | transfer pasted into B's photo | B de-identified."""
    from latentstudio.codes import load_code_extras

    size = 192
    rows = []
    for (a, b), img_t, photo in zip(pairs, transfers, pasted):
        img_d = deid[b]
        extras = load_code_extras(codes_folder / f"{b}.npz")
        quad = np.asarray(extras["quad"], np.float64)
        x0, y0 = np.floor(quad.min(0)).astype(int)
        x1, y1 = np.ceil(quad.max(0)).astype(int)
        h, w = photo.shape[:2]
        crop = photo[max(y0, 0):min(y1, h), max(x0, 0):min(x1, w)]
        tiles = [aligned[a], aligned[b], img_t, crop, img_d]
        row = np.concatenate([cv2.resize(t, (size, size), interpolation=cv2.INTER_AREA) for t in tiles], 1)
        cv2.putText(row, f"{a} -> {b}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    sheet = np.concatenate(rows, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 85])


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def _method_row(name: str, rows: list[dict[str, float]]) -> str:
    closer = np.mean([(r["of_a"] < r["of_b"]) and (r["dl_a"] < r["dl_b"]) for r in rows])
    return (f"| {name} | {_mean(rows, 'of_a'):.3f} | {_mean(rows, 'of_b'):.3f} | {_mean(rows, 'dl_a'):.3f} | "
            f"{_mean(rows, 'dl_b'):.3f} | {closer:.0%} | {_mean(rows, 'yaw'):.2f} | {_mean(rows, 'pitch'):.2f} | "
            f"{_mean(rows, 'mouth'):.1%} | {_mean(rows, 'bg'):.3f} | {_mean(rows, 'light_b'):.3f} / "
            f"{_mean(rows, 'light_a'):.3f} |")


def report(args: argparse.Namespace, pairs: list[tuple[str, str]], per_pair: dict[str, list[dict[str, float]]],
           sweep: list[tuple[float, list[float]]], deid: dict[str, dict], timing: float, seconds: float,
           models: api.IdentityModels,
           generated: tuple[dict[str, list[dict[str, float]]], list[tuple[float, list[float]]]] | None = None) -> str:
    from latentstudio.identity.mapper import mapper_info

    info = mapper_info(args.weights or api.ASSET)
    load = os.getloadavg()
    section, flag, called, _ = SETS[photo_set(args)]
    lines = [section, "",
             f"`python bench/transfer.py{flag}"
             f"{' --refine ' + str(args.refine) if args.refine else ''}"
             f"{' --generated ' + str(args.generated) if args.generated != 20 else ''}`, "
             f"{time.strftime('%Y-%m-%d %H:%M')}: {models.device}, {os.cpu_count()} CPUs, {args.threads} torch "
             f"thread(s), load average {load[0]:.1f}, Python {platform.python_version()}; {seconds:.0f} s. "
             f"Mapper: {args.weights or 'assets/mapper.safetensors'} (trained: {info.get('machine', '?')}, "
             f"{info.get('train_seconds', '?')} s). {len(pairs)} ordered pairs of "
             f"{called}real photos of different "
             "people, fast-preset inversions, 1024² renders. OpenFace and dlib distances are to the aligned "
             "*photos*; yaw, pitch, mouth (/ IOD) and background LPIPS are against B's reconstruction, except "
             f"for \"{PASTED}\" (the result as the app's \"In photo\" view and `--paste-back` give it, its face "
             "found again in the photo and aligned), whose are against B's aligned photo.", "",
             "| method | OpenFace to A ↓ | to B | dlib to A ↓ | to B | closer to A (both) | yaw err ° | "
             "pitch err ° | mouth / IOD | background LPIPS | lighting err to B / to A |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_method_row(name, rows) for name, rows in per_pair.items()]
    if generated:
        g_rows, g_sweep = generated
        lines += ["", f"Generated pairs: {len(g_sweep)} pairs of ψ 0.7 samples (seeds {GENERATED_SEED:,} …, A = even, "
                  "B = odd), judged against the two faces' own renders; no target is set on them:", "",
                  "| method | OpenFace to A ↓ | to B | dlib to A ↓ | to B | closer to A (both) | yaw err ° | "
                  "pitch err ° | mouth / IOD | background LPIPS | lighting err to B / to A |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        lines += [_method_row(name, rows) for name, rows in g_rows.items()]
        rhos = [r for r, _ in g_sweep]
        lines += ["", f"Id-amount sweep on the generated pairs: ρ ≥ 0.95 on {sum(r >= 0.95 for r in rhos)} of "
                  f"{len(rhos)} pairs (lowest {min(rhos):.2f})."]
    lines += ["", "Per pair (mapper, feed-forward): OpenFace to A / to B, dlib to A / to B, yaw, pitch, mouth, "
              "background, Spearman of the id-amount sweep:", "",
              "| A → B | OpenFace A / B | dlib A / B | yaw ° | pitch ° | mouth | bg | sweep ρ |", "|---|---|---|---|---|---|---|---|"]
    for (a, b), r, (rho, _) in zip(pairs, per_pair["mapper"], sweep):
        lines.append(f"| {a} → {b} | {r['of_a']:.2f} / {r['of_b']:.2f} | {r['dl_a']:.2f} / {r['dl_b']:.2f} | "
                     f"{r['yaw']:.1f} | {r['pitch']:.1f} | {r['mouth']:.1%} | {r['bg']:.3f} | {rho:.2f} |")
    lines += ["", f"De-identification (strength 1, seeds {', '.join(map(str, DEID_SEEDS))}: three other people) "
              "against each photo:", "",
              "| photo | seed | OpenFace to photo ↑ | dlib to photo ↑ | yaw err ° | mouth / IOD | background LPIPS (no target) |",
              "|---|---|---|---|---|---|---|"]
    for (n, seed), d in deid.items():
        lines.append(f"| {n} | {seed} | {d['of']:.3f} | {d['dl']:.3f} | {d['yaw']:.1f} | {d['mouth']:.1%} | {d['bg']:.3f} |")
    rows = per_pair["mapper"]
    closer = np.mean([(r["of_a"] < r["of_b"]) and (r["dl_a"] < r["dl_b"]) for r in rows])
    checks = {
        "closer to A by both on ≥ 90 % of pairs": closer >= 0.9,
        "mean OpenFace to A ≤ 0.90": _mean(rows, "of_a") <= TARGETS["of_a"],
        "mean dlib to A ≤ 0.50": _mean(rows, "dl_a") <= TARGETS["dl_a"],
        "yaw ≤ 5°": _mean(rows, "yaw") <= TARGETS["yaw"],
        "pitch ≤ 5°": _mean(rows, "pitch") <= TARGETS["pitch"],
        "mouth ≤ 4 % IOD": _mean(rows, "mouth") <= TARGETS["mouth"],
        "background LPIPS ≤ 0.15": _mean(rows, "bg") <= TARGETS["bg"],
        "sweep ρ ≥ 0.95 on every pair": min(s[0] for s in sweep) >= 0.95,
        "de-identify OpenFace ≥ 1.15 and dlib ≥ 0.60 on every photo and seed":
            all(d["of"] >= 1.15 and d["dl"] >= 0.60 for d in deid.values()),
        "de-identify yaw ≤ 3° and mouth ≤ 4 % on every photo and seed":
            all(d["yaw"] <= 3 and d["mouth"] <= 0.04 for d in deid.values()),
        "blend ≤ 50 ms": timing <= 50}
    if args.refine:
        r2 = per_pair[f"mapper + refine {args.refine}"]
        checks["refine: OpenFace to A ≤ 0.75"] = _mean(r2, "of_a") <= 0.75
        checks["refine: yaw, pitch ≤ 5° and mouth ≤ 4 % IOD"] = (
            _mean(r2, "yaw") <= TARGETS["yaw"] and _mean(r2, "pitch") <= TARGETS["pitch"]
            and _mean(r2, "mouth") <= TARGETS["mouth"])
    lines += ["", f"Feed-forward blend: {timing:.1f} ms median (2 threads).", "",
              "Targets: " + "; ".join(f"{k}: {'met' if ok else '**not met**'}" for k, ok in checks.items()) + ".", ""]
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace the section of ``path`` that ``text``'s first line heads (or append it), keeping every other."""
    section = text.split("\n", 1)[0]
    old = path.read_text() if path.is_file() else "# Benchmark results\n"
    start = old.find(section)
    if start < 0:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        nxt = old.find("\n## ", start + len(section))
        new = old[:start] + text + ("\n" + old[nxt + 1:] if nxt >= 0 else "")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new.rstrip("\n") + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heldout", action="store_true",
                    help="the six held-out faces (bench/photos.py heldout_photos) instead of the five portraits; "
                         "no contact sheet (the photo is not ours to publish)")
    ap.add_argument("--photos", nargs="+", default=[], metavar="PHOTO",
                    help="measure on these photos instead (one person each: every ordered pair is measured); "
                         "no contact sheet")
    ap.add_argument("--codes", help="cache of the photos' inversions (default bench/out/transfer/codes, "
                                    "…/heldout_codes with --heldout, …/photo_codes with --photos)")
    ap.add_argument("--refine", type=int, default=0, help="also measure the refined transfer (steps)")
    ap.add_argument("--generated", type=int, default=20, help="generated pairs measured too (0: none)")
    ap.add_argument("--weights", help="mapper file (default assets/mapper.safetensors)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--methods", default=f"mapper,{OWN},mix 0-3,B", type=lambda t: t.split(","),
                    help=f"comma-separated subset of: mapper, {OWN}, mix 0-3, B")
    ap.add_argument("--sheet", default="bench/contact_sheets/transfer_real.jpg", help="'' for none")
    ap.add_argument("--results", help="replace/append the section of this file")
    args = ap.parse_args(argv)
    if args.photos and args.heldout:
        ap.error("--photos and --heldout are two different sets; give one")
    args.codes = args.codes or f"bench/out/transfer/{SETS[photo_set(args)][3]}"
    if args.heldout or args.photos:
        args.sheet = ""
    text = run(args)
    print(text)
    if args.results:
        write_section(Path(args.results), text)
        print(f"updated {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
