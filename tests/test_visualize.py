"""Tests for rldarts.model.visualize: DOT text, PNG drawings and the alpha-history plot."""

import collections
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rldarts.model import cell_layout
from rldarts.model import visualize as viz

Genotype = collections.namedtuple("Genotype", ["num_inputs", "nodes"])

GENOTYPE = Genotype(
    num_inputs=1,
    nodes=(
        ((0, "Conv3x3Relu"),),
        ((0, "SkipConnection"), (1, "Conv3x3Relu")),
        ((1, "Relu"), (2, "Conv5x5Relu")),
        ((0, "Conv3x3Relu"), (3, "Tanh")),
    ),
)
OPS = ("Conv3x3Relu", "MaxPool3x3", "SkipConnection", "Relu", "Tanh", "Zero")


def random_alphas(seed=0, num_inputs=1, num_nodes=4, num_ops=None):
    num_ops = len(OPS) if num_ops is None else num_ops
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(num_inputs + i, num_ops)) for i in range(num_nodes)]


def check_png(path, min_size=(200, 150)):
    assert os.path.isfile(path)
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        w, h = im.size
        assert min_size[0] <= w <= 5000 and min_size[1] <= h <= 5000
        pixels = np.asarray(im.convert("L"), dtype=np.float64)
    assert pixels.var() > 0, "image is blank"
    leftovers = [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def capture_texts(monkeypatch):
    """Records every text drawn in figures passed to save_figure (before they are cleared)."""
    texts, original = [], viz.save_figure

    def wrapper(fig, path, dpi):
        for ax in fig.get_axes():
            texts.extend(t.get_text() for t in ax.texts)
        original(fig, path, dpi)

    monkeypatch.setattr(viz, "save_figure", wrapper)
    return texts


# ------------------------------------------------------------------------------------ DOT
def test_genotype_to_dot_edges_and_labels():
    dot = viz.genotype_to_dot(GENOTYPE, title="best cell")
    assert dot.lstrip().startswith("digraph") and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}") == 1
    assert dot.count("->") == 7 + 4  # kept edges + every node -> out
    for edge in (
        '"in_0" -> "n0" [label="Conv3x3Relu"',
        '"in_0" -> "n1" [label="SkipConnection"',
        '"n0" -> "n1" [label="Conv3x3Relu"',
        '"n0" -> "n2" [label="Relu"',
        '"n1" -> "n2" [label="Conv5x5Relu"',
        '"in_0" -> "n3" [label="Conv3x3Relu"',
        '"n2" -> "n3" [label="Tanh"',
    ):
        assert edge in dot
    for j in range(4):
        assert f'"n{j}" -> "out"' in dot
        assert f'"n{j}" [label="{j}"' in dot
    assert '"in_0" [label="in_0"' in dot and '"out" [label="out"' in dot
    assert 'label="best cell"' in dot and "rankdir=LR" in dot


def test_genotype_to_dot_multi_input_and_quoting():
    g = Genotype(2, (((0, "Relu"), (1, "MaxPool3x3")), ((2, "Tanh"), (1, "SkipConnection"))))
    dot = viz.genotype_to_dot(g, title='say "hi"')
    assert dot.count("->") == 4 + 2
    assert '"in_1" -> "n0" [label="MaxPool3x3"' in dot
    assert '"n0" -> "n1" [label="Tanh"' in dot
    assert 'label="say \\"hi\\""' in dot


def test_invalid_genotype_raises():
    with pytest.raises(ValueError, match="input index"):
        viz.genotype_to_dot(Genotype(1, (((1, "Relu"),),)))


def test_alphas_to_dot_probabilities():
    ops = ("OpA", "OpB", "OpC", "OpD")
    alphas = [
        np.array([[math.log(3.0), 0.0, 0.0, 0.0]]),
        np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, math.log(3.0), 0.0]]),
    ]
    dot = viz.alphas_to_dot(alphas, ops, top=2)
    assert dot.count("->") == 3 + 2
    assert '"in_0" -> "n0" [label="OpA 0.50\\nOpB 0.17"' in dot
    assert '"in_0" -> "n1" [label="OpA 0.25\\nOpB 0.25"' in dot  # ties keep op order
    assert '"n0" -> "n1" [label="OpC 0.50\\nOpA 0.17"' in dot
    hot = viz.alphas_to_dot(alphas, ops, inverse_temperature=2.0, top=1)
    assert '"in_0" -> "n0" [label="OpA 0.75"' in hot  # 9 / (9 + 3)
    every = viz.alphas_to_dot(alphas, ops, top=10)
    assert "OpD 0.17" in every and every.count("0.17") == 6


