"""Shared nodes for new OSM buildings: rings of metric coordinates -> rings of node indices.

Mappers' editors expect neighbouring buildings to share nodes where they meet: a vertex of one
building within ``tolerance`` of a vertex of another becomes one node, and a vertex lying on
another building's wall is inserted into that wall. Consecutive repeats and spikes are then
removed, and a ring left with fewer than three distinct nodes, or using a segment twice, is
dropped (``None``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

MIN_RING_NODES = 3


@dataclass
class NodeRings:
    """Node coordinates (metric, [N, 2]) and, per input ring, its node indices (open) or None."""

    xy: np.ndarray
    rings: list
    merged: int  # input vertices merged into a vertex of another ring
    inserted: int  # vertices inserted into another ring's wall


def _merge_vertices(points: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """(node index per point, node coordinates): points closer than ``tolerance`` become one."""
    pairs = cKDTree(points).query_pairs(tolerance, output_type="ndarray")
    n = len(points)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, -1)
    first[labels[::-1]] = np.arange(n)[::-1]  # the first point of each group gives its position
    return labels, points[first]


def _on_segment(xy: np.ndarray, a: np.ndarray, b: np.ndarray, cand: np.ndarray,
                tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Candidates (node indices) within ``tolerance`` of segment a-b, strictly between its ends,
    sorted along it, and their positions t in (0, 1)."""
    d = b - a
    length2 = float(d @ d)
    if length2 == 0 or len(cand) == 0:
        return cand[:0], np.zeros(0)
    p = xy[cand] - a
    t = p @ d / length2
    dist = np.abs(p[:, 0] * d[1] - p[:, 1] * d[0]) / np.sqrt(length2)
    end = tolerance / np.sqrt(length2)
    keep = (dist <= tolerance) & (t > end) & (t < 1 - end)
    order = np.argsort(t[keep])
    return cand[keep][order], t[keep][order]


def share_nodes(rings: list, tolerance: float) -> NodeRings:
    """Node rings for ``rings`` (each an [n, 2] array of metric coordinates, not closed)."""
    sizes = [len(r) for r in rings]
    points = np.concatenate(rings) if rings else np.zeros((0, 2))
    if len(points) == 0:
        return NodeRings(points, [], 0, 0)
    labels, xy = _merge_vertices(points, tolerance)
    ring_of = np.repeat(np.arange(len(rings)), sizes)
    owners = np.unique(np.c_[labels, ring_of], axis=0)
    shared = np.bincount(owners[:, 0], minlength=len(xy))
    merged = int(np.sum(shared[labels] > 1) - np.sum(shared > 1))
    tree = cKDTree(xy)
    out, inserted, start = [], 0, 0
    for size in sizes:
        ids = labels[start:start + size]
        start += size
        nodes = []
        for a_id, b_id in zip(ids, np.roll(ids, -1)):
            nodes.append(a_id)
            a, b = xy[a_id], xy[b_id]
            half = float(np.hypot(*(b - a))) / 2
            cand = np.array(tree.query_ball_point((a + b) / 2, half + tolerance), dtype=int)
            between, _ = _on_segment(xy, a, b, cand[~np.isin(cand, ids)], tolerance)
            nodes += between.tolist()
            inserted += len(between)
        out.append(_clean(nodes))
    return NodeRings(xy, out, merged, inserted)


def _clean(nodes: list):
    """Drop consecutive repeats and spikes (a, b, a -> a), cyclically, until none is left; None
    when fewer than three distinct nodes stay or a segment is still used twice (JOSM's "Way
    contains segment twice")."""
    arr = np.array(nodes)
    while len(arr) >= MIN_RING_NODES:
        keep = arr != np.roll(arr, 1)
        if keep.all():
            spike = np.flatnonzero(np.roll(arr, 1) == np.roll(arr, -1))
            if len(spike) == 0:
                break
            keep[spike[0]] = False  # the tip; the repeat it leaves goes next round
        arr = arr[keep]
    if len(np.unique(arr)) < MIN_RING_NODES:
        return None
    segments = np.sort(np.c_[arr, np.roll(arr, -1)], axis=1)
    return arr.tolist() if len(np.unique(segments, axis=0)) == len(segments) else None
