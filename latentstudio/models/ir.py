"""Reader for OpenVINO IR (v10/v11) graphs: the ``.xml`` topology plus constants from the ``.bin``.

Only the standard library and numpy are used. The graph is exposed as plain nodes with their
inputs (producer node id and port) so that a converter can walk it and pull out named weights.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_DTYPES = {"f32": np.float32, "f16": np.float16, "i64": np.int64, "i32": np.int32, "u8": np.uint8}


class IRError(ValueError):
    """The IR files are missing, malformed or not the network we expect."""


@dataclass
class Node:
    id: str
    type: str
    name: str
    attrs: dict[str, str]
    inputs: list[tuple[str, int]] = field(default_factory=list)  # (producer id, producer port)
    out_shapes: list[tuple[int, ...]] = field(default_factory=list)


class IRGraph:
    """An IR graph: nodes by id, consumers, and constant values."""

    def __init__(self, xml_path: Path, bin_path: Path) -> None:
        try:
            root = ET.parse(xml_path).getroot()
            self._blob = np.fromfile(bin_path, dtype=np.uint8)
        except (OSError, ET.ParseError) as exc:
            raise IRError(f"cannot read IR {xml_path.name}: {exc}") from exc
        layers, edges = root.find("layers"), root.find("edges")
        if layers is None or edges is None:
            raise IRError(f"{xml_path.name} is not an OpenVINO IR (no layers/edges)")
        self.nodes: dict[str, Node] = {}
        port_order: dict[str, list[str]] = {}
        for el in layers:
            data = el.find("data")
            node = Node(el.get("id", ""), el.get("type", ""), el.get("name", ""),
                        dict(data.attrib) if data is not None else {})
            out = el.find("output")
            if out is not None:
                for p in out:
                    node.out_shapes.append(tuple(int(d.text or 0) for d in p.findall("dim")))
            inp = el.find("input")
            port_order[node.id] = [p.get("id", "") for p in inp] if inp is not None else []
            self.nodes[node.id] = node
        out_port_index: dict[tuple[str, str], int] = {}
        for el in layers:
            out = el.find("output")
            for i, p in enumerate(out if out is not None else []):
                out_port_index[(el.get("id", ""), p.get("id", ""))] = i
        incoming: dict[tuple[str, str], tuple[str, int]] = {}
        for e in edges:
            src = (e.get("from-layer", ""), e.get("from-port", ""))
            incoming[(e.get("to-layer", ""), e.get("to-port", ""))] = (src[0], out_port_index[src])
        self.consumers: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        for nid, ports in port_order.items():
            for p in ports:
                if (nid, p) not in incoming:
                    raise IRError(f"node {nid} input port {p} is not connected")
                src = incoming[(nid, p)]
                self.nodes[nid].inputs.append(src)
                self.consumers[src[0]].append(nid)

    def of_type(self, type_: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.type == type_]

    def const(self, nid: str) -> np.ndarray:
        """Value of a ``Const`` node, shaped as declared."""
        node = self.nodes[nid]
        if node.type != "Const":
            raise IRError(f"node {nid} ({node.type} {node.name}) is not a constant")
        dtype = _DTYPES.get(node.attrs.get("element_type", ""))
        if dtype is None:
            raise IRError(f"constant {node.name}: unsupported type {node.attrs.get('element_type')}")
        off, size = int(node.attrs["offset"]), int(node.attrs["size"])
        if off + size > self._blob.size:
            raise IRError(f"constant {node.name} lies outside the .bin (truncated file?)")
        shape_txt = node.attrs.get("shape", "").replace(" ", "")
        shape = tuple(int(s) for s in shape_txt.split(",")) if shape_txt else ()
        return self._blob[off:off + size].view(dtype).reshape(shape).copy()

    def producer(self, nid: str, index: int = 0) -> Node:
        return self.nodes[self.nodes[nid].inputs[index][0]]

    def const_input(self, nid: str) -> np.ndarray:
        """The single constant input of a binary op (e.g. the weight of a conv, a bias add)."""
        consts = [src for src, _ in self.nodes[nid].inputs if self.nodes[src].type == "Const"]
        if len(consts) != 1:
            raise IRError(f"node {nid} has {len(consts)} constant inputs, expected 1")
        return self.const(consts[0])

    def data_inputs(self, nid: str) -> list[str]:
        return [src for src, _ in self.nodes[nid].inputs if self.nodes[src].type != "Const"]

    def topological(self) -> list[Node]:
        """All nodes, producers before consumers."""
        indeg = {nid: len({s for s, _ in n.inputs}) for nid, n in self.nodes.items()}
        ready = sorted((nid for nid, d in indeg.items() if d == 0), key=int)
        order: list[Node] = []
        while ready:
            nid = ready.pop(0)
            order.append(self.nodes[nid])
            for c in sorted(set(self.consumers[nid]), key=int):
                indeg[c] -= 1
                if indeg[c] == 0:
                    ready.append(c)
        if len(order) != len(self.nodes):
            raise IRError("graph has a cycle")
        return order
