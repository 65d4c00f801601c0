"""lessons_lib.source: a library object's source, shown in a chapter as a Python block."""

from __future__ import annotations

import ast
import inspect
import re

import pytest
from IPython.display import Markdown

from lessons_lib.losses import JaccardDistance, SegmentationLoss, jaccard_distance
from lessons_lib.models.cdnn29 import CDNN29
from lessons_lib.source import show_source, source_of


def code_block(shown: Markdown) -> str:
    """The one ```python block of ``show_source``'s Markdown."""
    blocks = re.findall(r"```python\n(.*?)\n```", shown.data, flags=re.S)
    assert len(blocks) == 1, shown.data
    return blocks[0]


def test_show_source_renders_a_python_block_without_docstrings() -> None:
    shown = show_source(JaccardDistance)
    assert isinstance(shown, Markdown)
    assert shown.data.startswith("```python\nclass JaccardDistance(SegmentationLoss):\n")
    code = code_block(shown)
    assert "    def forward(self, output: Tensor, target: Tensor) -> Tensor:" in code
    assert "return jaccard_distance(" in code
    assert "Module form of" not in code  # the class docstring
    assert '"""' not in code
    assert "Source: `lessons_lib.losses.jaccard`" in shown.data
    ast.parse(code)  # still valid Python


def test_docstring_true_keeps_them() -> None:
    code = code_block(show_source(JaccardDistance, docstring=True))
    assert "Module form of :func:`jaccard_distance`" in code
    assert "def forward" in code
    assert code == inspect.getsource(JaccardDistance).rstrip()


def test_method_docstrings_of_a_class_go_too() -> None:
    doc = "Probabilities (N, C, H, W) of a network output"
    assert doc in source_of(SegmentationLoss, docstring=True)
    without = source_of(SegmentationLoss)
    assert doc not in without
    assert "def activation(self, output: Tensor) -> Tensor:" in without
    assert "return activate(output, self.output_activation)" in without
    ast.parse(without)


def test_source_of_a_model_class() -> None:
    code = source_of(CDNN29)
    assert code.startswith("class CDNN29(nn.Module):\n")
    assert "def __init__(self, in_channels: int = 7" in code
    assert "def forward(self, x: Tensor) -> Tensor:" in code
    assert "The 29-layer CDNN of Yuan & Lo" not in code
    assert "Segment a batch." not in code  # forward's docstring
    assert "Segment a batch." in source_of(CDNN29, docstring=True)
    assert code.endswith("\n")
    ast.parse(code)


def test_a_method_is_dedented() -> None:
    code = source_of(CDNN29.forward)
    assert code.startswith("def forward(self, x: Tensor) -> Tensor:\n")
    ast.parse(code)


def test_several_objects_in_one_block_in_order() -> None:
    shown = show_source(CDNN29, jaccard_distance)
    code = code_block(shown)
    assert code.index("class CDNN29") < code.index("def jaccard_distance(")
    assert "Soft Jaccard distance of Yuan & Lo." not in code
    assert "`lessons_lib.losses.jaccard`" in shown.data
    assert "`lessons_lib.models.cdnn29`" in shown.data


@pytest.mark.parametrize("obj", [len, JaccardDistance(), 3], ids=["builtin", "instance", "int"])
def test_no_source_is_a_type_error(obj) -> None:
    with pytest.raises(TypeError, match="no source for"):
        show_source(obj)
    with pytest.raises(TypeError, match="no source for"):
        source_of(obj)


def test_show_source_needs_an_object() -> None:
    with pytest.raises(TypeError, match="at least one"):
        show_source()
