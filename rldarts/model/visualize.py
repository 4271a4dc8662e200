"""Visualisation of DARTS cells: Graphviz DOT text and matplotlib PNGs (no system graphviz).

Index convention: 0..num_inputs-1 are cell inputs (``in_k``), ``num_inputs + j`` is node j
(``n<j>``); every node feeds the cell output ``out``.  A genotype is duck-typed: anything with
``.num_inputs`` and ``.nodes`` (one tuple of ``(input_index, op_name)`` per node).  Supernet alphas
are a list with one ``(num_inputs + i, num_ops)`` array per node i.

PNG writers build ``matplotlib.figure.Figure`` objects on an explicit Agg canvas (never pyplot, so
no global figure state and no display needed), create parent dirs and write atomically.
Where a cell diagram's parts go is rldarts/model/cell_layout.py's geometry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Patch
from matplotlib.path import Path
from matplotlib.ticker import FuncFormatter, MaxNLocator

from rldarts.common.files import atomic_write
from rldarts.model import cell_layout
from rldarts.model.cell_layout import node_name, validate_genotype
from rldarts.model.genotypes import EDGE_WEIGHTS, softmax, split_alphas

FAMILY_COLORS = {
    "conv": "#1f5fa8",
    "pooling": "#2e8b3a",
    "skip": "#e07b00",
    "activation": "#b3243a",
    "zero": "#9a9a9a",
    "other": "#7b4fa0",
}
_ACTIVATIONS = ("relu", "tanh", "sigmoid", "elu", "gelu", "swish", "silu", "softplus", "mish")
_OUT_EDGE_COLOR = "#a0a0a0"


def op_family(op_name: str) -> str:
    """Coarse family of an op name: conv / pooling / skip / activation / zero / other."""
    n = op_name.lower()
    if "zero" in n or n == "none":
        return "zero"
    if "conv" in n:
        return "conv"
    if "pool" in n:
        return "pooling"
    if "skip" in n or "identity" in n:
        return "skip"
    if any(a in n for a in _ACTIVATIONS):
        return "activation"
    return "other"


def alpha_probabilities(
    alphas: Sequence[Any], op_names: Sequence[str], inverse_temperature: float = 1.0
) -> tuple[int, list[np.ndarray]]:
    """Validates alphas and returns (num_inputs, per-node softmax probabilities)."""
    arrays = [np.asarray(a, dtype=np.float64) for a in alphas]
    if not arrays:
        raise ValueError("alphas is empty")
    num_inputs = arrays[0].shape[0]
    for i, a in enumerate(arrays):
        if a.shape != (num_inputs + i, len(op_names)):
            raise ValueError(
                f"alphas[{i}] has shape {a.shape}, expected "
                f"{(num_inputs + i, len(op_names))} (num_ops = len(op_names))"
            )
    return num_inputs, [softmax(inverse_temperature * a) for a in arrays]


def _edge_rows(num_inputs: int, probs: list[np.ndarray]) -> tuple[list[str], np.ndarray]:
    names = [
        f"{node_name(s, num_inputs)}->n{i}" for i, p in enumerate(probs) for s in range(len(p))
    ]
    return names, np.concatenate(probs, axis=0)


def _quote(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_header(title: str, num_inputs: int, num_nodes: int) -> list[str]:
    lines = [
        f"digraph {_quote(title or 'cell')} {{",
        "  rankdir=LR;",
        '  node [fontname="Helvetica"]; edge [fontname="Helvetica", fontsize=10];',
    ]
    if title:
        lines.append(f"  label={_quote(title)}; labelloc=t;")
    for k in range(num_inputs):
        lines.append(
            f'  "in_{k}" [label="in_{k}", shape=box, style="rounded,filled", fillcolor="#d9d9d9"];'
        )
    for j in range(num_nodes):
        lines.append(f'  "n{j}" [label="{j}", shape=circle, style=filled, fillcolor="#cfe2f3"];')
    lines.append('  "out" [label="out", shape=box, style="rounded,filled", fillcolor="#d9ead3"];')
    return lines


def _dot_footer(num_nodes: int) -> list[str]:
    out = [
        f'  "n{j}" -> "out" [style=dashed, color="{_OUT_EDGE_COLOR}"];' for j in range(num_nodes)
    ]
    return out + ["}"]


def genotype_to_dot(genotype: Any, title: str = "") -> str:
    """Graphviz DOT text of a discrete cell (one labelled edge per kept op, every node -> out)."""
    num_inputs, nodes = validate_genotype(genotype)
    lines = _dot_header(title, num_inputs, len(nodes))
    for i, node in enumerate(nodes):
        for src, op in node:
            color = FAMILY_COLORS[op_family(op)]
            lines.append(
                f'  "{node_name(src, num_inputs)}" -> "n{i}" [label={_quote(op)}, '
                f'color="{color}", fontcolor="{color}"];'
            )
    return "\n".join(lines + _dot_footer(len(nodes))) + "\n"


def alphas_to_dot(
    alphas: Sequence[Any],
    op_names: Sequence[str],
    inverse_temperature: float = 1.0,
    top: int = 2,
    title: str = "",
) -> str:
    """DOT text of a supernet cell; each edge is labelled with its `top` ops, e.g. `Relu 0.41`."""
    num_inputs, probs = alpha_probabilities(alphas, op_names, inverse_temperature)
    top = max(1, min(int(top), len(op_names)))
    lines = _dot_header(title, num_inputs, len(probs))
    for i, p in enumerate(probs):
        for src, row in enumerate(p):
            order = np.argsort(-row, kind="stable")[:top]
            label = "\\n".join(f"{op_names[k]} {row[k]:.2f}" for k in order)
            color = FAMILY_COLORS[op_family(op_names[order[0]])]
            lines.append(
                f'  "{node_name(src, num_inputs)}" -> "n{i}" [label="{label}", '
                f'color="{color}", penwidth={1.0 + 3.0 * row[order[0]]:.2f}];'
            )
    return "\n".join(lines + _dot_footer(len(probs))) + "\n"


def save_figure(fig: Figure, path: Any, dpi: int) -> None:
    """Renders `fig` with Agg and writes the PNG atomically."""
    FigureCanvasAgg(fig)
    try:
        atomic_write(
            path, lambda f: fig.savefig(f, format="png", dpi=dpi, facecolor="white"), binary=True
        )
    finally:
        fig.clear()


def draw_genotype(genotype: Any, path: Any, title: str = "") -> None:
    """Left-to-right layered PNG of a discrete cell with op-coloured, labelled arrows."""
    lay = cell_layout.layout(genotype)
    (x0, x1), (y0, y1) = lay["xlim"], lay["ylim"]
    top_in, bottom_in = (0.5 if title else 0.1), 0.5
    w, h = (x1 - x0) * cell_layout.SCALE, (y1 - y0) * cell_layout.SCALE
    fig = Figure(figsize=(max(w, 4.0), h + top_in + bottom_in))
    fig_w, fig_h = fig.get_size_inches()
    ax = fig.add_axes((0.5 - w / 2 / fig_w, bottom_in / fig_h, w / fig_w, h / fig_h))
    ax.set_xlim(x0, x1), ax.set_ylim(y0, y1), ax.set_axis_off()
    families = []
    for e in lay["edges"]:
        if e["op"] is None:
            color, lw, ls = _OUT_EDGE_COLOR, 1.2, (0, (4, 3))
        else:
            fam = op_family(e["op"])
            families += [fam] if fam not in families else []
            color, lw, ls = FAMILY_COLORS[fam], 1.8, "-"
        ax.add_patch(
            FancyArrowPatch(
                path=Path(e["curve"]),
                arrowstyle="-|>,head_length=0.5,head_width=0.25",
                mutation_scale=14,
                color=color,
                lw=lw,
                linestyle=ls,
                zorder=2,
            )
        )
    for name, (kind, (x, y)) in lay["shapes"].items():
        if kind == "circle":
            ax.add_patch(
                Circle((x, y), cell_layout.R, fc="#cfe2f3", ec="#2b4a6f", lw=1.5, zorder=3)
            )
            text = name[1:]
        else:
            fc = "#d9ead3" if name == "out" else "#e3e3e3"
            ax.add_patch(
                FancyBboxPatch(
                    (x - cell_layout.BOX[0] + 0.05, y - cell_layout.BOX[1] + 0.05),
                    2 * cell_layout.BOX[0] - 0.1,
                    2 * cell_layout.BOX[1] - 0.1,
                    boxstyle="round,pad=0.05",
                    fc=fc,
                    ec="#444444",
                    lw=1.5,
                    zorder=3,
                )
            )
            text = name
        ax.text(x, y, text, ha="center", va="center", fontsize=11, weight="bold", zorder=4)
    for lb in lay["labels"]:
        color = FAMILY_COLORS[op_family(lb["text"])]
        ax.text(
            *lb["xy"],
            lb["text"],
            ha="center",
            va="center",
            fontsize=cell_layout.FONT,
            color=color,
            zorder=5,
            bbox=dict(boxstyle="round,pad=0.2", fc="white", ec=color, lw=0.8),
        )
    if title:
        fig.text(0.5, 1 - 0.25 / fig_h, title, ha="center", va="center", fontsize=12, weight="bold")
    handles = [Patch(fc=FAMILY_COLORS[f], label=f) for f in families]
    handles.append(Line2D([], [], color=_OUT_EDGE_COLOR, ls="--", label="node -> out (concat)"))
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        frameon=False,
        fontsize=9,
        bbox_to_anchor=(0.5, 0.02 / fig_h),
    )
    save_figure(fig, path, dpi=100)


def draw_alphas(
    alphas: Sequence[Any],
    op_names: Sequence[str],
    path: Any,
    inverse_temperature: float = 1.0,
    title: str = "",
) -> None:
    """Heat-map PNG of a supernet cell: one row per edge, one column per op, text = probability."""
    num_inputs, probs = alpha_probabilities(alphas, op_names, inverse_temperature)
    rows, p = _edge_rows(num_inputs, probs)
    num_ops = len(op_names)
    fig = Figure(figsize=(2.6 + 0.95 * num_ops, 1.6 + 0.36 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    im = ax.imshow(p, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    for r in range(p.shape[0]):
        best = int(np.argmax(p[r]))
        for c in range(num_ops):
            ax.text(
                c,
                r,
                f"{p[r, c]:.2f}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if p[r, c] > 0.55 else "black",
                weight="bold" if c == best else "normal",
            )
    ax.set_xticks(range(num_ops), [str(o) for o in op_names], rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    for c, name in enumerate(op_names):
        ax.get_xticklabels()[c].set_color(FAMILY_COLORS[op_family(str(name))])
    ax.set_xticks(np.arange(-0.5, num_ops, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, len(rows), 1.0), minor=True)
    ax.grid(which="minor", color="white", lw=1.0)
    ax.tick_params(which="minor", length=0)
    boundary = 0
    for node_p in probs[:-1]:  # thick separators between nodes
        boundary += len(node_p)
        ax.axhline(boundary - 0.5, color="#333333", lw=2.0)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, label="probability")
    ax.set_title(title or "supernet cell: op probabilities per edge", fontsize=11)
    save_figure(fig, path, dpi=110)


def _format_steps(x: float, _pos=None) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:g}{suffix}"
    return f"{x:g}"


def plot_alpha_history(
    history: Sequence[tuple[float, Mapping[str, Sequence[Any]]]],
    op_names: Sequence[str],
    path: Any,
    inverse_temperature: float = 1.0,
) -> None:
    """Per cell type, one subplot per edge (grid: row = node, column = input) of each op's
    probability vs env steps; one colour per op and a shared legend."""
    records = sorted(
        ((float(s), split_alphas(cells)[0]) for s, cells in history), key=lambda r: r[0]
    )
    if not records:
        raise ValueError("empty alpha history")
    order = {"normal": 0, "reduction": 1}
    cell_types = sorted(
        {c for _, cells in records for c in cells}, key=lambda c: (order.get(c, 2), c)
    )
    data = {}
    for ct in cell_types:
        steps, stacked, n_in, n_nodes = [], [], None, None
        for s, cells in records:
            if ct not in cells:
                continue
            k, probs = alpha_probabilities(cells[ct], op_names, inverse_temperature)
            if n_in is not None and (k, len(probs)) != (n_in, n_nodes):
                raise ValueError(f"cell {ct!r} changes shape within the history")
            n_in, n_nodes = k, len(probs)
            steps.append(s)
            stacked.append(_edge_rows(k, probs)[1])
        data[ct] = (np.array(steps), np.stack(stacked), n_in, n_nodes)
    ncols = max(d[2] + d[3] - 1 for d in data.values())
    nrows = [d[3] for d in data.values()]
    num_ops = len(op_names)
    colors = (
        [f"C{k}" for k in range(num_ops)]
        if num_ops <= 10
        else [tuple(c) for c in matplotlib.colormaps["tab20"](np.arange(num_ops) % 20)]
    )
    fig = Figure(
        figsize=(2.5 * ncols + 0.4, 1.75 * sum(nrows) + 0.7 * len(cell_types) + 0.8),
        layout="constrained",
    )
    subfigs = fig.subfigures(len(cell_types), 1, height_ratios=nrows, squeeze=False)[:, 0]
    marker = "o" if len(records) <= 30 else None
    for sf, ct in zip(subfigs, cell_types):
        steps, p, n_in, n_nodes = data[ct]
        sf.suptitle(f"{ct} cell", fontsize=12, weight="bold")
        axes = sf.subplots(n_nodes, ncols, sharex=True, sharey=True, squeeze=False)
        ymax = min(1.0, float(p.max()) * 1.1 + 0.02)
        edge = 0
        for i in range(n_nodes):
            for src in range(ncols):
                ax = axes[i, src]
                if src >= n_in + i:
                    ax.set_visible(False)
                    continue
                for k in range(num_ops):
                    ax.plot(steps, p[:, edge, k], color=colors[k], lw=1.5, marker=marker, ms=3)
                ax.set_title(f"{node_name(src, n_in)}->n{i}", fontsize=9)
                ax.set_ylim(0.0, ymax)
                ax.grid(alpha=0.3)
                ax.tick_params(labelsize=8)
                ax.xaxis.set_major_locator(MaxNLocator(4))
                ax.xaxis.set_major_formatter(FuncFormatter(_format_steps))
                ax.xaxis.set_tick_params(labelbottom=True)
                edge += 1
            axes[i, 0].set_ylabel("prob", fontsize=8)
        for src in range(min(ncols, n_in + n_nodes - 1)):
            axes[n_nodes - 1, src].set_xlabel("env steps", fontsize=8)
    handles = [
        Line2D([], [], color=colors[k], lw=2.5, label=str(o)) for k, o in enumerate(op_names)
    ]
    fig.legend(
        handles=handles, loc="outside upper center", ncol=min(num_ops, 5), fontsize=9, frameon=False
    )
    save_figure(fig, path, dpi=90)


def plot_edge_weight_history(history: Sequence[tuple[float, Mapping[str, Any]]], path: Any) -> None:
    """PC-DARTS edge weights vs env steps: per cell type, one subplot per node with
    softmax(edge weights) of each of its input edges. ``history`` holds alpha pytrees
    (``EDGE_WEIGHTS`` -> cell type -> list per node)."""
    records = sorted(
        ((float(s), a[EDGE_WEIGHTS]) for s, a in history if EDGE_WEIGHTS in a), key=lambda r: r[0]
    )
    if not records:
        raise ValueError("no edge weights in the alpha history")
    cell_types = sorted(records[-1][1])
    n_nodes = max(len(records[-1][1][ct]) for ct in cell_types)
    fig = Figure(figsize=(2.6 * n_nodes + 0.4, 2.0 * len(cell_types) + 0.8), layout="constrained")
    axes = fig.subplots(len(cell_types), n_nodes, squeeze=False, sharey=True)
    steps = np.array([s for s, _ in records])
    for r, ct in enumerate(cell_types):
        for i in range(n_nodes):
            ax = axes[r, i]
            if i >= len(records[-1][1][ct]):
                ax.set_visible(False)
                continue
            betas = np.stack([np.asarray(w[ct][i], np.float64) for _, w in records])
            probs = np.exp(betas - betas.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            n_in = probs.shape[1] - i
            for j in range(probs.shape[1]):
                ax.plot(steps, probs[:, j], lw=1.5, label=f"{node_name(j, n_in)}->n{i}")
            ax.set_title(f"{ct} n{i}", fontsize=9)
            ax.set_ylim(0.0, 1.0)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.xaxis.set_major_locator(MaxNLocator(4))
            ax.xaxis.set_major_formatter(FuncFormatter(_format_steps))
            ax.legend(fontsize=7, frameon=False)
        axes[r, 0].set_ylabel("edge weight", fontsize=8)
    fig.suptitle("PC-DARTS edge weights (softmax over each node's inputs)", fontsize=11)
    save_figure(fig, path, dpi=90)
