"""Placement decisions: typed values that say what was decided and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from scheduler.model.cluster import Pod


@dataclass(slots=True)
class Rejections:
    """Why nodes were rejected for one pod: reasons with the node indices they apply to."""

    considered: int
    node_names: tuple[str, ...]
    groups: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def add(self, reason: str, nodes: np.ndarray) -> None:
        self.groups.append((reason, nodes))

    def counts(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for reason, nodes in self.groups:
            counts[reason] += len(nodes)
        return counts

    def summary(self, available: int = 0) -> str:
        """kube-scheduler's style: ``0/1213 nodes are available: 900 Insufficient nvidia.com/gpu, ...``."""
        parts = sorted(self.counts().items(), key=lambda kv: (-kv[1], kv[0]))
        reasons = ", ".join(f"{n} {reason}" for reason, n in parts)
        return f"{available}/{self.considered} nodes are available" + (f": {reasons}." if reasons else ".")

    def labelled(self) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """The rejected nodes, each one's label, and per label the node's reasons joined.

        Nodes share few distinct reason lists, so each list is joined once and per-node work stays
        in numpy, which matters at 5,000 nodes a scheduling cycle.
        """
        label = np.full(len(self.node_names), -1, dtype=np.int64)
        texts: list[str] = []
        extended: dict[tuple[int, str], int] = {}  # (label so far, reason) -> label with the reason added
        for reason, nodes in self.groups:
            before, inverse = np.unique(label[nodes], return_inverse=True)
            after = []
            for b in before.tolist():
                if (b, reason) not in extended:
                    extended[b, reason] = len(texts)
                    texts.append(reason if b < 0 else f"{texts[b]}, {reason}")
                after.append(extended[b, reason])
            label[nodes] = np.array(after, dtype=np.int64)[inverse]
        hit = np.flatnonzero(label >= 0)
        return hit, label[hit], texts

    def by_node(self) -> dict[str, str]:
        """Each rejected node's reasons, joined, as the extender's ``FailedNodes`` wants them."""
        nodes, labels, texts = self.labelled()
        return dict(zip([self.node_names[i] for i in nodes.tolist()], [texts[k] for k in labels.tolist()]))


@dataclass(frozen=True, slots=True)
class Placement:
    """The pod goes to ``node``, on ``gpus``; ``scores`` is each policy's score for that node."""

    pod: Pod
    node: str
    node_index: int
    gpus: tuple[int, ...]
    score: float
    scores: tuple[tuple[str, float], ...]
    feasible: int

    def __str__(self) -> str:
        gpus = f" GPUs {list(self.gpus)}" if self.gpus else ""
        parts = ", ".join(f"{name} {value:.1f}" for name, value in self.scores)
        return f"{self.pod.key} -> {self.node}{gpus} (score {self.score:.1f}: {parts}; {self.feasible} feasible nodes)"


@dataclass(frozen=True, slots=True)
class Unschedulable:
    """No node can take the pod; ``rejections`` says why, node by node."""

    pod: Pod
    rejections: Rejections

    @property
    def message(self) -> str:
        return self.rejections.summary()

    def __str__(self) -> str:
        return f"{self.pod.key}: {self.message}"


Decision = Placement | Unschedulable
