"""A transferred face rendered in the attribute face's own hair, clothes and background.

The mapper's code carries some of the identity face's hair and clothes along (the background
target of issue 21). ``Surroundings.render`` makes one render that is the result's code inside
its face and the attribute face's code (``outside``) around it:

- features: the synthesis runs both codes to 128² (``FIRST_BLOCK`` blocks); the result's
  features are kept on its face and the outside code's elsewhere. The face is the face parsing
  (``face.parsing``: it stops at the hairline, so the identity face's fringe is left out), grown
  below the brows by ``DILATE`` cells, together with everything inside the landmark hull (a
  beard, glasses), within that hull plus the forehead grown by ``GROW`` (so neither the neck nor
  light hair the parsing takes for skin comes along), and the outside face's own inner face
  (where the lock could not bring a turned head back, its eyes and nose would show beside the
  new ones). The landmarks are our landmark net's on the 128² previews;
- styles: from there on every styled layer takes the result's styles on the landmark region
  (its skin tone reaches the forehead where the fringe was left out) and wherever the outside
  code's own features show skin (its ears and neck: one skin tone over the whole head), and the
  outside code's elsewhere (``Synthesis.blocks_mixed``: one render, no seam to blend).

A photo's colour is its lighting, not its person's (``face.colour``): a face from a black-and-white
photo takes the colour of the face it is put into, and a face put into a black-and-white photo
loses its own. Between two colour faces nothing changes (the skin tone is the person's).

Previews (128² … 512²) stop at their preview head as plain renders do. The render runs through
the fast twin (``models.fast``: its ``blocks_mixed``) as plain renders do, and the masks are drawn
at ``MASK_FRAME``² for every size. Measured in
bench/RESULTS.md, "The attribute face's surroundings at render time".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import Tensor

from latentstudio.face.colour import FaceColour, face_colour, mask_tensor, photo_colour
from latentstudio.face.parsing import BLOCKS, FaceParsing
from latentstudio.face.pasteback import aligned_face_mask
from latentstudio.models.generator import as_w_plus, to_uint8
from latentstudio.models.mobilestylegan import mask_at

FIRST_BLOCK = BLOCKS  # features blended at 128², styles mixed from block 5 on
GROW = 0.07  # the landmark hull is grown by this share of the frame ...
FOREHEAD = 0.35  # ... and reaches this far above the brows (as in face.pasteback)
DILATE = 2  # below the brows the parsed face grows by this many 128² cells (its outline stays the result's)
BROW_RAMP = 0.04  # ... fading in over this share of the frame about the brow line
SOFTEN = 0.01  # and its edge is blurred over this share of the frame
SIZES = (128, 256, 512, 1024)
MASK_FRAME = 256  # the masks are drawn at 256² for every size and resized to each layer's side
#: the surroundings fit a result only where its face sits where the outside face's did: the mean
#: distance of the two faces' 68 points, in the outside face's inter-ocular distances, up to
#: FIT_NEAR keeps them whole; beyond FIT_FAR (a turned head the lock could not bring back, which
#: ``api.pose_note`` reports) the result's own render is shown, and between the two they fade
#: (bench/RESULTS.md: real pairs 0.03–0.07; the held-out transfers onto a face turned ~33°, 0.085–0.12)
FIT_NEAR, FIT_FAR = 0.08, 0.10
#: a draft borrows the last render's mask when its outside face is that render's, or one whose 68
#: points sit within DRAFT_SHIFT of its inter-ocular distance (~2 px at 256²: a slider drag moves
#: both faces alike) and whose code is within DRAFT_CODE of it (mean per-slot distance in W: a
#: slider's whole range, never another person)
DRAFT_SHIFT, DRAFT_CODE = 0.03, 4.0



def masks(parsing: FaceParsing, features: Tensor, landmarks: np.ndarray, size: int,
          outside: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[Tensor, Tensor]:
    """(features mask, styles mask), each (1,1,size,size) float32 in [0, 1]: where the result's
    features and where its styles are used. ``features``: the result's (1,C,128,128) after
    ``FIRST_BLOCK`` blocks; ``landmarks``: its 68 points in a ``size``² frame; ``outside``: the
    outside face's ``outside_masks``."""
    region = aligned_face_mask(landmarks, size, FOREHEAD, GROW)
    cells = parsing.face_cells(features)[0].astype(np.float32)
    if DILATE:  # below the brows only: above them a grown edge would bring the fringe's edge back
        grown = cv2.dilate(cells, np.ones((2 * DILATE + 1, 2 * DILATE + 1), np.uint8))
        row_y = (np.arange(cells.shape[0]) + 0.5) * size / cells.shape[0]
        brow_y = float(np.mean(landmarks[17:27, 1]))
        below = np.clip((row_y - brow_y) / (BROW_RAMP * size) + 0.5, 0.0, 1.0)[:, None]
        cells = cells + below * (grown - cells)
    face = cv2.resize(cells, (size, size), interpolation=cv2.INTER_LINEAR)
    face = cv2.GaussianBlur(face, (0, 0), SOFTEN * size)
    inner = aligned_face_mask(landmarks, size, 0.0, 0.0)  # jaw and brows: a beard, glasses: the result's
    feat = np.maximum(face, inner) * region
    if outside is not None:
        other, skin = outside
        feat, region = np.maximum(feat, other), np.maximum(np.maximum(region, other), skin)
    return mask_tensor(feat), mask_tensor(region)


