"""Tests of the evaluation metrics (FD, KL, IS, CLAP score) against closed forms and scipy."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ezaudio.errors import InvalidInputError
from ezaudio.eval.metrics import (
    KL_EPS,
    clap_score,
    frechet_distance,
    frechet_distance_from_statistics,
    gaussian_statistics,
    inception_score,
    kl_divergence,
)

# ---- helpers -------------------------------------------------------------------------------


def scipy_frechet(mu1, s1, mu2, s2) -> float:
    """audioldm_eval's formula: real part of scipy.linalg.sqrtm(S1 @ S2)."""
    root = scipy.linalg.sqrtm(s1 @ s2)
    gap = mu1 - mu2
    return float(gap @ gap + np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real)


def population_frechet(mu1, s1, mu2, s2) -> float:
    """||mu1-mu2||^2 + tr(S1 + S2 - 2 (S1^{1/2} S2 S1^{1/2})^{1/2}) with scipy square roots."""
    root_1 = scipy.linalg.sqrtm(s1).real
    middle = scipy.linalg.sqrtm(root_1 @ s2 @ root_1).real
    gap = mu1 - mu2
    return float(gap @ gap + np.trace(s1 + s2 - 2 * middle))


def random_spd(rng: np.random.Generator, dim: int) -> np.ndarray:
    factor = rng.normal(size=(dim, dim))
    return factor @ factor.T / dim + 0.1 * np.eye(dim)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


# ---- Fréchet distance ----------------------------------------------------------------------


def test_fd_of_identical_sets_is_zero():
    rng = np.random.default_rng(0)
    full_rank = rng.normal(size=(200, 8))
    rank_deficient = rng.normal(size=(20, 64))
    assert frechet_distance(full_rank, full_rank) == pytest.approx(0, abs=1e-6)
    assert frechet_distance(rank_deficient, rank_deficient) == pytest.approx(0, abs=1e-6)
    stats = gaussian_statistics(rank_deficient)
    assert frechet_distance_from_statistics(*stats, *stats) == pytest.approx(0, abs=1e-6)


def test_gaussian_statistics_are_mean_and_unbiased_covariance():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 5))
    mean, cov = gaussian_statistics(x)
    centred = x - x.mean(axis=0)
    np.testing.assert_allclose(mean, x.mean(axis=0))
    np.testing.assert_allclose(cov, centred.T @ centred / 29)
    assert gaussian_statistics(x[:, :1])[1].shape == (1, 1)


def test_fd_of_diagonal_gaussians_is_sum_of_squared_root_gaps():
    # diagonal S1 = diag(a), S2 = diag(b): FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 0.25, 9.0]), np.array([2.0, 1.0, 0.25, 0.0])
    mu1, mu2 = np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 0.0, 3.0])
    expected = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    got = frechet_distance_from_statistics(mu1, np.diag(a), mu2, np.diag(b))
    assert got == pytest.approx(expected, rel=1e-12)


def test_fd_matches_closed_form_for_full_covariances():
    rng = np.random.default_rng(2)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    s1, s2 = random_spd(rng, 5), random_spd(rng, 5)
    expected = population_frechet(mu1, s1, mu2, s2)
    assert frechet_distance_from_statistics(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)


def test_fd_of_many_draws_approaches_population_value():
    rng = np.random.default_rng(3)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.0])
    s1, s2 = random_spd(rng, 3), random_spd(rng, 3)
    expected = population_frechet(mu1, s1, mu2, s2)
    draws_1 = rng.multivariate_normal(mu1, s1, size=200_000)
    draws_2 = rng.multivariate_normal(mu2, s2, size=200_000)
    assert frechet_distance(draws_1, draws_2) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize(("n", "m", "dim"), [(40, 50, 6), (300, 200, 16), (7, 9, 3)])
def test_fd_agrees_with_scipy_sqrtm_on_full_rank_cases(n, m, dim):
    rng = np.random.default_rng(n)
    a = rng.normal(size=(n, dim))
    b = rng.normal(size=(m, dim)) @ random_spd(rng, dim) + 0.3
    expected = scipy_frechet(*gaussian_statistics(a), *gaussian_statistics(b))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)
    from_stats = frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    assert from_stats == pytest.approx(expected, rel=1e-6)


