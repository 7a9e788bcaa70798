"""The CAM family as TensorFlow math on one batch: each method's channel weights (or
per-pixel weights) from the feature map ``A`` ``[B, h, w, C]`` and what the method
needs besides (the gradient ``G = dS/dA`` of the class score ``S`` before the softmax,
or per-channel scores of extra forward passes), and the map ``[B, h, w]`` float32 at
the layer's resolution. All are graph-safe and batched.

With ``sum_ij`` a sum over the ``h x w`` positions and ``relu(x) = max(x, 0)``:

==================  ==========================================================================
``gradcam``         ``w_c = mean_ij G_c``; ``relu(sum_c w_c A_c)`` (Selvaraju et al., ICCV 2017)
``gradcam_plus_plus`` ``a_cij = G^2 / (2 G^2 + sum_ij(A_c) G^3 + 1e-6)`` (0 where ``G = 0``),
                    ``w_c = sum_ij a_cij relu(G_cij)``; ``relu(sum_c w_c A_c)``
                    (Chattopadhyay et al., WACV 2018, with the exponential-score closed form)
``xgradcam``        ``w_c = sum_ij(G_c A_c) / (sum_ij A_c + 1e-7)``; ``relu(sum_c w_c A_c)``
                    (Fu et al., BMVC 2020)
``layercam``        ``relu(sum_c relu(G_c) A_c)`` (Jiang et al., TIP 2021)
``scorecam``        ``M_c`` = ``A_c`` upsampled to the input (bilinear, corners aligned) and
                    min-max normalised (``/ (max - min + 1e-8)``); ``s_c = S(x * M_c)``;
                    ``w = softmax_c(s)``; ``relu(sum_c w_c A_c)`` (Wang et al., CVPRW 2020)
``eigencam``        ``relu(X v_1)`` with ``X`` the ``[hw, C]`` features centred over
                    positions and ``v_1`` its first right singular vector, signed so that
                    the projection's largest magnitude is positive (Bany Muhammad & Yeasin,
                    IJCNN 2020; sign rule of Seg-Eigen-CAM's Eq. 13)
``ablationcam``     ``s_c = S`` with channel ``c`` of ``A`` set to 0; ``w_c = (S - s_c) / S``;
                    ``relu(sum_c w_c A_c)`` (Desai & Ramaswamy, WACV 2020)
==================  ==========================================================================

The constants (``1e-6``, ``1e-7``, ``1e-8``, corner-aligned upsampling, the softmax of
raw scores) are pytorch-grad-cam's, so that ``scripts/cam_parity.py`` can compare maps.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

__all__ = ["weighted_sum", "gradcam", "gradcam_plus_plus", "xgradcam", "layercam",
           "eigencam", "score_weights", "ablation_weights", "upsample_matrix",
           "normalized_masks", "channel_pairs"]

GRADCAM_PP_EPS = 1e-6
XGRADCAM_EPS = 1e-7
SCORECAM_EPS = 1e-8


def _f32(x):
    return tf.cast(tf.convert_to_tensor(x), tf.float32)


def weighted_sum(features, weights):
    """``sum_c weights[b, c] * features[b, :, :, c]``: ``[B, h, w]`` float32 (no ReLU)."""
    return tf.einsum("bhwc,bc->bhw", _f32(features), _f32(weights))


def gradcam(features, grads):
    """Grad-CAM ``[B, h, w]``."""
    weights = tf.reduce_mean(_f32(grads), axis=[1, 2])
    return tf.nn.relu(weighted_sum(features, weights))


def gradcam_plus_plus(features, grads):
    """Grad-CAM++ ``[B, h, w]``."""
    a, g = _f32(features), _f32(grads)
    g2 = g * g
    g3 = g2 * g
    total = tf.reduce_sum(a, axis=[1, 2], keepdims=True)
    alpha = g2 / (2.0 * g2 + total * g3 + GRADCAM_PP_EPS)
    alpha = tf.where(tf.not_equal(g, 0.0), alpha, tf.zeros_like(alpha))
    weights = tf.reduce_sum(tf.nn.relu(g) * alpha, axis=[1, 2])
    return tf.nn.relu(weighted_sum(a, weights))


def xgradcam(features, grads):
    """XGrad-CAM ``[B, h, w]``."""
    a, g = _f32(features), _f32(grads)
    weights = tf.reduce_sum(g * a, axis=[1, 2]) / (tf.reduce_sum(a, axis=[1, 2]) + XGRADCAM_EPS)
    return tf.nn.relu(weighted_sum(a, weights))


def layercam(features, grads):
    """LayerCAM ``[B, h, w]``."""
    return tf.nn.relu(tf.reduce_sum(tf.nn.relu(_f32(grads)) * _f32(features), axis=-1))


def eigencam(features):
    """Eigen-CAM ``[B, h, w]``: the feature map projected on its first principal component."""
    a = _f32(features)
    shape = tf.shape(a)
    x = tf.reshape(a, [shape[0], shape[1] * shape[2], shape[3]])
    x = x - tf.reduce_mean(x, axis=1, keepdims=True)
    _, _, v = tf.linalg.svd(x, full_matrices=False)
    projection = tf.einsum("bnc,bc->bn", x, v[:, :, 0])
    flip = tf.abs(tf.reduce_min(projection, axis=1)) > tf.abs(tf.reduce_max(projection, axis=1))
    projection = tf.where(flip[:, None], -projection, projection)
    return tf.nn.relu(tf.reshape(projection, shape[:3]))


def score_weights(scores):
    """Score-CAM's channel weights: ``softmax`` over channels of ``scores`` ``[B, C]``."""
    return tf.nn.softmax(_f32(scores), axis=-1)


