"""Fetch-time converters for the generator carrier: OpenVINO IR → named safetensors.

The synthesis IR is walked along its data path (constant input → … → image); every styled layer
is recognised by its op pattern and its weights are copied into the matching tensor of
:class:`~latentstudio.models.mobilestylegan.Synthesis`. The inverse-DWT kernels are not copied
tensor by tensor: the IDWT sub-graph is evaluated on one-hot band inputs, giving the 4×4 matrix
from (LL, H0, H1, H2) to the 2×2 output pixels that ``inverse_haar`` applies.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from latentstudio.models.ir import IRError, IRGraph, Node
from latentstudio.models.mobilestylegan import NUM_SLOTS, Mapping, Synthesis

W_AVG_SAMPLES = 200_000
W_AVG_SEED = 20210721


def copy_members(members: dict[str, Path], out_dir: Path) -> None:
    """Converter for files used as they are (dlib's shape predictors, read by dlib itself)."""
    for src in members.values():
        shutil.copyfile(src, out_dir / src.name)


# --------------------------------------------------------------------------- mapping network
def mapping_state(graph: IRGraph) -> dict[str, np.ndarray]:
    """Weights of the 8 FC layers, in data-flow order: fcs.{i}.weight (512,512), .bias (512,)."""
    state: dict[str, np.ndarray] = {}
    matmuls = [n for n in graph.topological() if n.type == "MatMul"]
    if len(matmuls) != 8:
        raise IRError(f"mapping IR has {len(matmuls)} MatMul layers, expected 8")
    for i, mm in enumerate(matmuls):
        if mm.attrs.get("transpose_b") != "true":
            raise IRError("mapping MatMul without transpose_b")
        state[f"fcs.{i}.weight"] = graph.const_input(mm.id)
        add = _only(graph, mm.id, "Add")
        state[f"fcs.{i}.bias"] = _bias_of(graph, add).reshape(-1)
    return state


def _bias_of(graph: IRGraph, add: Node) -> np.ndarray:
    """The constant operand of a bias Add, possibly behind a Reshape of a constant."""
    for src, _ in add.inputs:
        node = graph.nodes[src]
        if node.type == "Const":
            return graph.const(src)
        if node.type == "Reshape" and graph.nodes[node.inputs[0][0]].type == "Const":
            return graph.const(node.inputs[0][0])
    raise IRError(f"{add.name}: no constant bias operand")


def _only(graph: IRGraph, nid: str, type_: str) -> Node:
    hits = [graph.nodes[c] for c in graph.consumers[nid] if graph.nodes[c].type == type_]
    if len(hits) != 1:
        raise IRError(f"{graph.nodes[nid].name}: expected one {type_} consumer, found {len(hits)}")
    return hits[0]


def _next_main(graph: IRGraph, nid: str) -> Node:
    """The single data-path consumer of a node (shape-computation consumers are ignored)."""
    hits = [graph.nodes[c] for c in dict.fromkeys(graph.consumers[nid])
            if graph.nodes[c].type not in ("ShapeOf",)]
    if len(hits) != 1:
        raise IRError(f"{graph.nodes[nid].name}: {len(hits)} data consumers, expected 1")
    return hits[0]


# --------------------------------------------------------------------------- styles
def _styles(graph: IRGraph) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """Map the node that outputs each style (N,C,1,1) to (weight (C,512), bias (C,), scale)."""
    param = graph.of_type("Parameter")
    if len(param) != 1:
        raise IRError("synthesis IR must have exactly one input")
    out: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
    for mm in (graph.nodes[c] for c in graph.consumers[param[0].id]):
        if mm.type != "MatMul":
            continue
        weight = graph.const_input(mm.id)
        add = _only(graph, mm.id, "Add")
        bias = _bias_of(graph, add).reshape(-1)
        node = _only(graph, add.id, "Reshape")
        scale = 1.0
        muls = [graph.nodes[c] for c in graph.consumers[node.id] if graph.nodes[c].type == "Multiply"]
        if len(muls) == 1 and any(graph.nodes[s].type == "Const" for s, _ in muls[0].inputs):
            scale = float(graph.const_input(muls[0].id).reshape(-1)[0])
            node = muls[0]
        out[node.id] = (weight, bias, scale)
    if len(out) != NUM_SLOTS:
        raise IRError(f"synthesis IR has {len(out)} style layers, expected {NUM_SLOTS}")
    return out


# --------------------------------------------------------------------------- inverse DWT
def _eval_idwt(graph: IRGraph, split: Node) -> tuple[np.ndarray, Node]:
    """Evaluate the IDWT sub-graph starting at ``split`` on one-hot bands.

    Returns (mix (4,4), last node of the sub-graph). mix[p, b]: weight of band b (LL, H0, H1, H2)
    in output pixel p = a·2 + b of each 2×2 cell.
    """
    in_shape = graph.producer(split.id).out_shapes[0]
    _, c4, h, w = in_shape
    c = c4 // 4
    sub: list[Node] = []
    frontier = [split.id]
    end: Node | None = None
    while frontier:
        nid = frontier.pop()
        for cid in dict.fromkeys(graph.consumers[nid]):
            node = graph.nodes[cid]
            if node.type in ("Multiply", "Result") or node in sub:
                if node.type in ("Multiply", "Result"):
                    end = graph.nodes[nid]
                continue
            if node.type == "ShapeOf":
                continue
            sub.append(node)
            frontier.append(cid)
    if end is None:
        raise IRError(f"IDWT at {split.name} has no end")
    order = [n for n in graph.topological() if n in sub]
    mix = np.zeros((4, 4), dtype=np.float64)
    for band in range(4):
        x = np.zeros(in_shape, dtype=np.float64)
        if band == 0:
            x[:, :c] = 1.0
        else:
            x[:, c + (band - 1)::3][:, :c] = 1.0
        vals: dict[tuple[str, int], np.ndarray] = {}
        _run_split(graph, split, x, vals)
        for node in order[1:] if order and order[0] is split else order:
            _run_node(graph, node, vals)
        y = vals[(end.id, 0)]
        if y.shape != (1, c, 2 * h, 2 * w):
            raise IRError(f"IDWT at {split.name}: output shape {y.shape}")
        cell = y[0, :, :2, :2].reshape(c, 4)
        if not np.allclose(cell, cell[:1], atol=1e-6) or not np.allclose(
                y[0, 0], np.tile(y[0, 0, :2, :2], (h, w)), atol=1e-6):
            raise IRError(f"IDWT at {split.name} is not a per-channel 2×2 transform")
        mix[:, band] = cell[0]
    return mix, end


def _run_split(graph: IRGraph, split: Node, x: np.ndarray, vals: dict) -> None:
    axis = int(graph.const(split.inputs[1][0]).reshape(-1)[0])
    lengths = graph.const(split.inputs[2][0]).reshape(-1).tolist()
    bounds = np.cumsum(lengths)[:-1]
    for i, part in enumerate(np.split(x, bounds, axis=axis)):
        vals[(split.id, i)] = part


def _run_node(graph: IRGraph, node: Node, vals: dict) -> None:
    ins = [vals.get(src) for src in node.inputs]
    if node.type == "VariadicSplit":
        _run_split(graph, node, ins[0], vals)
        return
    if node.type in ("Reshape", "Squeeze"):
        out = ins[0].reshape(node.out_shapes[0])
    elif node.type == "Add":
        out = ins[0] + ins[1]
    elif node.type == "GroupConvolutionBackpropData":
        kernel = graph.const(node.inputs[1][0])  # (G,1,1,kh,kw)
        sh, sw = (int(s) for s in node.attrs["strides"].split(","))
        g, _, _, kh, kw = kernel.shape
        if (kh, kw) != (sh, sw):
            raise IRError(f"{node.name}: overlapping transposed conv not supported")
        x = ins[0]
        n, _, h, w = x.shape
        out = np.einsum("nchw,cab->nchawb", x, kernel[:, 0, 0]).reshape(n, g, h * kh, w * kw)
    elif node.type in ("Gather", "Unsqueeze", "Concat", "ShapeOf"):
        return
    else:
        raise IRError(f"unexpected {node.type} ({node.name}) inside an IDWT")
    vals[(node.id, 0)] = out


# --------------------------------------------------------------------------- synthesis walk
def synthesis_state(graph: IRGraph) -> dict[str, np.ndarray]:
    styles = _styles(graph)
    state: dict[str, np.ndarray] = {}
    tiles = graph.of_type("Tile")
    if len(tiles) != 1:
        raise IRError("synthesis IR: expected one Tile (the constant input)")
    expand = graph.producer(tiles[0].id)
    state["const"] = graph.const_input(expand.id).reshape(1, 512, 4, 4)
    layer_names = ["conv"] + [f"blocks.{b}.{p}" for b in range(7) for p in ("up", "conv1", "conv2")]
    layer_names.append("to_image")
    mixes: list[np.ndarray] = []
    x = tiles[0]
    for slot, name in enumerate(layer_names):
        mul = _next_main(graph, x.id)
        style_src = [s for s, _ in mul.inputs if s in styles]
        if mul.type != "Multiply" or len(style_src) != 1:
            raise IRError(f"slot {slot}: expected a styled Multiply, found {mul.type} {mul.name}")
        weight, bias, scale = styles[style_src[0]]
        state[f"{name}.style.affine.weight"] = weight
        state[f"{name}.style.affine.bias"] = bias
        state[f"{name}.style.scale"] = np.array(scale, dtype=np.float32)
        op = _next_main(graph, mul.id)
        if name == "conv":
            state["conv.weight"] = graph.const_input(op.id)
            x = _noise_bias_act(graph, op, name, state)
        elif name.endswith(".up"):
            mix, x = _eval_idwt(graph, op)
            mixes.append(mix)
        elif name == "to_image":
            state["to_image.weight"] = graph.const_input(op.id)
            add = _next_main(graph, op.id)
            state["to_image.bias"] = graph.const_input(add.id).reshape(1, 12, 1, 1)
            mix, end = _eval_idwt(graph, _next_main(graph, add.id))
            mixes.append(mix)
            if _next_main(graph, end.id).type != "Result":
                raise IRError("to-image IDWT does not end the graph")
        else:
            if op.type != "GroupConvolution":
                raise IRError(f"{name}: expected a depthwise conv, found {op.type}")
            state[f"{name}.dw"] = graph.const_input(op.id)[:, 0]  # (C,1,1,3,3) → (C,1,3,3)
            pw = _next_main(graph, op.id)
            state[f"{name}.pw"] = graph.const_input(pw.id)
            x = _noise_bias_act(graph, pw, name, state)
    for m in mixes[1:]:
        if not np.allclose(m, mixes[0], atol=1e-6):
            raise IRError("IDWT kernels differ between layers")
    state["idwt_mix"] = mixes[0].astype(np.float32)
    return state


def _noise_bias_act(graph: IRGraph, conv: Node, name: str, state: dict[str, np.ndarray]) -> Node:
    """conv → Add(noise (1,1,H,W)) → Add(bias (1,C,1,1)) → PReLU(0.2); returns the PReLU."""
    noise = _next_main(graph, conv.id)
    bias = _next_main(graph, noise.id)
    act = _next_main(graph, bias.id)
    if (noise.type, bias.type, act.type) != ("Add", "Add", "PReLU"):
        raise IRError(f"{name}: unexpected pattern {noise.type}/{bias.type}/{act.type}")
    slope = float(graph.const_input(act.id).reshape(-1)[0])
    if abs(slope - 0.2) > 1e-6:
        raise IRError(f"{name}: leaky slope {slope}")
    state[f"{name}.noise"] = graph.const_input(noise.id)
    state[f"{name}.bias"] = graph.const_input(bias.id)
    return act


def _check_and_tensors(module: torch.nn.Module, state: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Load into the module strictly (names and shapes must match) and return torch tensors."""
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for k, v in state.items()}
    module.load_state_dict(tensors, strict=True)
    return tensors


def compute_w_avg(mapping: Mapping, samples: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED) -> torch.Tensor:
    """Mean w over ``samples`` standard-normal z (seeded), in float64 accumulation."""
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(512, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, samples, 10_000):
            z = torch.randn(min(10_000, samples - start), 512, generator=gen)
            total += mapping(z).double().sum(0)
    return (total / samples).float()


def convert_mobilestylegan(members: dict[str, Path], out_dir: Path) -> None:
    """Write mapping.safetensors, synthesis.safetensors and w_avg.safetensors into ``out_dir``."""
    by_name = {Path(k).name: v for k, v in members.items()}
    mapping_graph = IRGraph(by_name["MappingNetwork.xml"], by_name["MappingNetwork.bin"])
    synth_graph = IRGraph(by_name["SynthesisNetwork.xml"], by_name["SynthesisNetwork.bin"])
    mapping = Mapping()
    map_tensors = _check_and_tensors(mapping, mapping_state(mapping_graph))
    syn_tensors = _check_and_tensors(Synthesis(), synthesis_state(synth_graph))
    save_file(map_tensors, str(out_dir / "mapping.safetensors"))
    save_file(syn_tensors, str(out_dir / "synthesis.safetensors"))
    meta = {"samples": str(W_AVG_SAMPLES), "seed": str(W_AVG_SEED)}
    save_file({"w_avg": compute_w_avg(mapping)}, str(out_dir / "w_avg.safetensors"), metadata=meta)