def outside_masks(parsing: FaceParsing, features: Tensor, landmarks: np.ndarray,
                  size: int) -> tuple[np.ndarray, np.ndarray]:
    """The outside face's part of ``masks``, the same for every result shown in its surroundings
    (so cached while the identity amounts are dragged): (its inner face, its skin), each
    (size, size) float32. ``features``: the outside code's (1,C,128,128), in the parsing's
    channel order; ``landmarks``: its 68 points in a ``size``² frame.

    - Its inner face (inside jaw and brows) takes the result's features and styles, so where the
      result's head sits elsewhere (a turned face the lock could not bring back) the outside
      face's own eyes, nose and mouth never show beside the new ones.
    - Wherever its features show skin (ears, neck), the styles are the result's too, so the
      whole head takes one skin tone."""
    inner = aligned_face_mask(landmarks, size, 0.0, 0.0)
    skin = parsing.face[parsing.labels(features)][0].cpu().numpy().astype(np.float32)
    skin = cv2.GaussianBlur(cv2.resize(skin, (size, size), interpolation=cv2.INTER_LINEAR), (0, 0), SOFTEN * size)
    return inner, skin


def surroundings_weight(points: np.ndarray, outside_points: np.ndarray) -> float:
    """How much of the outside face's surroundings a result keeps (1 all, 0 none: its own render),
    from how far its 68 ``points`` sit from the outside face's (``FIT_NEAR``, ``FIT_FAR``)."""
    return float(np.clip((FIT_FAR - _apart(points, outside_points)) / (FIT_FAR - FIT_NEAR), 0.0, 1.0))


def _apart(points: np.ndarray, ref: np.ndarray) -> float:
    """The mean distance of two faces' 68 points, in ``ref``'s inter-ocular distances."""
    iod = float(np.linalg.norm(ref[36:42].mean(0) - ref[42:48].mean(0)))
    return float(np.linalg.norm(points - ref, axis=1).mean()) / max(iod, 1e-6)


