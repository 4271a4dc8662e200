"""Where a discrete cell's parts go in its diagram (rldarts/model/visualize.py draws it): inputs
in the first column, nodes left to right, the output last; edges as quadratic Bezier
curves (straight to the next column, arcs over longer spans, node -> out arcs below), op
labels placed greedily where they overlap nothing. Pure NumPy geometry in data units.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def node_name(index: int, num_inputs: int) -> str:
    """`in_<k>` for cell input k, `n<j>` for node j (index num_inputs + j)."""
    return f"in_{index}" if index < num_inputs else f"n{index - num_inputs}"


def validate_genotype(genotype: Any) -> tuple[int, list[list[tuple[int, str]]]]:
    """(num_inputs, nodes as [(input index, op name)]) of a duck-typed genotype; a
    ValueError names a node that reads a later node or a missing input."""
    num_inputs = int(genotype.num_inputs)
    nodes = [[(int(src), str(op)) for src, op in node] for node in genotype.nodes]
    for i, node in enumerate(nodes):
        for src, _ in node:
            if not 0 <= src < num_inputs + i:
                raise ValueError(f"node {i}: input index {src} not in [0, {num_inputs + i})")
    return num_inputs, nodes


DX = 1.6  # data units between columns
R = 0.24  # node circle radius
BOX = (0.34, 0.21)  # half width / half height of in/out boxes
SCALE = 1.3  # inches per data unit (uniform, so the geometry below is exact)
FONT = 9.0  # label font size (points)


def _bezier(p0, c, p2, t):
    t = np.asarray(t, dtype=float)[:, None]
    return (1 - t) ** 2 * p0 + 2 * (1 - t) * t * c + t**2 * p2


def _inside(pts: np.ndarray, shape: tuple, pad: float = 0.03) -> np.ndarray:
    kind, (x, y) = shape
    if kind == "circle":
        return np.hypot(pts[:, 0] - x, pts[:, 1] - y) < R + pad
    return (np.abs(pts[:, 0] - x) < BOX[0] + pad) & (np.abs(pts[:, 1] - y) < BOX[1] + pad)


def overlap(a, b) -> float:
    """Area shared by two boxes (x0, y0, x1, y1)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def layout(genotype: Any) -> dict:
    """Positions, edge polylines and non-overlapping label boxes (data units)."""
    num_inputs, nodes = validate_genotype(genotype)
    n = len(nodes)
    shapes = {
        f"in_{k}": ("box", (0.0, ((num_inputs - 1) / 2 - k) * 0.8)) for k in range(num_inputs)
    }
    shapes.update({f"n{j}": ("circle", ((j + 1) * DX, 0.0)) for j in range(n)})
    shapes["out"] = ("box", ((n + 1) * DX, 0.0))
    col = lambda name: (
        0 if name.startswith("in_") else (n + 1 if name == "out" else int(name[1:]) + 1)
    )
    edges, seen = [], {}
    for i, node in enumerate(nodes):
        for src, op in node:
            edges.append((node_name(src, num_inputs), f"n{i}", op))
    edges += [(f"n{j}", "out", None) for j in range(n)]
    t = np.linspace(0.0, 1.0, 121)
    for e, (a, b, op) in enumerate(edges):
        p0, p2 = np.array(shapes[a][1]), np.array(shapes[b][1])
        span = col(b) - col(a)
        dup = seen.get((a, b), 0)
        seen[(a, b)] = dup + 1
        if op is None:  # node -> out: below the row, nested arcs never cross
            if span > 1:  # arrowheads spread along the bottom edge of the out box
                p2 = p2 + [min(-0.2 + 0.1 * (span - 2), BOX[0] - 0.08), -BOX[1]]
            apex = 0.0 if span == 1 else -(0.35 + 0.3 * (span - 2))
        else:  # op edges: straight to the next column, arcs above otherwise
            apex = 0.0 if span == 1 else 0.5 + 0.38 * (span - 2)
        if dup:
            apex = (abs(apex) + 0.35 * ((dup + 1) // 2)) * (1 if dup % 2 else -1)
        d = p2 - p0
        normal = np.array([-d[1], d[0]]) / np.hypot(*d)
        ctrl = (p0 + p2) / 2 + 2 * apex * normal
        curve = _bezier(p0, ctrl, p2, t)
        keep = ~_inside(curve, shapes[a]) & ~_inside(curve, shapes[b])
        edges[e] = dict(src=a, dst=b, op=op, span=span, curve=curve[keep], full=curve)
    # Greedy label placement: straight/short edges first, then candidates along each curve.
    char_w, line_h = 0.6 * FONT / 72 / SCALE, 1.9 * FONT / 72 / SCALE
    obstacles = [
        (s[1][0] - R, s[1][1] - R, s[1][0] + R, s[1][1] + R)
        if s[0] == "circle"
        else (s[1][0] - BOX[0], s[1][1] - BOX[1], s[1][0] + BOX[0], s[1][1] + BOX[1])
        for s in shapes.values()
    ]
    labels = []
    for e in sorted((e for e in edges if e["op"]), key=lambda e: e["span"]):
        hw, hh = (len(e["op"]) * char_w + 0.08) / 2, line_h / 2
        best = None
        for frac in (0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78):
            x, y = e["full"][int(round(frac * (len(t) - 1)))]
            box = (x - hw, y - hh, x + hw, y + hh)
            cost = sum(overlap(box, o) for o in obstacles + [lb["box"] for lb in labels])
            if best is None or cost < best[0] - 1e-12:
                best = (cost, (x, y), box)
            if cost == 0:
                break
        labels.append(dict(text=e["op"], xy=best[1], box=best[2]))
    pts = np.concatenate(
        [e["full"] for e in edges]
        + [np.array(o).reshape(2, 2) for o in obstacles]
        + [np.array(lb["box"]).reshape(2, 2) for lb in labels]
    )
    lo, hi = pts.min(axis=0) - 0.15, pts.max(axis=0) + 0.15
    return dict(shapes=shapes, edges=edges, labels=labels, xlim=(lo[0], hi[0]), ylim=(lo[1], hi[1]))
