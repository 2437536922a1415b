"""The four components of the unified update (DESIGN §6), as small pure functions."""

from clu.update.coefficients import cosine_coefficient, set_size_coefficients, should_stop_early
from clu.update.objectives import (
    calibrate_temperature,
    cross_entropy,
    inverse_loss_weights,
    kl_proxy_loss,
    random_labels,
    remove_classes_target,
    tempered_target,
    weighted_ascent_loss,
)
from clu.update.saliency import (
    balanced_mask,
    fisher_diagonal,
    mask_ratio,
    salun_mask,
    topk_mask,
)
from clu.update.step import FastTerm, clip_grad, fast_slow_step, masked_step

__all__ = [
    "FastTerm",
    "balanced_mask",
    "calibrate_temperature",
    "clip_grad",
    "cosine_coefficient",
    "cross_entropy",
    "fast_slow_step",
    "fisher_diagonal",
    "inverse_loss_weights",
    "kl_proxy_loss",
    "mask_ratio",
    "masked_step",
    "random_labels",
    "remove_classes_target",
    "salun_mask",
    "set_size_coefficients",
    "should_stop_early",
    "tempered_target",
    "topk_mask",
    "weighted_ascent_loss",
]
