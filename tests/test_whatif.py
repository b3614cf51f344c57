"""Cluster changes for what-if runs."""

from __future__ import annotations

import pytest

from simulator.whatif import add_nodes, parse_additions


def test_additions_copy_the_first_node_of_each_model(make_node) -> None:
    nodes = [make_node("t4-0", gpus=2, model="T4"), make_node("a100-0", gpus=8), make_node("a100-1", gpus=8),
             make_node("cpu-0")]
    grown = add_nodes(nodes, parse_additions("A100=2, cpu=1"))
    assert [n.name for n in grown[4:]] == ["a100-0-added-0", "a100-0-added-1", "cpu-0-added-0"]
    assert grown[4].allocatable == nodes[1].allocatable and grown[4].gpu_model == "A100"
    assert grown[6].gpu_count == 0
    assert grown[:4] == nodes


@pytest.mark.parametrize("text", ["A100", "A100=", "=3", "A100=two", "A100=0", "A100=-1"])
def test_malformed_additions_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="expected MODEL=COUNT"):
        parse_additions(text)


def test_a_model_the_cluster_lacks_is_refused(make_node) -> None:
    with pytest.raises(ValueError, match="no node of model 'H100' to copy; the cluster has A100, cpu"):
        add_nodes([make_node("a", gpus=1), make_node("c")], [("H100", 1)])
