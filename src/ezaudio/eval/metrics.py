"""Objective metrics as pure functions of features: FD, KL, IS and CLAP score.

They follow the protocol of ``audioldm_eval`` (the toolbox behind the paper's numbers) and
compute everything in float64. Conventions, where a choice had to be made:

* **FD** (Fréchet distance of PANNs 2048-d embeddings): sample means and covariances with
  ``np.cov(rowvar=False)`` (N-1 normalisation), as ``audioldm_eval``. The trace term
  ``tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` is computed without ``scipy.linalg.sqrtm``: from the
  centred features it is the nuclear norm of ``A^T B`` where ``S1 = A A^T``, ``S2 = B B^T``
  (exact even when N < D); from covariances alone it is ``sum sqrt(eig(L^T S2 L))`` with
  ``L = V sqrt(W)`` from ``eigh(S1)``. Eigenvalues under the numerical-rank tolerance
  ``max(eig) * n * eps`` (that of ``numpy.linalg.matrix_rank``) count as 0, and a result
  that rounding pushes below 0 is returned as 0. ``audioldm_eval`` instead takes the real
  part of ``sqrtm(S1 @ S2)``, which agrees on well-conditioned inputs.
* **KL** (``audioldm_eval``'s ``kullback_leibler_divergence_softmax``, the paper's KL): per
  clip ``sum_c p_ref[c] * (log p_ref[c] - log(p_gen[c] + 1e-6))`` with ``p = softmax(logits)``
  over the 527 AudioSet classes, averaged over the clips paired by id; this is
  ``F.kl_div((p_gen + 1e-6).log(), p_ref, reduction="sum") / n``, i.e. KL(reference ||
  generated). The 1e-6 goes inside the log of the generated side only, so identical
  logits give a small negative value (between ``-C * 1e-6`` and 0), not exactly 0.
  ``kind="sigmoid"`` (``kullback_leibler_divergence_sigmoid``) uses the same formula on
  ``sigmoid(logits)``; those do not sum to 1, so it is not a true KL and can be negative.
  Unlike ``audioldm_eval`` (which skips missing ids, or returns -1 without same names), ids
  that do not pair are refused.
* **IS** (``audioldm_eval``/torch-fidelity ``inception_score``): natural log, no epsilon
  (``log p`` from ``log_softmax``, terms with ``p = 0`` count as 0), rows shuffled with
  ``np.random.RandomState(seed).permutation(N)`` (``audioldm_eval`` passes seed 2020, our
  default), split ``i`` is rows ``[i*N//splits, (i+1)*N//splits)``, and the std over splits
  is the population std (``np.std``, ddof 0).
* **CLAP score**: mean cosine similarity of paired text and audio embeddings, rows
  L2-normalised here (as ``audioldm_eval``'s per-clip ``cos_similarity`` averaged).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import numpy as np

from ezaudio.errors import InvalidInputError

KL_EPS = 1e-6
"""Added to the generated side's probabilities inside the log (``audioldm_eval``'s EPS)."""

AUDIOLDM_EVAL_IS_SEED = 2020
"""Shuffle seed ``audioldm_eval`` passes to its inception score."""

MAX_IDS_NAMED = 10
"""How many unpaired ids an error message names before it summarises the rest."""

LogitsById = Mapping[Any, Any] | Iterable[tuple[Any, Any]]

# ---- input checks --------------------------------------------------------------------------


def _as_float64(name: str, value: object) -> np.ndarray:
    """``value`` (array-like or torch tensor) as a float64 array, or an error naming ``name``."""
    if hasattr(value, "detach") and hasattr(value, "double"):  # a torch tensor, any dtype/device
        value = value.detach().cpu().double().numpy()
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{name} must be an array of numbers ({error})") from None


def _check_finite(name: str, array: np.ndarray) -> None:
    bad = int(np.count_nonzero(~np.isfinite(array)))
    if bad:
        raise InvalidInputError(f"{name} contains NaN or inf ({bad} values)")


def _matrix(name: str, value: object, min_rows: int = 1) -> np.ndarray:
    """``value`` as a finite float64 matrix [N, D] with N >= ``min_rows`` and D >= 1."""
    array = _as_float64(name, value)
    if array.ndim != 2:
        raise InvalidInputError(f"{name} must be a 2-D array [N, D], got shape {array.shape}")
    if array.shape[1] < 1:
        raise InvalidInputError(f"{name} has no columns, got shape {array.shape}")
    if array.shape[0] < min_rows:
        raise InvalidInputError(f"{name} has {array.shape[0]} rows, at least {min_rows} are needed")
    _check_finite(name, array)
    return array


def _same_width(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise InvalidInputError(
            f"{name_a} has dimension {a.shape[-1]} but {name_b} has {b.shape[-1]}"
        )


# ---- Fréchet distance ----------------------------------------------------------------------


def gaussian_statistics(features: object) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of ``features`` [N, D], N >= 2, in float64.

    The covariance is ``np.cov(features, rowvar=False)``: normalised by N - 1.
    """
    x = _matrix("features", features, min_rows=2)  # [N, D]
    mean = x.mean(axis=0)  # [D]
    cov = np.atleast_2d(np.cov(x, rowvar=False))  # [D, D]; atleast_2d for D == 1
    return mean, cov