def test_fd_agrees_with_scipy_sqrtm_when_rank_deficient():
    # N, M < D: both covariances are singular, the case where sqrtm(S1 @ S2) struggles
    rng = np.random.default_rng(4)
    a = rng.normal(size=(12, 40))
    b = 0.8 * rng.normal(size=(15, 40)) + 0.2
    from_features = frechet_distance(a, b)
    from_stats = frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    expected = scipy_frechet(*gaussian_statistics(a), *gaussian_statistics(b))
    assert from_features == pytest.approx(expected, rel=1e-6)
    assert from_stats == pytest.approx(from_features, rel=1e-9)


def test_fd_of_shifted_copy_is_squared_shift():
    rng = np.random.default_rng(5)
    a = rng.normal(size=(10, 30))  # rank-deficient: same covariance, mean moved
    shift = rng.normal(size=30)
    assert frechet_distance(a, a + shift) == pytest.approx(float(shift @ shift), rel=1e-9)


finite_floats = st.floats(-100, 100, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def feature_pairs(draw):
    dim = draw(st.integers(1, 6))
    a = draw(arrays(np.float64, (draw(st.integers(2, 8)), dim), elements=finite_floats))
    b = draw(arrays(np.float64, (draw(st.integers(2, 8)), dim), elements=finite_floats))
    return a, b


@settings(max_examples=150, deadline=None)
@given(feature_pairs())
def test_fd_is_symmetric_non_negative_and_path_independent(pair):
    a, b = pair
    forward, backward = frechet_distance(a, b), frechet_distance(b, a)
    scale = 1.0 + float(np.square(a).sum() + np.square(b).sum())
    assert forward >= 0
    assert forward == pytest.approx(backward, abs=1e-9 * scale)
    from_stats = frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    assert from_stats >= 0
    assert from_stats == pytest.approx(forward, abs=1e-6 * scale)


def test_fd_of_900_by_2048_features_takes_seconds():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(900, 2048)).astype(np.float32)
    b = (1.1 * rng.normal(size=(900, 2048)) + 0.05).astype(np.float32)
    start = time.perf_counter()
    value = frechet_distance(a, b)
    elapsed = time.perf_counter() - start
    assert elapsed < 20, f"FD on 900 x 2048 took {elapsed:.1f} s"
    # the covariance path (2048 x 2048 eigendecompositions) agrees at full size
    from_stats = frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    assert from_stats == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize(
    ("a", "b", "fragment"),
    [
        (np.zeros((1, 3)), np.zeros((4, 3)), "at least 2"),
        (np.zeros((4, 3)), np.zeros((4, 2)), "dimension 3"),
        (np.zeros(5), np.zeros((4, 5)), "2-D"),
        (np.array([[0.0, np.nan], [1.0, 2.0]]), np.zeros((4, 2)), "NaN or inf"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), np.zeros((4, 2)), "NaN or inf"),
        ([["a", "b"], ["c", "d"]], np.zeros((4, 2)), "array of numbers"),
    ],
)
def test_fd_refuses_bad_features(a, b, fragment):
    with pytest.raises(InvalidInputError, match=fragment) as caught:
        frechet_distance(a, b)
    assert "\n" not in str(caught.value)


