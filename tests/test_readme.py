"""The README's library snippet (``import rldarts.cells as cells``) runs as written."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_cells_snippet_runs():
    text = open(os.path.join(ROOT, "README.md")).read()
    snippet = re.search(r"As a library:\s*```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    genotype = scope["genotype"]
    assert scope["y"].shape == (8, 16, 16, 32)
    # k=2 kept edges per node (node 0 has one input edge), ops from the snippet's list.
    assert [len(node) for node in genotype.nodes] == [1, 2, 2, 2]
    assert {op for node in genotype.nodes for _, op in node} <= {"Conv3x3Relu", "SkipConnection"}