class _Net:
    """The synthesis network a render runs through: the fast twin (``models.fast``) where the
    generator has one, else the reference modules. Features stay in the network's own channel
    order (the twin's are permuted: ``order``); the parsing follows it."""

    def __init__(self, generator) -> None:  # noqa: ANN001 - Generator
        fast = generator.fast()
        syn = generator.synthesis
        self.syn = syn if fast is None else fast
        self.head = generator.heads if fast is None else fast.head
        self.order = None if fast is None else fast.perms[FIRST_BLOCK]  # of the blended features
        #: which network and weights: the outside code's cached features are only theirs
        self.version = (id(self.syn), *(p._version for p in syn.parameters()))

    def features(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """A code's features after ``FIRST_BLOCK`` − 1 blocks (the 128² preview's, where the
        landmarks are found) and after ``FIRST_BLOCK`` (where the two codes are blended)."""
        f4 = self.syn.features(w, FIRST_BLOCK - 1)
        return f4, self.syn.blocks_from(f4, w, FIRST_BLOCK - 1, FIRST_BLOCK)


def _preview256(net: _Net, f5: Tensor) -> Tensor:
    """The 256² preview of features after ``FIRST_BLOCK`` blocks (where a face's colour is read)."""
    return net.head(f5, 256).clamp(-1, 1)


@dataclass(frozen=True)
class _Outside:
    """The outside code's share of a render, the same for every code shown in its surroundings:
    the code (1,23,512), its features after 4 and 5 blocks (the network's channel order), its 68
    landmarks (fractions of the frame), its ``outside_masks`` at ``MASK_FRAME``² and its face's
    colour."""

    w: Tensor
    f4: Tensor
    f5: Tensor
    points: np.ndarray
    masks: tuple[np.ndarray, np.ndarray]
    colour: FaceColour


@dataclass(frozen=True)
class _Last:
    """What a draft borrows from the last full render: its network, outside record, features
    mask, and how its colour was made (``photo_colour``: where, and the inside face's colour)."""

    version: tuple[object, ...]
    outside: _Outside
    feat_mask: Tensor
    colour_mask: Tensor
    colour: FaceColour


@dataclass
class Surroundings:
    """The face parsing and the landmark net (``LandmarkNet``), and the outside code's features
    of the last render (a drag of the identity amounts keeps the outside code)."""

    parsing: FaceParsing
    landmark_net: torch.nn.Module
    _cache: tuple[tuple[object, ...], _Outside] | None = field(default=None, repr=False)
    #: what a draft borrows from the last render
    _last: _Last | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def render(self, generator, code: np.ndarray | Tensor, outside: np.ndarray | Tensor, size: int = 1024,  # noqa: ANN001 - Generator
               between: Callable[[], None] | None = None, draft: bool = False) -> Tensor:
        """``code`` (W+ (23,512)) in the surroundings of ``outside`` → (1,3,size,size) in [-1, 1].
        The fast twin where there is one (else the reference modules), no autograd;
        ``between()`` runs between blocks. ``draft`` at 128² or 256² (the app's drag previews):
        the features mask of the last render is borrowed when it fits (``_borrowed``), so the
        inside code is not measured (no landmarks, no masks: in the same surroundings 256² costs
        what the code's own render does, and at 128² the inside code runs 4 blocks instead of 5;
        the face has moved at most a frame since)."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size}")
        heads = generator.heads
        for need in {128, size} - {1024}:  # the 128² preview is where the landmarks are found
            if heads is None or need not in heads.available:
                raise RuntimeError(f"no {need}² preview head (assets/preview_heads.safetensors)")
        net = _Net(generator)
        w_in = as_w_plus(code).to(generator.device)
        w_out = as_w_plus(outside).to(generator.device)
        with torch.no_grad():
            borrowed = self._borrowed(net, w_out, size) if draft and size in (128, 256) else None
            if borrowed is not None:
                x_out, last = borrowed
                x_in = net.syn.features(w_in, FIRST_BLOCK - (size == 128))
                image = net.head(torch.lerp(x_out, x_in, mask_at(last.feat_mask, x_in.shape[-1])), size).clamp(-1, 1)
                return photo_colour(image, last.colour_mask, last.colour, last.outside.colour)
            f4_in, f5_in = net.features(w_in)
            out = self._outside(net, w_out)
            if between is not None:
                between()
            points = self._landmarks(net, f4_in)
            keep = surroundings_weight(points, out.points)
            feat_mask, style_mask = (m.to(f5_in.device) for m in
                                     masks(self._parsing(net), f5_in, points * MASK_FRAME, MASK_FRAME, out.masks))
            colour = face_colour(_preview256(net, f5_in), points)
            feat_mask, mixed_styles = (1.0 - keep * (1.0 - m) for m in (feat_mask, style_mask))
            with self._lock:
                self._last = _Last(net.version, out, feat_mask, style_mask, colour)
            if size == 128:
                image = net.head(torch.lerp(out.f4, f4_in, mask_at(feat_mask, f4_in.shape[-1])), 128)
            else:
                x = torch.lerp(out.f5, f5_in, mask_at(feat_mask, f5_in.shape[-1]))
                if size == 256:
                    image = net.head(x, 256)
                elif size == 512:
                    x = net.syn.blocks_mixed(x, w_in, w_out, mixed_styles, FIRST_BLOCK, FIRST_BLOCK + 1, between)
                    image = net.head(x, 512)
                else:
                    image = net.syn.tail_mixed(x, w_in, w_out, mixed_styles, FIRST_BLOCK, between)
            return photo_colour(image.clamp(-1, 1), style_mask, colour, out.colour)

    def render_uint8(self, generator, code: np.ndarray, outside: np.ndarray, size: int = 1024,  # noqa: ANN001
                     between: Callable[[], None] | None = None, draft: bool = False) -> np.ndarray:
        """``render`` as (size,size,3) uint8, under the generator's lock."""
        with generator.lock:
            return to_uint8(self.render(generator, code, outside, size, between, draft))[0]

    def _borrowed(self, net: _Net, w_out: Tensor, size: int) -> tuple[Tensor, _Last] | None:
        """(the outside code's features for a ``size``² draft, the last render's record) when its
        mask fits, else None. It fits when the last render was through ``net`` in the
        surroundings of ``w_out``, or of a code near it whose face sits where this one's does
        (``DRAFT_SHIFT``, ``DRAFT_CODE``: a slider drag edits the inside and the outside code
        alike, so the outside changes every frame and the face barely moves)."""
        with self._lock:
            last = self._last
        if last is None or last.version != net.version:
            return None
        ref = last.outside
        out = self._cached(net, w_out)
        if out is not None and out is ref:
            return (out.f4 if size == 128 else out.f5), last
        if float((w_out - ref.w).norm(dim=-1).mean()) > DRAFT_CODE:
            return None
        f4 = out.f4 if out is not None else net.syn.features(w_out, FIRST_BLOCK - 1)
        points = out.points if out is not None else self._landmarks(net, f4)
        if _apart(points, ref.points) > DRAFT_SHIFT:
            if out is None:  # what the full render needs next: measured once
                self._outside(net, w_out, f4=f4, points=points)
            return None
        if size == 128:
            return f4, last
        return (out.f5 if out is not None else net.syn.blocks_from(f4, w_out, FIRST_BLOCK - 1, FIRST_BLOCK)), last

    def _parsing(self, net: _Net) -> FaceParsing:
        return self.parsing if net.order is None else self.parsing.reordered(net.order)

    def _landmarks(self, net: _Net, f4: Tensor) -> np.ndarray:
        """Our landmark net on the 128² preview of features after 4 blocks: (68, 2) fractions."""
        return self.landmark_net(net.head(f4, 128).clamp(-1, 1)).float()[0].cpu().numpy()

    @staticmethod
    def _key(net: _Net, w_out: Tensor) -> tuple[object, ...]:
        return (net.version, w_out.detach().cpu().numpy().tobytes())

    def _cached(self, net: _Net, w_out: Tensor) -> _Outside | None:
        """The outside code's share of a render if it is the one cached (a drag of the identity
        amounts keeps the outside code and the network), else None."""
        key = self._key(net, w_out)
        with self._lock:
            return self._cache[1] if self._cache is not None and self._cache[0] == key else None

    def _outside(self, net: _Net, w_out: Tensor, f4: Tensor | None = None,
                 points: np.ndarray | None = None) -> _Outside:
        """The outside code's share of a render: the cached one, else computed (from its features
        after 4 blocks and its landmarks when given) and cached."""
        out = self._cached(net, w_out)
        if out is not None:
            return out
        f4 = net.syn.features(w_out, FIRST_BLOCK - 1) if f4 is None else f4
        f5 = net.syn.blocks_from(f4, w_out, FIRST_BLOCK - 1, FIRST_BLOCK)
        points = self._landmarks(net, f4) if points is None else points
        around = outside_masks(self._parsing(net), f5, points * MASK_FRAME, MASK_FRAME)
        out = _Outside(w_out, f4, f5, points, around, face_colour(_preview256(net, f5), points, around[1]))
        with self._lock:
            self._cache = (self._key(net, w_out), out)
        return out


def load_surroundings(device: torch.device | str) -> Surroundings | None:
    """The face parsing and our landmark net on ``device``; None when either is not installed
    (a face is then shown in its own surroundings)."""
    from latentstudio.face.landmark_net import LandmarkNetError, load_landmark_net

    parsing = FaceParsing.load()
    if parsing is None:
        return None
    try:
        return Surroundings(parsing, load_landmark_net(device))
    except LandmarkNetError:
        return None


@dataclass(frozen=True, eq=False)
class InSurroundings:
    """A ``render.Scene``: ``code`` (23,512) rendered in the surroundings of ``outside`` (23,512)."""

    code: np.ndarray
    outside: np.ndarray
    by: Surroundings
    draft: bool = False  # a drag's preview (``Surroundings.render``)

    def render_uint8(self, generator, size: int, between: Callable[[], None] | None = None) -> np.ndarray:  # noqa: ANN001
        return self.by.render_uint8(generator, self.code, self.outside, size, between, self.draft)


def in_surroundings(code: np.ndarray, outside: np.ndarray | None, by: Surroundings | None,
                    draft: bool = False) -> np.ndarray | InSurroundings:
    """What to render for ``code``: itself, or (given an ``outside`` code and the parsing's
    ``by``) an ``InSurroundings`` scene (``draft``: a drag's preview)."""
    return code if by is None or outside is None else InSurroundings(code, outside, by, draft)