def test_fd_from_statistics_refuses_mismatched_shapes():
    with pytest.raises(InvalidInputError, match="s2 must have shape"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(InvalidInputError, match="mu1 has dimension 3"):
        frechet_distance_from_statistics(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


# ---- KL divergence -------------------------------------------------------------------------


def hand_kl(ref_logits, gen_logits, probs) -> float:
    """Sum over classes of p_ref * (log p_ref - log(p_gen + 1e-6)), averaged over clips."""
    total = 0.0
    for r, g in zip(ref_logits, gen_logits):
        p, q = probs(np.asarray(r, float)), probs(np.asarray(g, float))
        total += sum(pc * (math.log(pc) - math.log(qc + 1e-6)) for pc, qc in zip(p, q))
    return total / len(ref_logits)


def test_kl_softmax_matches_hand_computation():
    # one clip: p_ref = softmax([0, ln 3]) = [1/4, 3/4], p_gen = softmax([0, 0]) = [1/2, 1/2]
    got = kl_divergence({"a": [0.0, math.log(3)]}, {"a": [0.0, 0.0]})
    expected = 0.25 * math.log(0.25 / (0.5 + KL_EPS)) + 0.75 * math.log(0.75 / (0.5 + KL_EPS))
    assert got == pytest.approx(expected, rel=1e-12)
    # two clips with 3 classes, paired by id whatever the order
    reference = {"x": [1.0, 2.0, 3.0], "y": [0.0, -1.0, 4.0]}
    generated = {"y": [2.0, 0.0, 1.0], "x": [3.0, 2.0, 1.0]}
    expected = hand_kl([reference["x"], reference["y"]], [generated["x"], generated["y"]], softmax)
    assert kl_divergence(reference, generated) == pytest.approx(expected, rel=1e-12)


def test_kl_accepts_lists_of_pairs():
    reference = [("x", [1.0, 2.0, 3.0]), ("y", [0.0, -1.0, 4.0])]
    generated = [("y", [2.0, 0.0, 1.0]), ("x", [3.0, 2.0, 1.0])]
    assert kl_divergence(reference, generated) == pytest.approx(
        kl_divergence(dict(reference), dict(generated)), rel=1e-15
    )


def test_kl_of_identical_logits_is_zero_up_to_the_epsilon():
    rng = np.random.default_rng(7)
    logits = {i: rng.normal(size=527) * 3 for i in range(5)}
    value = kl_divergence(logits, logits)
    # p log(p / (p + 1e-6)) is in (-1e-6, 0]: slightly negative, at most C * 1e-6 in size
    assert -527 * KL_EPS <= value <= 0
    assert abs(value) < 1e-3


def test_kl_is_not_symmetric():
    a = {"c": [4.0, 0.0, 0.0]}
    b = {"c": [0.0, 0.0, 0.0]}
    assert kl_divergence(a, b) != pytest.approx(kl_divergence(b, a), rel=1e-3)


def test_kl_survives_underflowing_probabilities():
    # softmax of a 1000-logit gap underflows to exactly 0 for the other classes: no NaN
    value = kl_divergence({"a": [1000.0, 0.0, 0.0]}, {"a": [0.0, 1000.0, 0.0]})
    assert math.isfinite(value)
    assert value == pytest.approx(-math.log(KL_EPS), rel=1e-9)


def test_kl_sigmoid_matches_its_hand_computation_and_differs_from_softmax():
    reference = {"x": [1.0, -2.0, 0.5], "y": [0.0, 3.0, -1.0]}
    generated = {"x": [0.0, 1.0, 2.0], "y": [-1.0, 2.0, 0.0]}
    expected = hand_kl([reference["x"], reference["y"]], [generated["x"], generated["y"]], sigmoid)
    got = kl_divergence(reference, generated, kind="sigmoid")
    assert got == pytest.approx(expected, rel=1e-12)
    assert got != pytest.approx(kl_divergence(reference, generated), rel=1e-3)


def test_kl_refuses_unpaired_ids_and_names_them():
    reference = {f"ref{i}": [0.0, 1.0] for i in range(15)} | {"both": [0.0, 0.0]}
    generated = {"both": [1.0, 0.0], "only_gen": [0.0, 0.0]}
    with pytest.raises(InvalidInputError) as caught:
        kl_divergence(reference, generated)
    message = str(caught.value)
    assert "\n" not in message
    assert "15 reference ids" in message and "ref0" in message and "and 5 more" in message
    assert "only_gen" in message and "both" not in message


@pytest.mark.parametrize(
    ("reference", "generated", "kind", "fragment"),
    [
        ({"a": [0.0, 1.0]}, {"a": [0.0, 1.0]}, "relu", "kind must be"),
        ({}, {}, "softmax", "empty"),
        ({"a": [0.0, 1.0]}, {"a": [0.0, 1.0, 2.0]}, "softmax", "dimension 2"),
        ({"a": [0.0, 1.0], "b": [0.0]}, {"a": [0.0, 1.0], "b": [0.0]}, "softmax", "one length"),
        ({"a": [0.0, np.nan]}, {"a": [0.0, 1.0]}, "softmax", "NaN or inf"),
        ([("a", [0.0]), ("a", [1.0])], {"a": [0.0]}, "softmax", "repeats ids: a"),
    ],
)
def test_kl_refuses_bad_input(reference, generated, kind, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        kl_divergence(reference, generated, kind=kind)


# ---- Inception score -----------------------------------------------------------------------


def test_is_of_identical_predictions_is_one():
    logits = np.tile(np.array([[3.0, -1.0, 0.5, 2.0]]), (40, 1))
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("k", [2, 5, 10])
def test_is_of_k_equally_used_confident_classes_is_k(k):
    num_classes = 527
    logits = np.zeros((10 * k, num_classes))
    logits[np.arange(10 * k), np.arange(10 * k) % k] = 50.0  # one-hot-like, each class 10x
    mean, std = inception_score(logits, splits=1)
    assert mean == pytest.approx(k, rel=1e-9)
    assert std == 0.0
    # in order, every split of 10 rows... holds each class equally when k divides it
    if 10 % k == 0:
        mean, std = inception_score(logits, splits=k, shuffle_seed=None)
        assert mean == pytest.approx(k, rel=1e-9)
        assert std == pytest.approx(0.0, abs=1e-9)


def test_is_matches_audioldm_eval_formula():
    rng = np.random.default_rng(8)
    logits = rng.normal(size=(53, 12)) * 2
    mean, std = inception_score(logits, splits=4, shuffle_seed=2020)
    shuffled = logits[np.random.RandomState(2020).permutation(53)]
    probs = np.exp(shuffled) / np.exp(shuffled).sum(axis=1, keepdims=True)
    scores = []
    for i in range(4):
        p = probs[i * 53 // 4 : (i + 1) * 53 // 4]
        kl = (p * (np.log(p) - np.log(p.mean(axis=0, keepdims=True)))).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    assert mean == pytest.approx(np.mean(scores), rel=1e-12)
    assert std == pytest.approx(np.std(scores), rel=1e-9)


def test_is_handles_underflowing_probabilities():
    logits = np.zeros((20, 4))
    logits[:, 0] = 2000.0  # other classes underflow to probability 0
    logits[10:, 0], logits[10:, 1] = 0.0, 2000.0
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(2.0, rel=1e-12)


@pytest.mark.parametrize(
    ("logits", "splits", "fragment"),
    [
        (np.zeros((5, 3)), 10, "at least 10"),
        (np.zeros((5, 3)), 0, "positive integer"),
        (np.zeros((5, 3)), 2.5, "positive integer"),
        (np.zeros(5), 1, "2-D"),
        (np.full((5, 3), np.inf), 1, "NaN or inf"),
    ],
)
def test_is_refuses_bad_input(logits, splits, fragment):
    with pytest.raises(InvalidInputError, match=fragment):
        inception_score(logits, splits=splits)


# ---- CLAP score ----------------------------------------------------------------------------


def test_clap_score_of_identical_and_opposite_rows():
    rng = np.random.default_rng(9)
    text = rng.normal(size=(6, 16))
    assert clap_score(text, text) == pytest.approx(1.0, abs=1e-12)
    assert clap_score(text, -text) == pytest.approx(-1.0, abs=1e-12)


def test_clap_score_is_scale_invariant_and_pairs_rows():
    rng = np.random.default_rng(10)
    text, audio = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
    scales = rng.uniform(0.1, 10, size=(5, 1))
    base = clap_score(text, audio)
    assert clap_score(text * scales, audio * 3.0) == pytest.approx(base, rel=1e-12)
    expected = np.mean(
        [t @ a / (np.linalg.norm(t) * np.linalg.norm(a)) for t, a in zip(text, audio)]
    )
    assert base == pytest.approx(expected, rel=1e-12)


def test_clap_score_refuses_bad_input():
    with pytest.raises(InvalidInputError, match="must match"):
        clap_score(np.ones((3, 4)), np.ones((2, 4)))
    with pytest.raises(InvalidInputError, match="all-zero rows"):
        clap_score(np.ones((3, 4)), np.zeros((3, 4)))