def test_bad_alpha_shape_raises():
    with pytest.raises(ValueError, match="shape"):
        viz.alphas_to_dot([np.zeros((1, 3)), np.zeros((1, 3))], ("a", "b", "c"))
    with pytest.raises(ValueError, match="num_ops"):
        viz.alphas_to_dot([np.zeros((1, 4))], ("a", "b", "c"))


def test_op_family():
    assert viz.op_family("Conv3x3Relu") == "conv"
    assert viz.op_family("DepthSepConv5x5") == "conv"
    assert viz.op_family("sep_conv_3x3") == "conv"
    assert viz.op_family("MaxPool3x3") == viz.op_family("avg_pool_3x3") == "pooling"
    assert viz.op_family("SkipConnection") == viz.op_family("skip_connect") == "skip"
    assert viz.op_family("Relu") == viz.op_family("Tanh") == viz.op_family("Silu") == "activation"
    assert viz.op_family("Zero") == viz.op_family("none") == "zero"


# ------------------------------------------------------------------------------------ PNGs
def test_draw_genotype_png(tmp_path):
    path = tmp_path / "nested" / "dir" / "cell.png"
    viz.draw_genotype(GENOTYPE, path, title="normal cell")
    check_png(str(path), min_size=(600, 250))
    viz.draw_genotype(GENOTYPE, str(path))  # overwrite in place, no title
    check_png(str(path), min_size=(600, 250))


def test_draw_genotype_multi_input_png(tmp_path):
    g = Genotype(
        2,
        (
            ((0, "Conv3x3Relu"), (1, "MaxPool3x3")),
            ((0, "Relu"), (0, "Tanh")),
            ((1, "SkipConnection"), (3, "Zero")),
        ),
    )
    viz.draw_genotype(g, tmp_path / "two.png")
    check_png(str(tmp_path / "two.png"))


def test_genotype_layout_labels_do_not_overlap():
    layout = cell_layout.layout(GENOTYPE)
    boxes = [lb["box"] for lb in layout["labels"]]
    assert sorted(lb["text"] for lb in layout["labels"]) == sorted(
        op for node in GENOTYPE.nodes for _, op in node
    )
    for i in range(len(boxes)):
        for j in range(i):
            assert cell_layout.overlap(boxes[i], boxes[j]) == 0.0
    x = {name: s[1][0] for name, s in layout["shapes"].items()}
    assert x["in_0"] < x["n0"] < x["n1"] < x["n2"] < x["n3"] < x["out"]  # left to right


def test_draw_alphas_png_and_values(tmp_path, monkeypatch):
    texts = capture_texts(monkeypatch)
    ops = ("Conv3x3Relu", "MaxPool3x3", "SkipConnection", "Relu")
    alphas = [
        np.array([[math.log(3.0), 0.0, 0.0, 0.0]]),
        np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, math.log(3.0)]]),
    ]
    path = tmp_path / "alphas.png"
    viz.draw_alphas(alphas, ops, path, title="supernet")
    check_png(str(path))
    assert texts[:4] == ["0.50", "0.17", "0.17", "0.17"]
    assert texts[4:8] == ["0.25"] * 4
    assert texts[8:12] == ["0.17", "0.17", "0.17", "0.50"]
    texts.clear()
    viz.draw_alphas(alphas, ops, path, inverse_temperature=2.0)
    assert texts[:4] == ["0.75", "0.08", "0.08", "0.08"]


def test_draw_alphas_default_size(tmp_path):
    path = tmp_path / "a.png"
    viz.draw_alphas(random_alphas(), OPS, path)
    check_png(str(path), min_size=(500, 350))


def test_plot_alpha_history(tmp_path):
    history = []
    for k, steps in enumerate((0, 250_000, 1_000_000)):
        history.append(
            (
                steps,
                {
                    "normal": [a * k for a in random_alphas(1)],
                    "reduction": [a * k for a in random_alphas(2)],
                },
            )
        )
    path = tmp_path / "plots" / "history.png"
    viz.plot_alpha_history(history, OPS, path, inverse_temperature=1.0)
    check_png(str(path), min_size=(500, 500))


def test_plot_alpha_history_single_cell_type_unsorted(tmp_path):
    history = [
        (200, {"normal": random_alphas(3, num_nodes=2)}),
        (100, {"normal": random_alphas(4, num_nodes=2)}),
    ]
    viz.plot_alpha_history(history, OPS, tmp_path / "h.png")
    check_png(str(tmp_path / "h.png"))
    with pytest.raises(ValueError):
        viz.plot_alpha_history([], OPS, tmp_path / "empty.png")


def test_no_pyplot_import():
    code = "import sys, rldarts.model.visualize; sys.exit('matplotlib.pyplot' in sys.modules)"
    root = os.path.dirname(os.path.dirname(os.path.abspath(viz.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    assert subprocess.run([sys.executable, "-c", code], env=env, check=False).returncode == 0