def ablation_weights(score, ablated):
    """Ablation-CAM's channel weights ``(S - s_c) / S``: ``score`` ``[B]``, ``ablated`` ``[B, C]``."""
    score = _f32(score)[:, None]
    return (score - _f32(ablated)) / score


def upsample_matrix(size_out: int, size_in: int) -> np.ndarray:
    """``[size_out, size_in]`` float32 matrix of 1-D bilinear interpolation with aligned
    corners (output ``i`` samples input position ``i (size_in - 1) / (size_out - 1)``),
    as ``torch.nn.UpsamplingBilinear2d``."""
    m = np.zeros((size_out, size_in), np.float64)
    if size_in == 1 or size_out == 1:
        m[:, 0] = 1.0
        return m.astype(np.float32)
    pos = np.arange(size_out) * (size_in - 1) / (size_out - 1)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, size_in - 1)
    hi = np.minimum(lo + 1, size_in - 1)
    frac = pos - lo
    rows = np.arange(size_out)
    np.add.at(m, (rows, lo), 1.0 - frac)
    np.add.at(m, (rows, hi), frac)
    return m.astype(np.float32)


def normalized_masks(maps, rows, cols):
    """Score-CAM masks: ``maps`` ``[N, h, w]`` upsampled with ``rows`` ``[H, h]`` and
    ``cols`` ``[W, w]`` (`upsample_matrix`), each min-max normalised: ``[N, H, W]``."""
    up = tf.einsum("Hh,nhw,Ww->nHW", _f32(rows), _f32(maps), _f32(cols))
    lo = tf.reduce_min(up, axis=[1, 2], keepdims=True)
    hi = tf.reduce_max(up, axis=[1, 2], keepdims=True)
    return (up - lo) / (hi - lo + SCORECAM_EPS)


def channel_pairs(start, stop, num_channels):
    """The ``(image, channel)`` pairs ``start .. stop - 1`` of the ``B x C`` grid
    (row-major): two int32 vectors."""
    flat = tf.range(start, stop, dtype=tf.int32)
    return flat // num_channels, flat % num_channels
