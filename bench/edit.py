"""Editing benchmark: do the shipped boundaries move what they claim, and only that?

    python bench/edit.py [--faces 50] [--seed 1000000] [--out bench/out/edit] [--results bench/RESULTS.md]
    python bench/edit.py --layer-scan [--faces 10]      # choose default slot ranges
    python bench/edit.py --faces 100 --names yaw,smile,gender,age,eyeglasses   # main five, more faces
    python bench/edit.py --alphas -3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,2.5,3   # finer α grid for ρ
    python bench/edit.py --faces 100 --names smile,gender --no-keep   # ρ only

Faces: seeds ``seed … seed+faces-1`` (held out from training, which uses seeds from 0), ψ = 0.7,
one w broadcast to W+, rendered at 256² (preview route) and scored with ``predict_all``.
Every render's scores are cached under ``--out`` (per predictor version) so an interrupted run resumes.

Per boundary, α ∈ {−3, −1.5, 0, 1.5, 3} (``--alphas``: another grid; it must hold −3, 0 and 3) on each
boundary's default slot range:

* **Spearman**: rank correlation of α with the own predictor's change (score(α) − score(0)),
  pooled over faces and α (``rho``), and the mean of the per-face correlations (``rho_face``).
* **off-target matrix**: for every predictor j, mean over faces of score_j(+3) − score_j(−3),
  divided by the std of score_j over the 5 000 boundary-training samples (effect size in
  population stds).
* **--keep**: each main attribute edited at ±3 while keeping the other main ones
  (k = 4 conditions, least squares); reported: |Δ_kept with keep| / |Δ_kept without|, summed
  over the kept attributes, and how much of the own effect remains.
* **identity**: dlib ResNet (``face_recognition_model_v1``) L2 distance between the edited and
  the unedited face at |α| = 1.5 and 3 (same person ⇔ < 0.6).
* **reference cosines**: our age / smile / yaw boundaries against the published e4e W directions
  and against InterFaceGAN's StyleGAN2 Z boundaries converted to W; our PCA against e4e's.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from dlib_reference import DlibIdentity
from latentstudio.edit.apply import apply_edits
from latentstudio.edit.boundaries import SHIPPED_DIR, Boundary, load_index, read_vector
from latentstudio.edit.train import z_to_w
from latentstudio.edit.predictors import SCORE_NAMES, predict_all
from latentstudio.edit import responses
from latentstudio.edit.responses import Responses, hold_kept, predictor_scorer
from latentstudio.models.generator import Generator, to_uint8

ALPHAS = (-3.0, -1.5, 0.0, 1.5, 3.0)
KEEP_MIN = 0.5  # Σ|effect on the kept attributes| without --keep below this is noise: no ratio
MAIN = ("yaw", "smile", "gender", "age", "eyeglasses")
REFERENCE = Path("/work/shared/reference-boundaries")
SCAN_RANGES = ((0, 22), (0, 6), (0, 12), (4, 12), (7, 22))
E4E = {"age": ("age", 1.0), "smile": ("smile", 1.0), "yaw": ("pose", -1.0)}  # e4e −pose = nose to image right
INTERFACEGAN_Z = {"smile": ("Smiling", 1.0), "age": ("Young", -1.0), "gender": ("Male", 1.0),
                  "eyeglasses": ("Eyeglasses", 1.0), "hair_color": ("Blond_Hair", 1.0)}


# ------------------------------------------------------------------------------------ renders
class Renderer:
    """Render + score + embed W+ codes, cached per tag under ``folder``."""

    def __init__(self, g: Generator, folder: Path, identity: DlibIdentity | None) -> None:
        self.g, self.folder, self.identity = g, folder, identity
        self.count = 0

    def __call__(self, tag: str, codes: np.ndarray) -> dict[str, np.ndarray]:
        path = self.folder / f"{tag}.npz"
        if path.is_file():
            with np.load(path) as d:
                return {k: d[k] for k in d.files}
        images = np.concatenate([to_uint8(self.g.synthesize(c[None], size=256)) for c in codes])
        self.count += len(codes)
        s = predict_all(images)
        out = {k: s[k] for k in SCORE_NAMES}
        out["valid"] = s["valid"]
        if self.identity is not None:
            out["id"] = self.identity.embed(images, s["landmarks"])
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **out)
        os.replace(tmp, path)
        return out


def _edit(codes: np.ndarray, name: str, alpha: float, bs: dict[str, Boundary], keep=(), layers=None) -> np.ndarray:  # noqa: ANN001
    return np.stack([apply_edits(c, {name: alpha}, bs, keep=keep, layers=layers) for c in codes])


def _method_tag(method: str, table: Responses | None) -> str:
    """Cache-name suffix of a --keep method (the measured one names its table and its loop's code)."""
    if method == "projection" or table is None:
        return ""
    loop = inspect.getsource(responses.hold_kept) + inspect.getsource(responses._projection_start)
    return "_loop" + hashlib.sha1(table.mean.tobytes() + loop.encode()).hexdigest()[:6]


def _keep_edit(codes: np.ndarray, name: str, alpha: float, bs: dict[str, Boundary], kept: list[str], method: str,  # noqa: PLR0913
               table: Responses | None, scorer, render: Renderer, tag: str) -> np.ndarray:  # noqa: ANN001
    """Codes of one conditional edit; the measured loop (9 renders a code) only runs when the
    final renders are not cached yet."""
    if method == "projection":
        return _edit(codes, name, alpha, bs, keep=kept)
    if (render.folder / f"{tag}.npz").is_file():
        return codes  # cached: the renderer will not look at them
    return np.stack([hold_kept(c, {name: alpha}, bs, kept, table, scorer).w_plus for c in codes])


def _tag(name: str, alpha: float, bs: dict[str, Boundary], keep=(), layers=None) -> str:  # noqa: ANN001
    """Cache name of one edit; includes the slot range and a fingerprint of the boundary vector.
    α is written with one decimal when that is exact (the names of the existing caches), else in full."""
    a, b = layers or bs[name].layers
    digest = hashlib.sha1(np.round(bs[name].normal, 4).astype(np.float32).tobytes()).hexdigest()[:8]
    al = f"{alpha:+.1f}" if float(f"{alpha:.1f}") == alpha else f"{alpha:+}"
    t = f"{name}_a{al}_L{a}-{b}_v{digest}"
    if keep:
        t += "_keep-" + "-".join(keep)
    return t


# ------------------------------------------------------------------------------------ metrics
def spearman(alphas: list[float], by_alpha: dict[float, np.ndarray], base: np.ndarray) -> tuple[float, float, float]:
    """Pooled ρ(α, score−score₀), mean per-face ρ (faces with a constant score are skipped),
    and ρ(α, mean score over faces)."""
    a = np.concatenate([np.full(len(base), al) for al in alphas])
    d = np.concatenate([by_alpha[al] - base for al in alphas])
    pooled = float(spearmanr(a, d).statistic)
    per_face = []
    for i in range(len(base)):
        s = np.array([by_alpha[al][i] for al in alphas])
        if np.ptp(s) > 0:
            per_face.append(spearmanr(alphas, s).statistic)
    mean_curve = float(spearmanr(alphas, [by_alpha[al].mean() for al in alphas]).statistic)
    return pooled, float(np.mean(per_face)) if per_face else float("nan"), mean_curve


def population_std(base: dict[str, np.ndarray]) -> dict[str, float]:
    """Std of each predictor over the boundary-training samples (score cache), else over ``base``."""
    from latentstudio.edit.train import SampleSpec, _chunk_dir, default_cache_dir

    folder = _chunk_dir(default_cache_dir(), SampleSpec(n=1))
    chunks = sorted(folder.glob("seeds_*.npz"))
    if len(chunks) >= 10:
        data = [np.load(c) for c in chunks]
        print(f"effect unit: std over {sum(len(d['seeds']) for d in data)} cached training scores",
              file=sys.stderr)
        return {k: float(np.std(np.concatenate([d[k] for d in data]))) for k in SCORE_NAMES}
    return {k: float(np.std(base[k])) or 1.0 for k in SCORE_NAMES}


def violations(alphas: list[float], by_alpha: dict[float, np.ndarray], tol: float) -> float:
    """Share of consecutive α steps (per face) where the own score drops by more than ``tol``."""
    s = np.stack([by_alpha[al] for al in sorted(alphas)], axis=1)
    return float((np.diff(s, axis=1) < -tol).mean())


def effect(hi: dict[str, np.ndarray], lo: dict[str, np.ndarray], std: dict[str, float]) -> dict[str, float]:
    return {k: float(np.mean(hi[k] - lo[k]) / std[k]) for k in SCORE_NAMES}


def keep_uncertainty(kept: list[str], with_keep: tuple[dict, dict], without: tuple[dict, dict],
                     std: dict[str, float], draws: int = 2000) -> tuple[float, float, float]:
    """How well the faces resolve a --keep ratio: its 90 % bootstrap interval over faces, and its
    noise floor, the ratio expected from sampling alone if the kept attributes did not move at all
    (E|mean| of a zero-mean effect = SE·√(2/π), summed over the kept attributes)."""
    def per_face(pair: tuple[dict, dict]) -> np.ndarray:  # (faces, kept) effects in population stds
        hi, lo = pair
        return np.stack([(hi[k] - lo[k]) / std[k] for k in kept], axis=1)

    a, b = per_face(with_keep), per_face(without)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(a), (draws, len(a)))
    ratios = np.abs(a[idx].mean(1)).sum(1) / np.abs(b[idx].mean(1)).sum(1)
    floor = float((a.std(0, ddof=1) / np.sqrt(len(a))).sum() * np.sqrt(2 / np.pi) / np.abs(b.mean(0)).sum())
    return float(np.percentile(ratios, 5)), float(np.percentile(ratios, 95)), floor


