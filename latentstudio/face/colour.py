"""A face's colour as a photo gives it, and the colour of one photo given to a face from another.

A photo's colour belongs to the photo (its light, its film: black and white), not to the person:
a face from a black-and-white photo shown in a colour photo should take that photo's skin colour,
and a face shown in a black-and-white photo should lose its own. Two colour photos keep each
face's own skin tone, which is the person's. ``identity.surroundings`` uses this wherever a face is
shown in another face's surroundings (the identity panel, ``transfer``, ``deidentify``, video,
batch).

    colour = face_colour(preview, points)           # (1,3,256,256) in [-1, 1], 68 points (fractions)
    colour.grey                                     # 0 colour … 1 black and white
    image = photo_colour(image, where, inside, outside)

Colour is (Cb, Cr) of YCbCr on RGB in [-1, 1]; brightness Y is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from latentstudio.face.pasteback import aligned_face_mask
from latentstudio.models.mobilestylegan import mask_at

#: a face's colour (``face_colour``): the mean chroma |(Cb, Cr)| of its inner face on the 256²
#: preview reduced to 64² (RGB in [-1, 1]; the 128² preview head adds skin colour to a grey
#: face). Up to GREY_CHROMA it is a black-and-white photo's (four benchmark portraits turned grey
#: and inverted, and a black-and-white portrait: 0.009–0.033), from COLOUR_CHROMA on a colour
#: one's (the least colourful of 600 generated faces, ψ 0.7 and 1: 0.090; the eleven benchmark
#: photos' codes: 0.21–0.36)
GREY_CHROMA, COLOUR_CHROMA = 0.04, 0.08
COLOUR_SIDE = 64  # where it is read: the 256² preview area-reduced to 64²
TINT_GRID = 32  # a face's tint is low-passed to this grid (cells of 1/32 of the frame: no feature shows)
SKIN_PRIOR = 0.1  # each tint cell also holds this share of a cell of the skin's mean colour
TINT_MAX = 1.1  # a face given another's tint is at most this much more colourful than that face there
_CBCR = torch.tensor([[-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])  # RGB → (Cb, Cr)
_RGB = torch.tensor([[0.0, 1.402], [-0.344136, -0.714136], [1.772, 0.0]])  # (Cb, Cr) → RGB change


@dataclass(frozen=True)
class FaceColour:
    """A face's colour on its 256² preview (RGB in [-1, 1]): the mean ``chroma`` |(Cb, Cr)| of its
    inner face, how grey that is (0 colour … 1 black and white), its ``tint``: the chromaticity
    (Cb, Cr) / brightness of the whole frame, low-passed to ``TINT_GRID``², and the chroma there
    (``strength``, |(Cb, Cr)| of the low-passed frame)."""

    chroma: float
    tint: Tensor  # (1,2,TINT_GRID,TINT_GRID)
    strength: Tensor  # (1,1,TINT_GRID,TINT_GRID)

    @property
    def grey(self) -> float:
        return float(np.clip((COLOUR_CHROMA - self.chroma) / (COLOUR_CHROMA - GREY_CHROMA), 0.0, 1.0))


def face_colour(preview: Tensor, points: np.ndarray, skin: np.ndarray | None = None) -> FaceColour:
    """``preview`` (1,3,256,256) in [-1, 1], its 68 ``points`` (fractions of the frame). The tint
    is its skin's: the inner face and ``skin`` (a mask of any side, e.g. ``outside_masks``'
    skin), spread from there over the frame, so hair next to a face does not tint it."""
    small = F.interpolate(preview.float(), size=COLOUR_SIDE, mode="area")
    mask = mask_tensor(aligned_face_mask(points * COLOUR_SIDE, COLOUR_SIDE, 0.0, 0.0)).to(preview.device)
    cc = chroma(small)
    level = float((cc.norm(dim=1, keepdim=True) * mask).sum() / mask.sum().clamp(min=1.0))
    if skin is not None:
        mask = torch.maximum(mask, mask_at(mask_tensor(skin).to(preview.device), COLOUR_SIDE))
    parts = torch.cat([cc, luma(small), torch.ones_like(mask)], 1) * mask
    low, whole = F.interpolate(parts, size=TINT_GRID, mode="area"), parts.sum((2, 3), keepdim=True)
    low = low + SKIN_PRIOR * whole / whole[:, 3:].clamp(min=1e-6)  # a cell with little skin: the skin's mean
    tint, strength = low[:, :2] / low[:, 2:3].clamp(min=1e-4), low[:, :2].norm(dim=1, keepdim=True) / low[:, 3:]
    return FaceColour(level, tint, strength)


def photo_colour(image: Tensor, where: Tensor, inside: FaceColour, outside: FaceColour) -> Tensor:
    """``image`` (1,3,S,S) with the inside face's colour made the outside photo's where ``where``
    (1,1,h,w) in [0, 1] is, when either face is grey: each pixel keeps its brightness and takes
    the outside face's tint there (its chromaticity at that place, low-passed; no stronger than
    ``TINT_MAX`` times the chroma there, so a brighter face is not painted more colourful than the
    outside one), with the inside face's own finer chroma about it scaled to the outside face's
    (so a grey face takes the skin colour of the face it is put into, and a colour face put into a
    grey photo turns grey). Two colour faces stay as they are (the skin tone is the person's)."""
    amount = max(inside.grey, outside.grey)
    if amount == 0.0:
        return image
    side = image.shape[-1]
    cc = chroma(image)
    low = F.interpolate(F.interpolate(cc, size=TINT_GRID, mode="area"), size=side, mode="bilinear", align_corners=False)
    tint, most = (F.interpolate(t.to(image), size=side, mode="bilinear", align_corners=False)
                  for t in (outside.tint, outside.strength))
    tint = tint * luma(image)
    tint = tint * (TINT_MAX * most / tint.norm(dim=1, keepdim=True).clamp(min=1e-6)).clamp(max=1.0)
    spread = min(outside.chroma / max(inside.chroma, 1e-3), 1.0)
    target = tint + (cc - low) * spread
    change = amount * mask_at(where.to(image), side) * (target - cc)
    return (image + torch.einsum("kc,nchw->nkhw", _RGB.to(image), change)).clamp(-1, 1)


def chroma(image: Tensor) -> Tensor:
    """(N,3,H,W) RGB in [-1, 1] → (N,2,H,W) (Cb, Cr)."""
    return torch.einsum("ck,nkhw->nchw", _CBCR.to(image), image)


def luma(image: Tensor) -> Tensor:
    """(N,3,H,W) RGB in [-1, 1] → (N,1,H,W) brightness Y in [0, 1]."""
    y = torch.tensor([0.299, 0.587, 0.114]).to(image)
    return (torch.einsum("k,nkhw->nhw", y, image)[:, None] + 1) / 2


def mask_tensor(m: np.ndarray) -> Tensor:
    """An (H, W) mask → (1, 1, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
