"""runtime/cache/vectors.py: the in-process nearest-neighbour index (real usearch, no mocks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.cache.vectors import VectorIndex, unit


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