def id_dist(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> np.ndarray:
    return np.linalg.norm(a["id"] - b["id"], axis=1)


# --------------------------------------------------------------------------------------- main
def run_main(args: argparse.Namespace, g: Generator, render: Renderer, bs: dict[str, Boundary],
             codes: np.ndarray) -> str:
    base = render("base", codes)
    std = population_std(base)
    rows, matrix, ident = [], {}, {}
    res_by_name: dict[str, dict[float, dict[str, np.ndarray]]] = {}
    for name in bs:
        by_alpha = {0.0: base[name]}
        res = {0.0: base}
        for al in args.alphas:
            if al == 0.0:
                continue
            res[al] = render(_tag(name, al, bs), _edit(codes, name, al, bs))
            by_alpha[al] = res[al][name]
        rho, rho_face, rho_mean = spearman(list(args.alphas), by_alpha, base[name])
        viol = violations(list(args.alphas), by_alpha, 0.05 * std[name])
        matrix[name] = effect(res[3.0], res[-3.0], std)
        res_by_name[name] = res
        if "id" in base and all("id" in res.get(a, {}) for a in (-3.0, -1.5, 1.5, 3.0)):
            ident[name] = (float(np.mean([id_dist(res[a], base).mean() for a in (-1.5, 1.5)])),
                           float(np.mean([id_dist(res[a], base).mean() for a in (-3.0, 3.0)])),
                           float(np.mean([(id_dist(res[a], base) < 0.6).mean() for a in (-3.0, 3.0)])))
        b = bs[name]
        rows.append((name, b.val_accuracy, b.n, b.layers, rho, rho_face, rho_mean, viol, matrix[name][name],
                     sum(abs(v) for k, v in matrix[name].items() if k != name)))
        print(f"{name}: rho {rho:.3f} face {rho_face:.3f} own {matrix[name][name]:+.2f} renders so far {render.count}",
              file=sys.stderr, flush=True)

    keep_rows = []
    table = Responses.load(args.boundaries)
    scorer = predictor_scorer(g)
    methods = () if args.no_keep else ("projection", "measured")
    for name, method in [(m, k) for k in methods for m in MAIN if m in bs]:
        kept = [m for m in MAIN if m != name and m in bs]
        if method == "measured" and (table is None or not table.covers(bs, [name, *kept])):
            continue
        pair = []
        for a in (3.0, -3.0):
            tag = _tag(name, a, bs, kept) + _method_tag(method, table)
            pair.append(render(tag, _keep_edit(codes, name, a, bs, kept, method, table, scorer, render, tag)))
        hi, lo = pair
        with_keep = effect(hi, lo, std)
        without = matrix[name]
        moved = sum(abs(without[k]) for k in kept)
        ratio = sum(abs(with_keep[k]) for k in kept) / moved if moved >= KEEP_MIN else float("nan")
        per = {k: (without[k], with_keep[k]) for k in kept}
        spread = keep_uncertainty(kept, (hi, lo), (res_by_name[name][3.0], res_by_name[name][-3.0]), std)
        keep_rows.append((name, method, kept, ratio, with_keep[name] / without[name], per, moved, spread))
        print(f"keep {name} ({method}): ratio {ratio:.3f}", file=sys.stderr, flush=True)

    return report(args, g, bs, rows, matrix, keep_rows, ident, len(codes))


def reference_cosines(g: Generator, bs: dict[str, Boundary]) -> list[str]:
    lines = []
    if not REFERENCE.is_dir():
        return ["(reference boundaries not available)"]
    lines.append("| ours | published | cosine |")
    lines.append("|---|---|---|")
    for ours, (theirs, sign) in E4E.items():
        if ours in bs:
            v = read_vector(REFERENCE / "e4e_w" / f"{theirs}.npy") * sign
            lines.append(f"| {ours} | e4e W `{'−' if sign < 0 else ''}{theirs}` | {float(bs[ours].normal @ v):+.3f} |")
    for ours, (attr, sign) in INTERFACEGAN_Z.items():
        if ours in bs:
            zvec = read_vector(REFERENCE / "interfacegan_stylegan2_ffhq_z" / f"boundary_{attr}.npy")
            fit = z_to_w(zvec, g, samples=20000)
            lines.append(f"| {ours} | InterFaceGAN Z `{'−' if sign < 0 else ''}{attr}` → W (val. acc. "
                         f"{fit.val_accuracy:.2f}) | {float(bs[ours].normal @ fit.normal) * sign:+.3f} |")
    pca_path = SHIPPED_DIR / "pca_w.npz"
    if pca_path.is_file():
        ours = np.load(pca_path)["components"][:10]
        theirs = np.load(REFERENCE / "e4e_w" / "ffhq_pca.npz")["comp"][:10]
        cos = np.abs(np.sum(ours * theirs, axis=1))
        lines.append("")
        lines.append("PCA (GANSpace) components 0-9, |cos| to e4e's `ffhq_pca`: "
                     + ", ".join(f"{c:.3f}" for c in cos))
    return lines


def report(args: argparse.Namespace, g: Generator, bs: dict[str, Boundary], rows, matrix, keep_rows,  # noqa: ANN001
           ident, faces: int) -> str:
    cpu = f"{os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), torch threads {torch.get_num_threads()}"
    grid = ", ".join(f"{a:g}".replace("-", "−") for a in args.alphas)
    alphas_arg = "" if args.alphas == ALPHAS else " --alphas " + ",".join(f"{a:g}" for a in args.alphas)
    out = ["## Editing (issue 4)", "",
           f"Machine: {cpu}, shared with other jobs; no GPU. `python bench/edit.py --faces {faces} "
           f"--seed {args.seed}{alphas_arg}` ({faces} generated faces, seeds {args.seed}…, ψ 0.7, W broadcast to W+, "
           "256² preview renders, scores from `latentstudio.edit.predictors`). Boundaries: shipped set "
           "(`boundaries/index.json`), each on its default slot range.", "",
           "### Per boundary", "",
           f"ρ = Spearman(α, own score change), α ∈ {{{grid}}}, pooled over faces; ρ_face = mean "
           "per-face ρ; ρ_mean = ρ(α, mean score over the faces); drops = share of α steps where a face's own "
           "score falls by more than 0.05 population std (ρ is also lowered by ties where a predictor saturates, "
           "e.g. a closed mouth; smile, surprise and gender are log-odds, which do not saturate). own = effect of α −3 → +3 on the own predictor in population stds (std over the training samples); off = sum of |effect| "
           "on the 12 other predictors. id = dlib L2 distance to the unedited face (same person < 0.6).", "",
           "| boundary | val. acc | N | slots | ρ | ρ_face | ρ_mean | drops | own | off | id at ±1.5 | id at ±3 | same person at ±3 |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, acc, n, layers, rho, rho_face, rho_mean, viol, own, off in rows:
        i = ident.get(name, (float("nan"),) * 3)
        out.append(f"| {name} | {acc:.3f} | {n} | {layers[0]}–{layers[1]} | {rho:.3f} | {rho_face:.3f} | {rho_mean:.2f} | "
                   f"{100 * viol:.1f} % | "
                   f"{own:+.2f} | {off:.2f} | {i[0]:.3f} | {i[1]:.3f} | {100 * i[2]:.0f} % |")
    main_rows = [r for r in rows if r[0] in MAIN]
    out += ["", "Targets (issue 4): validation accuracy ≥ 0.95 for " + ", ".join(
        f"{r[0]} {'✓' if r[1] >= 0.95 else '✗'}" for r in main_rows) + "; Spearman ≥ 0.95 (ρ_face) for "
        + ", ".join(f"{r[0]} {r[5]:.2f}{' ✓' if r[5] >= 0.95 else ' ✗'}" for r in main_rows) + "."]
    out += ["", "### Off-target matrix (row: edited boundary α −3 → +3; column: predictor; mean change in population stds)", ""]
    cols = list(SCORE_NAMES)
    out.append("| edit \\ score | " + " | ".join(cols) + " |")
    out.append("|---" * (len(cols) + 1) + "|")
    for name in matrix:
        out.append(f"| {name} | " + " | ".join(
            (f"**{matrix[name][c]:+.2f}**" if c == name else f"{matrix[name][c]:+.2f}") for c in cols) + " |")
    out += ["", "### Conditional editing (--keep the other main attributes, k = 4: projection = InterFaceGAN least squares, measured = closed loop on the response table)", "",
            "kept/without = Σ|effect on kept attributes| with keep ÷ without (target ≤ 0.20); 90 % = "
            "bootstrap interval over the faces; floor = the ratio sampling alone gives when the kept "
            "attributes do not move at all (what these faces can resolve); own kept = share of the own "
            "effect that remains.", "",
            "| edit | method | kept | kept moved (no keep) | kept/without | 90 % | floor | own kept | per kept attribute: without → with |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, method, kept, ratio, own_kept, per, moved, (lo, hi, floor) in keep_rows:
        detail = ", ".join(f"{k} {a:+.2f}→{b:+.2f}" for k, (a, b) in per.items())
        ok = np.isfinite(ratio)
        r = f"{ratio:.2f}" if ok else f"— (< {KEEP_MIN}: nothing to remove)"
        out.append(f"| {name} | {method} | {','.join(kept)} | {moved:.2f} | {r} | {f'{lo:.2f}–{hi:.2f}' if ok else '—'} | "
                   f"{f'{floor:.2f}' if ok else '—'} | {own_kept:.2f} | {detail} |")
    n_main = sorted({bs[m].n for m in MAIN if m in bs})
    out += ["", f"Kept attributes still move partly because (a) the N = {', '.join(map(str, n_main))} normals are "
            "only approximations of the true directions (cosines to the published ones below), so projecting "
            "them out removes "
            "only part of an attribute, and (b) some predictors are confounded in image space: the eyeglasses "
            "score (edge energy under the eyes) also rises with the wrinkles and raised cheeks of smiling and "
            "ageing faces, which no W-space condition can remove."]
    scan = Path(args.out) / "layer_scan.md"
    if scan.is_file():
        out += ["", scan.read_text().rstrip("\n")]
    out += ["", "### Cosine to published directions (comparison only; nothing copied)", ""]
    out += reference_cosines(g, bs)
    return "\n".join(out) + "\n"


def run_scan(args: argparse.Namespace, render: Renderer, bs: dict[str, Boundary], codes: np.ndarray) -> str:
    """Effect of each boundary at ±3 on each slot range: own effect and off-target sum."""
    base = render("base", codes)
    std = population_std(base)
    lines = ["| boundary | " + " | ".join(f"{a}–{b}: own / off" for a, b in SCAN_RANGES) + " |",
             "|---" * (len(SCAN_RANGES) + 1) + "|"]
    result = {}
    for name in bs:
        cells = []
        for rng in SCAN_RANGES:
            hi = render(_tag(name, 3.0, bs, layers=rng), _edit(codes, name, 3.0, bs, layers=rng))
            lo = render(_tag(name, -3.0, bs, layers=rng), _edit(codes, name, -3.0, bs, layers=rng))
            e = effect(hi, lo, std)
            off = sum(abs(v) for k, v in e.items() if k != name)
            result.setdefault(name, {})[f"{rng[0]}-{rng[1]}"] = {"own": e[name], "off": off, "all": e}
            cells.append(f"{e[name]:+.2f} / {off:.2f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    (render.folder / "layer_scan.json").write_text(json.dumps(result, indent=1))
    text = (f"### Slot-range scan ({len(codes)} faces, α ±3; own / Σ|off-target| in population stds; "
            "slots 16–22 do not reach the 256² preview)\n\n" + "\n".join(lines) + "\n")
    (render.folder.parent / "layer_scan.md").write_text(text)
    return text


def _alphas(text: str) -> tuple[float, ...]:
    """--alphas: sorted, without repeats; −3, 0 and +3 are needed (base, off-target matrix, --keep)."""
    alphas = tuple(sorted({float(a) + 0.0 for a in text.split(",")}))  # + 0.0: no −0
    if not {-3.0, 0.0, 3.0} <= set(alphas):
        raise argparse.ArgumentTypeError("the grid must hold -3, 0 and 3")
    return alphas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=50)
    ap.add_argument("--seed", type=int, default=1_000_000)
    ap.add_argument("--out", default="bench/out/edit")
    ap.add_argument("--results", help="replace/append the '## Editing (issue 4)' section of this file")
    ap.add_argument("--layer-scan", action="store_true")
    ap.add_argument("--no-identity", action="store_true")
    ap.add_argument("--no-keep", action="store_true", help="skip the --keep rows (e.g. for ρ on more faces)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--boundaries", type=Path, default=SHIPPED_DIR, help="boundary folder to measure")
    ap.add_argument("--names", help="measure only these boundaries (comma-separated), e.g. the five main ones on more faces")
    ap.add_argument("--alphas", type=_alphas, default=ALPHAS,
                    help="α grid of the per-boundary columns (comma-separated; must hold -3, 0 and 3), e.g. "
                         "-3,-2.5,-2,-1.5,-1,-0.5,0,0.5,1,1.5,2,2.5,3")
    argv = sys.argv[1:]
    if "--alphas" in argv[:-1]:  # "--alphas -3,…" would read as an option: glue the value on
        i = argv.index("--alphas")
        argv[i:i + 2] = [f"--alphas={argv[i + 1]}"]
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    g = Generator.load("cpu")
    bs = {k: b for k, b in load_index(args.boundaries).items() if k in SCORE_NAMES}  # predictor-trained only
    if args.names:
        bs = {k: b for k, b in bs.items() if k in args.names.split(",")}
    codes = np.tile(g.map(g.sample_z(args.seed, args.faces), 0.7).numpy()[:, None], (1, 23, 1))
    from latentstudio.edit.train import predictor_version

    out = Path(args.out) / f"faces{args.faces}_seed{args.seed}_pred{predictor_version()}"  # scores cached per predictor version
    identity = None if args.no_identity or args.layer_scan else DlibIdentity()
    render = Renderer(g, out, identity)
    t0 = time.time()
    if args.layer_scan:
        text = run_scan(args, render, bs, codes)
    else:
        text = run_main(args, g, render, bs, codes)
    print(text)
    print(f"{render.count} renders in {time.time() - t0:.0f} s", file=sys.stderr)
    if args.results and not args.layer_scan:
        write_section(Path(args.results), text)
    return 0


def write_section(path: Path, text: str) -> None:
    """Replace the '## Editing (issue 4)' section of ``path`` (or append it), keeping the rest."""
    old = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmark results\n"
    head = "## Editing (issue 4)"
    if head in old:
        start = old.index(head)
        nxt = old.find("\n## ", start + len(head))
        old = old[:start] + (old[nxt + 1:] if nxt >= 0 else "")
    new = old.rstrip("\n") + "\n\n" + text
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