def _psd_eigenvalues(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues [n] and eigenvectors [n, n] of a symmetric PSD matrix, noise set to 0.

    Eigenvalues below ``max(eig) * n * eps`` (``numpy.linalg.matrix_rank``'s tolerance),
    negative rounding noise included, are set to exactly 0.
    """
    eigenvalues, eigenvectors = np.linalg.eigh(matrix)  # ascending; reads the lower triangle
    tolerance = max(float(eigenvalues[-1]), 0.0) * matrix.shape[0] * np.finfo(np.float64).eps
    return np.where(eigenvalues > tolerance, eigenvalues, 0.0), eigenvectors


def _trace_sqrt_from_covariances(s1: np.ndarray, s2: np.ndarray) -> float:
    """``tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` for PSD S1, S2 [D, D], by two eigendecompositions."""
    # S1 = V W V^T, L = V W^{1/2} [D, r] (null directions dropped): S1^{1/2} S2 S1^{1/2}
    # = V (W^{1/2} V^T S2 V W^{1/2}) V^T is similar to L^T S2 L [r, r], so the trace of its
    # square root is sum_i sqrt(eig_i(L^T S2 L)).
    w1, v1 = _psd_eigenvalues(s1)
    kept = w1 > 0
    if not kept.any():
        return 0.0
    root_factor = v1[:, kept] * np.sqrt(w1[kept])  # [D, r]
    inner = root_factor.T @ s2 @ root_factor  # [r, r], symmetric PSD
    inner = 0.5 * (inner + inner.T)
    eigenvalues, _ = _psd_eigenvalues(inner)
    return float(np.sqrt(eigenvalues).sum())


def _trace_sqrt_from_features(centred_a: np.ndarray, centred_b: np.ndarray) -> float:
    """``tr((S1^{1/2} S2 S1^{1/2})^{1/2})`` from centred features [N, D] and [M, D].

    With A = X_a^T / sqrt(N-1) [D, N] and B = X_b^T / sqrt(M-1) [D, M] (S1 = A A^T,
    S2 = B B^T), the nonzero eigenvalues of S1^{1/2} S2 S1^{1/2} are those of S1 S2 =
    A (A^T B B^T), i.e. of (A^T B)(A^T B)^T: the squared singular values of A^T B.
    """
    n, m = centred_a.shape[0], centred_b.shape[0]
    # tr(...)^{1/2} = ||A^T B||_* = sum of singular values of X_a X_b^T / sqrt((N-1)(M-1))
    cross = (centred_a @ centred_b.T) / np.sqrt((n - 1) * (m - 1))  # [N, M]
    return float(np.linalg.svd(cross, compute_uv=False).sum())


def _frechet_from_parts(
    mean_gap_sq: float, trace_1: float, trace_2: float, trace_sqrt: float
) -> float:
    # FD = ||mu1 - mu2||^2 + tr(S1) + tr(S2) - 2 tr((S1^{1/2} S2 S1^{1/2})^{1/2}), >= 0
    return max(mean_gap_sq + trace_1 + trace_2 - 2.0 * trace_sqrt, 0.0)


def frechet_distance_from_statistics(mu1: object, s1: object, mu2: object, s2: object) -> float:
    """Fréchet distance between N(mu1, s1) and N(mu2, s2): means [D], covariances [D, D].

    The covariances must be symmetric PSD, as ``np.cov`` gives them; that is not checked.
    """
    mean_1, mean_2 = _as_float64("mu1", mu1), _as_float64("mu2", mu2)
    cov_1, cov_2 = _as_float64("s1", s1), _as_float64("s2", s2)
    for name, mean in (("mu1", mean_1), ("mu2", mean_2)):
        if mean.ndim != 1 or mean.size < 1:
            raise InvalidInputError(f"{name} must be a 1-D array [D], got shape {mean.shape}")
        _check_finite(name, mean)
    _same_width("mu1", mean_1, "mu2", mean_2)
    dim = mean_1.shape[0]
    for name, cov in (("s1", cov_1), ("s2", cov_2)):
        if cov.shape != (dim, dim):
            raise InvalidInputError(f"{name} must have shape ({dim}, {dim}), got {cov.shape}")
        _check_finite(name, cov)
    gap = mean_1 - mean_2  # [D]
    trace_sqrt = _trace_sqrt_from_covariances(cov_1, cov_2)
    return _frechet_from_parts(
        float(gap @ gap), float(np.trace(cov_1)), float(np.trace(cov_2)), trace_sqrt
    )


def frechet_distance(features_a: object, features_b: object) -> float:
    """Fréchet distance between Gaussians fitted to ``features_a`` [N, D] and ``features_b`` [M, D].

    Both sides need at least 2 rows. When N * M <= D * D (e.g. 900 clips of 2048-d PANNs
    embeddings) the trace term comes from the features themselves (one N x M SVD), otherwise
    from the D x D covariances (two eigendecompositions); both are exact for rank-deficient
    covariances.
    """
    a = _matrix("features_a", features_a, min_rows=2)  # [N, D]
    b = _matrix("features_b", features_b, min_rows=2)  # [M, D]
    _same_width("features_a", a, "features_b", b)
    (n, dim), m = a.shape, b.shape[0]
    if n * m > dim * dim:
        return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)  # [D]
    centred_a, centred_b = a - mean_a, b - mean_b  # [N, D], [M, D]
    gap = mean_a - mean_b
    # tr(S) = ||X_centred||_F^2 / (N - 1)
    trace_a = float(np.square(centred_a).sum()) / (n - 1)
    trace_b = float(np.square(centred_b).sum()) / (m - 1)
    trace_sqrt = _trace_sqrt_from_features(centred_a, centred_b)
    return _frechet_from_parts(float(gap @ gap), trace_a, trace_b, trace_sqrt)


# ---- probabilities from logits -------------------------------------------------------------


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """log softmax over the last axis, stable for any finite logits."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _log_sigmoid(logits: np.ndarray) -> np.ndarray:
    # log sigmoid(x) = -log(1 + e^{-x}) = min(x, 0) - log1p(e^{-|x|})
    return np.minimum(logits, 0.0) - np.log1p(np.exp(-np.abs(logits)))


# ---- KL divergence -------------------------------------------------------------------------


def _as_logits_by_id(name: str, logits: LogitsById) -> dict[Any, Any]:
    """A mapping id -> logits from a mapping or from (id, logits) pairs; duplicates refused."""
    if isinstance(logits, Mapping):
        return dict(logits)
    by_id: dict[Any, Any] = {}
    duplicates = []
    try:
        for clip_id, row in logits:
            if clip_id in by_id:
                duplicates.append(clip_id)
            by_id[clip_id] = row
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"{name} must be a mapping id -> logits or a list of (id, logits) pairs"
        ) from None
    if duplicates:
        raise InvalidInputError(f"{name} repeats ids: {_name_ids(duplicates)}")
    return by_id


def _name_ids(ids: list[Any]) -> str:
    """Up to ``MAX_IDS_NAMED`` ids, comma-separated, then how many more there are."""
    shown = ", ".join(str(clip_id) for clip_id in ids[:MAX_IDS_NAMED])
    rest = len(ids) - MAX_IDS_NAMED
    return f"{shown} (and {rest} more)" if rest > 0 else shown


def _paired_logits(
    reference: dict[Any, Any], generated: dict[Any, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """Reference and generated logits [n, C] stacked in reference order, ids matched."""
    if not reference:
        raise InvalidInputError("reference_logits is empty")
    missing_generated = [clip_id for clip_id in reference if clip_id not in generated]
    missing_reference = [clip_id for clip_id in generated if clip_id not in reference]
    if missing_generated or missing_reference:
        parts = []
        if missing_generated:
            parts.append(
                f"{len(missing_generated)} reference ids have no generated clip: "
                f"{_name_ids(missing_generated)}"
            )
        if missing_reference:
            parts.append(
                f"{len(missing_reference)} generated ids have no reference clip: "
                f"{_name_ids(missing_reference)}"
            )
        raise InvalidInputError("KL needs clips paired by id; " + "; ".join(parts))
    ids = list(reference)
    stacked = []
    for name, side in (("reference_logits", reference), ("generated_logits", generated)):
        rows = [_as_float64(f"{name}[{clip_id!r}]", side[clip_id]) for clip_id in ids]
        widths = {row.shape for row in rows}
        if len(widths) != 1 or rows[0].ndim != 1 or rows[0].size < 1:
            raise InvalidInputError(
                f"{name} must hold 1-D logits [C] of one length, got shapes {sorted(widths)}"
            )
        matrix = np.stack(rows)  # [n, C]
        _check_finite(name, matrix)
        stacked.append(matrix)
    _same_width("reference_logits", stacked[0], "generated_logits", stacked[1])
    return stacked[0], stacked[1]


def kl_divergence(
    reference_logits: LogitsById,
    generated_logits: LogitsById,
    kind: Literal["softmax", "sigmoid"] = "softmax",
) -> float:
    """Mean KL(reference || generated) over clips paired by id, as ``audioldm_eval``.

    Each side maps a clip id to its classifier logits [C] (PANNs: the 527 AudioSet logits
    before the sigmoid); lists of (id, logits) pairs are accepted too. Every id must appear
    on both sides. ``kind`` picks the probabilities: ``"softmax"`` (the paper's KL) or
    ``"sigmoid"``.
    """
    if kind not in ("softmax", "sigmoid"):
        raise InvalidInputError(f"kind must be 'softmax' or 'sigmoid', got {kind!r}")
    reference = _as_logits_by_id("reference_logits", reference_logits)
    generated = _as_logits_by_id("generated_logits", generated_logits)
    ref, gen = _paired_logits(reference, generated)  # [n, C] each
    log_probs = _log_softmax if kind == "softmax" else _log_sigmoid
    log_p_ref = log_probs(ref)  # [n, C], exact even where p_ref underflows
    p_ref = np.exp(log_p_ref)
    p_gen = np.exp(log_probs(gen))
    # KL_i = sum_c p_ref * (log p_ref - log(p_gen + 1e-6)); F.kl_div(..., "sum") / n
    per_clip = (p_ref * (log_p_ref - np.log(p_gen + KL_EPS))).sum(axis=1)  # [n]
    return float(per_clip.mean())


# ---- Inception score -----------------------------------------------------------------------


def _split_kl_to_marginal(probs: np.ndarray, log_probs: np.ndarray) -> float:
    """mean_x KL(p(y|x) || p(y)) over the rows [n, C] of one split, p(y) = their mean."""
    marginal = probs.mean(axis=0, keepdims=True)  # [1, C]
    # p(y) = 0 only where every p(y|x) = 0: those terms are 0 (0 log 0 = 0), so log 1 there
    log_marginal = np.log(np.where(marginal > 0, marginal, 1.0))  # [1, C]
    # KL = sum_c p(y|x) (log p(y|x) - log p(y)); log p(y|x) from log_softmax is finite
    return float((probs * (log_probs - log_marginal)).sum(axis=1).mean())


def inception_score(
    logits: object, splits: int = 10, shuffle_seed: int | None = AUDIOLDM_EVAL_IS_SEED
) -> tuple[float, float]:
    """Inception score (mean, std over ``splits``) of classifier ``logits`` [N, C].

    IS = exp(mean_x KL(p(y|x) || p(y))) per split, natural log, p = softmax(logits), p(y)
    the split's mean. Rows are shuffled first with ``np.random.RandomState(shuffle_seed)``
    (``None``: kept in order); N must be at least ``splits``.
    """
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise InvalidInputError(f"splits must be a positive integer, got {splits!r}")
    x = _matrix("logits", logits, min_rows=int(splits))  # [N, C]
    n = x.shape[0]
    if shuffle_seed is not None:
        x = x[np.random.RandomState(shuffle_seed).permutation(n)]
    log_probs = _log_softmax(x)  # [N, C]
    probs = np.exp(log_probs)
    scores = []
    for i in range(splits):
        rows = slice(i * n // splits, (i + 1) * n // splits)
        scores.append(np.exp(_split_kl_to_marginal(probs[rows], log_probs[rows])))
    return float(np.mean(scores)), float(np.std(scores))


# ---- CLAP score ----------------------------------------------------------------------------


def _unit_rows(name: str, x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # [N, 1]
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise InvalidInputError(f"{name} has all-zero rows (no direction): {_name_ids(zero)}")
    return x / norms


def clap_score(text_embeddings: object, audio_embeddings: object) -> float:
    """Mean cosine similarity of paired rows of ``text_embeddings`` and ``audio_embeddings`` [N, D].

    Rows are L2-normalised here, so any scale is fine; row i of one side pairs row i of the
    other.
    """
    text = _matrix("text_embeddings", text_embeddings)  # [N, D]
    audio = _matrix("audio_embeddings", audio_embeddings)  # [N, D]
    if text.shape != audio.shape:
        raise InvalidInputError(
            f"text_embeddings {text.shape} and audio_embeddings {audio.shape} must match"
        )
    # cos_i = <t_i, a_i> / (|t_i| |a_i|)
    cosines = (_unit_rows("text_embeddings", text) * _unit_rows("audio_embeddings", audio)).sum(1)
    return float(cosines.mean())
