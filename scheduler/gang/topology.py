"""Where nodes sit: a tree of cluster, zones, racks (switches) and nodes, so that "close" is
defined once. Two nodes are as close as the smallest domain that holds both; a gang's
domains are tried from the tightest (a rack) to the loosest (the cluster)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from scheduler.model.snapshot import Snapshot

ZONE_LABEL = "topology.kubernetes.io/zone"
#: The rack (or leaf switch) label; the synthetic cluster writes it, a site may name its own.
DEFAULT_RACK_LABEL = "slotwise.io/rack"
ROOT = ("cluster",)


class Level(IntEnum):
    NODE = 0
    RACK = 1
    ZONE = 2
    CLUSTER = 3


@dataclass(frozen=True, slots=True)
class Domain:
    level: Level
    name: str
    nodes: np.ndarray  # node indices, ascending


class Topology:
    def __init__(self, snap: Snapshot, rack_label: str = DEFAULT_RACK_LABEL, zone_label: str = ZONE_LABEL):
        import networkx as nx  # a quarter second to import: commands that plan no gang never pay it

        self.graph = nx.DiGraph()  # edges point from a domain to what it contains
        for i, node in enumerate(snap.nodes):
            zone = ("zone", node.labels.get(zone_label, ""))
            # A node without a rack label shares a rack with nobody: it is not known to be close.
            rack = ("rack", zone[1], node.labels.get(rack_label, f"node:{node.name}"))
            self.graph.add_edge(ROOT, zone)
            self.graph.add_edge(zone, rack)
            self.graph.add_edge(rack, ("node", i))
        self._parent = {child: parent for parent, child in self.graph.edges}
        self.domains: tuple[Domain, ...] = tuple(
            Domain(level, "/".join(d[1:]) or "cluster",
                   np.array(sorted(n[1] for n in nx.descendants(self.graph, d) if n[0] == "node"), dtype=np.int64))
            for level, kind in ((Level.RACK, "rack"), (Level.ZONE, "zone"), (Level.CLUSTER, "cluster"))
            for d in sorted(d for d in self.graph if d[0] == kind)
        )

    def _ancestors(self, node: int) -> list[tuple[str, ...]]:
        chain = [("node", node)]
        while chain[-1] != ROOT:
            chain.append(self._parent[chain[-1]])
        return chain

    def level(self, nodes: list[int] | np.ndarray) -> Level:
        """The smallest domain level that holds all ``nodes``: how far apart a gang is."""
        chains = [self._ancestors(int(n)) for n in nodes]
        for level in Level:
            if len({c[level] for c in chains}) <= 1:
                return level
        return Level.CLUSTER

    def distance(self, a: int, b: int) -> int:
        """Hops between two nodes through the tree: 0 same node, 2 same rack, 4 same zone, 6 apart."""
        return 2 * int(self.level([a, b]))
