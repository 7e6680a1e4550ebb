"""runtime/cache/vectors.py: the in-process nearest-neighbour index (real usearch, no mocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.cache.vectors import FLAT_MAX, VectorIndex, unit


def test_unit_normalises_and_refuses_unusable_vectors() -> None:
    v = unit([3.0, 4.0], 2)
    assert v is not None and v.dtype == np.float32
    assert math.isclose(float(np.linalg.norm(v)), 1.0, rel_tol=1e-6)
    assert unit([1.0, 2.0, 3.0], 2) is None  # wrong dimension
    assert unit([0.0, 0.0], 2) is None  # no direction
    assert unit([float("nan"), 1.0], 2) is None
    assert unit([float("inf"), 1.0], 2) is None
    assert unit(["x", "y"], 2) is None


def test_search_returns_cosine_similarity_most_similar_first() -> None:
    index = VectorIndex(4)
    assert index.add(1, [1, 0, 0, 0])
    assert index.add(2, [10, 10, 0, 0])  # not unit: normalised on add
    assert index.add(3, [0, 0, 0, 5])
    found = index.search([2, 0, 0, 0], 3)  # not unit: normalised on search
    assert [label for label, _ in found] == [1, 2, 3]
    assert found[0][1] == pytest.approx(1.0, abs=2e-3)
    assert found[1][1] == pytest.approx(math.sqrt(0.5), abs=2e-3)
    assert found[2][1] == pytest.approx(0.0, abs=2e-3)
    assert len(index) == 3 and 2 in index


def test_remove_replace_and_refused() -> None:
    index = VectorIndex(3)
    assert index.search([1, 0, 0], 5) == []  # empty
    index.add(7, [1, 0, 0])
    index.add(7, [0, 1, 0])  # same label again: replaces the vector
    assert len(index) == 1
    assert index.search([0, 1, 0], 1)[0][0] == 7
    assert index.remove(7) and not index.remove(7)
    assert index.search([0, 1, 0], 1) == []
    assert not index.add(8, [0, 0, 0])
    assert index.search([1, 2], 1) == []  # wrong dimension: nothing matches
    with pytest.raises(ValueError):
        VectorIndex(0)


def test_add_many_and_nearest_neighbour_among_many() -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((2000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(32)
    index.add_many(np.arange(100, 2100), vectors)
    assert len(index) == 2000
    for i in (0, 500, 1999):
        query = vectors[i] + 0.05 * rng.standard_normal(32).astype(np.float32) / math.sqrt(32)
        label, similarity = index.search(query, 4)[0]
        assert label == 100 + i and similarity > 0.99


def test_flat_index_becomes_a_graph_past_flat_max_and_answers_the_same() -> None:
    rng = np.random.default_rng(3)
    n = FLAT_MAX + 40
    vectors = rng.standard_normal((n, 16)).astype(np.float32)
    index = VectorIndex(16)
    for label in range(FLAT_MAX):
        index.add(label, vectors[label])
    assert not index.is_graph and len(index) == FLAT_MAX
    index.remove(3)  # a hole in the flat matrix, filled by the last row
    assert 3 not in index and FLAT_MAX - 1 in index
    assert index.search(vectors[FLAT_MAX - 1], 1)[0][0] == FLAT_MAX - 1
    for label in range(FLAT_MAX, n):
        index.add(label, vectors[label])
    assert index.is_graph and len(index) == n - 1
    for label in (0, 100, FLAT_MAX - 1, n - 1):
        assert index.search(vectors[label], 1)[0][0] == label
    assert 3 not in index
    for label in range(n):
        index.remove(label)
    assert len(index) == 0 and index.search(vectors[0], 3) == []


def test_flat_search_k_larger_and_smaller_than_size() -> None:
    index = VectorIndex(2)
    index.add(1, [1, 0])
    index.add(2, [0, 1])
    index.add(3, [1, 1])
    assert [lb for lb, _ in index.search([1, 0.1], 10)] == [1, 3, 2]
    assert [lb for lb, _ in index.search([1, 0.1], 2)] == [1, 3]
