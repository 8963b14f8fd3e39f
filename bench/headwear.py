"""A headwear judge for the repair benchmark: does a hat stay a hat?

No wheel we use ships a hat detector, and the repair must keep headwear (issue 26). This judge
exists only inside the benchmark and is never used by the app or by any training: a small CNN on
64² thumbnails of ψ = 1 samples (seeds 100 000 …, the repair's training seeds; the benchmark
repairs seeds 900 000 …), regressed on the sample's projection onto the published InterFaceGAN
"Wearing_Hat" direction in Z (``../shared/reference-boundaries``, read at run time, compared with
and never copied). The projection is a property of the sample's z, so the judge learns what hats
look like in this generator's images; it then scores any image, repaired or not.

    judge = HeadwearJudge.load_or_fit(generator, cache_dir)
    judge.score(images)        # (N,) for (N, H, W, 3) uint8 FFHQ-aligned faces
    judge.std, judge.auc       # population spread of the score; held-out AUC of the top 3 %

Fitted once (~3 min on 2 CPU cores: renders, then 20 epochs) and cached in ``cache_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference-boundaries" / "interfacegan_stylegan2_ffhq_z" / "boundary_Wearing_Hat.npy"
FIRST_SEED = 100_000
SAMPLES = 3000
HELD_OUT = 600
SIDE = 64
HAT = 1.9  # projection above which a sample counts as wearing a hat (~3 %; checked on a contact sheet)


def _net() -> nn.Sequential:
    def block(i: int, o: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

    return nn.Sequential(block(3, 16), block(16, 32), block(32, 64), block(64, 64), nn.Flatten(),
                         nn.Dropout(0.3), nn.Linear(64 * (SIDE // 16) ** 2, 1))


def thumbnails(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 → (N, 3, 64, 64) in [-1, 1]."""
    small = np.stack([cv2.resize(im, (SIDE, SIDE), interpolation=cv2.INTER_AREA) for im in images])
    return torch.from_numpy(small).permute(0, 3, 1, 2).float() / 127.5 - 1


@dataclass
class HeadwearJudge:
    net: nn.Sequential
    std: float  # the score's standard deviation over the samples
    auc: float  # held-out ROC AUC for "hat" (projection > HAT)

    def score(self, images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return np.concatenate([self.net(thumbnails(images[i:i + 64]))[:, 0].numpy()
                                   for i in range(0, len(images), 64)]).astype(np.float64)

    @classmethod
    def load_or_fit(cls, generator, cache_dir: Path) -> HeadwearJudge:  # noqa: ANN001 - Generator
        path = cache_dir / "headwear_judge.pt"
        net = _net().eval()
        if path.is_file():
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state["net"])
            return cls(net, float(state["std"]), float(state["auc"]))
        judge = cls.fit(generator)
        cache_dir.mkdir(parents=True, exist_ok=True)
        torch.save({"net": judge.net.state_dict(), "std": judge.std, "auc": judge.auc}, path)
        return judge

    @classmethod
    def fit(cls, generator, epochs: int = 20) -> HeadwearJudge:  # noqa: ANN001 - Generator
        from sklearn.metrics import roc_auc_score

        from latentstudio.models.generator import to_uint8

        g = generator
        normal = np.load(REFERENCE).reshape(-1).astype(np.float32)
        images, proj = [], []
        for s in range(FIRST_SEED, FIRST_SEED + SAMPLES, 16):
            z = g.sample_z(s, 16)
            with torch.no_grad():
                images.append(to_uint8(g.synthesize(g.map(z, 1.0), size=256)))
            proj.append(z.numpy() @ normal)
        x = thumbnails(np.concatenate(images)[:SAMPLES])
        y = torch.from_numpy(np.concatenate(proj)[:SAMPLES].astype(np.float32))
        n = SAMPLES - HELD_OUT
        torch.manual_seed(0)
        net = _net()
        opt = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-3)
        for _ in range(epochs):
            net.train()
            perm = torch.randperm(n)
            for i in range(0, n, 64):
                xb, yb = x[perm[i:i + 64]], y[perm[i:i + 64]]
                if torch.rand(1) < 0.5:
                    xb = torch.flip(xb, [3])
                loss = (net(xb)[:, 0] - yb).pow(2).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        net.eval()
        with torch.no_grad():
            pred = net(x)[:, 0].numpy()
        auc = float(roc_auc_score(y[n:].numpy() > HAT, pred[n:]))
        return cls(net, float(pred.std()), auc)
