"""The hyper-parameters of every built-in strategy: typed, frozen, validated, and torch-free.

The command line validates a run's strategies against these before torch or Avalanche is imported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from clu.config import check

__all__ = [
    "CLPUConfig",
    "ERFTConfig",
    "ERGAConfig",
    "ERRLConfig",
    "ERSFRonConfig",
    "ERSalUnConfig",
    "ForgetConfig",
    "ReplayConfig",
    "StrategyConfig",
    "UGCLUConfig",
    "UGCLUPaperConfig",
    "UnlearnConfig",
]


@dataclass(frozen=True)
class StrategyConfig:
    """Hyper-parameters shared by every strategy (SGD as DESIGN §6 prescribes)."""

    lr: float = 0.05
    """Learning rate of the shared SGD optimizer."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay."""

    def validate(self) -> None:
        check(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        check(0 <= self.momentum < 1, "momentum", f"must be in [0, 1), got {self.momentum}")
        check(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")


@dataclass(frozen=True)
class ReplayConfig(StrategyConfig):
    """Shared by the replay strategies (``er``, every ``er_*``, ``ugclu``, ``retrain_stream``): one learner."""

    learner: Literal["fast_slow", "joint"] = "fast_slow"
    """How a learn iteration combines the learn batch and a buffer batch: fast_slow = a step on the learn
    batch, then a step on a buffer batch at the post-fast weights; joint = one step on the summed losses."""


@dataclass(frozen=True)
class UnlearnConfig(ReplayConfig):
    """Shared by strategies that run an unlearning phase of their own after the purge."""

    unlearn_iters: int = 100
    """Iterations T of the unlearning phase (one request)."""
    unlearn_lr: float = 0.01
    """Learning rate during the unlearning phase (cosine-decayed to 0 over T)."""
    clip: float = 7.0
    """Gradient-norm clip of the unlearning step (0 = none)."""

    def validate(self) -> None:
        super().validate()
        check(self.unlearn_iters >= 0, "unlearn_iters", f"must be >= 0, got {self.unlearn_iters}")
        check(self.unlearn_lr > 0, "unlearn_lr", f"must be > 0, got {self.unlearn_lr}")
        check(self.clip >= 0, "clip", f"must be >= 0, got {self.clip}")


@dataclass(frozen=True)
class ERFTConfig(UnlearnConfig):
    """Fine-tuning on the retained buffer for ``unlearn_iters`` steps."""


@dataclass(frozen=True)
class ERGAConfig(UnlearnConfig):
    """Plain gradient ascent (no weights, no mask, no replay) on D_U for ``unlearn_iters`` steps."""

    unlearn_iters: int = 5
    """Iterations T of the ascent: plain ascent has a sharp trade-off, T = 5 had the lowest gap on the CPU
    scenarios (longer ascent collapses the model; measurements in strategies/er-ga.toml)."""


@dataclass(frozen=True)
class ERRLConfig(UnlearnConfig):
    """Random relabelling of D_U (labels drawn from the retained classes) jointly with buffer CE."""


@dataclass(frozen=True)
class ERSalUnConfig(UnlearnConfig):
    """SalUn: the mask keeps the (1 - sparsity) most salient weights for the forget loss."""

    sparsity: float = 0.5
    """Fraction of weights frozen (lowest |∇ CE(D_U)|)."""

    def validate(self) -> None:
        super().validate()
        check(0.0 <= self.sparsity < 1.0, "sparsity", f"must be in [0, 1), got {self.sparsity}")


@dataclass(frozen=True)
class ForgetConfig(UnlearnConfig):
    """The unlearn component: objective, adaptive coefficients, saliency mask, fast–slow schedule."""

    forget_loss: Literal["kl_proxy", "ga_weighted"] = "kl_proxy"
    """kl_proxy: descent on KL(q ‖ p) to a proxy of the oracle's output; ga_weighted: weighted ascent."""
    alpha_u: float = 10.0
    """Unlearn coefficient α_U, cosine-decayed over the request's iterations."""
    lam: float = 0.5
    """Inverse-loss exponent λ of the per-sample ascent weights (ga_weighted)."""
    adaptive_weights: bool = True
    """Ablation switch: false = plain ascent (λ = 0)."""
    forget_freq: int = 5
    """Unlearn-only requests: a fast (forget) step every forget_freq iterations; slow steps every one."""
    mask: Literal["balanced", "topk", "none"] = "balanced"
    """Saliency mask M_U on the unlearn term: balanced Fisher ratio, SalUn's top-k of |Σ∇ CE(D_U)|, or none."""
    gamma: float = 1.0
    """Threshold γ of the balanced mask (F_U + ε) / (F_R + ε) ≥ γ."""
    sparsity: float = 0.5
    """topk mask: fraction of weights frozen."""
    fisher_batches: int = 4
    """Mini-batches (of 64) per set for the diagonal Fisher at the start of a request."""
    coefficients: Literal["constant", "proportional"] = "constant"
    """p_L, p_U, p_R: constants 1, or proportional to |D_L|, |D_U|, |buffer|."""
    order: Literal["fast_slow", "joint"] = "fast_slow"
    """Request iterations only (unlearn-only, or a request attached to a learn task): fast_slow = the slow
    (preserve) step at the post-fast weights; joint = one summed step (ablation). Learn iterations: learner."""
    early_stop: bool = False
    """End the unlearning once the forget set's mean loss reaches the validation loss."""

    def validate(self) -> None:
        super().validate()
        check(self.alpha_u >= 0, "alpha_u", f"must be >= 0, got {self.alpha_u}")
        check(self.lam >= 0, "lam", f"must be >= 0, got {self.lam}")
        check(self.forget_freq >= 1, "forget_freq", f"must be >= 1, got {self.forget_freq}")
        check(self.gamma > 0, "gamma", f"must be > 0, got {self.gamma}")
        check(0.0 <= self.sparsity < 1.0, "sparsity", f"must be in [0, 1), got {self.sparsity}")
        check(self.fisher_batches >= 1, "fisher_batches", f"must be >= 1, got {self.fisher_batches}")


@dataclass(frozen=True)
class ERSFRonConfig(ForgetConfig):
    """SFR-on's unlearn-only step (DESIGN §6 reference form), on the replay learner; every default is SFR-on's."""

    forget_loss: Literal["kl_proxy", "ga_weighted"] = "ga_weighted"
    """SFR-on's objective: the adaptive weighted gradient ascent."""
    alpha_u: float = 10.0
    """SFR-on's α_U, scaled from CIFAR-10's 25 (which collapses the digits MLP); the preset holds the tuned value."""
    lam: float = 0.5
    """SFR-on's inverse-loss exponent λ."""
    adaptive_weights: bool = True
    """SFR-on's adaptive per-sample weights."""
    mask: Literal["balanced", "topk", "none"] = "balanced"
    """SFR-on's balanced Fisher-ratio mask."""
    forget_freq: int = 5
    """SFR-on's forget step every 5th iteration."""
    unlearn_iters: int = 100
    """SFR-on's T (1500 on CIFAR-10), scaled down for the CPU scenarios."""
    clip: float = 7.0
    """SFR-on's gradient-norm clip of the forget step."""
    unlearn_lr: float = 0.01
    """SFR-on's learning rate (cosine-decayed)."""
    order: Literal["fast_slow", "joint"] = "fast_slow"
    """SFR-on's fast–slow order: the slow (preserve) step at the post-fast weights."""


@dataclass(frozen=True)
class UGCLUConfig(ForgetConfig):
    """ForgetConfig plus the learn-side mask."""

    learn_mask: bool = False
    """Mask the learn term with M_L = 1[(F_L + ε) / (F_R + ε) ≥ γ_L] (off by default)."""
    gamma_l: float = 1.0
    """Threshold γ_L of the learn mask."""
    attached_schedule: Literal["spread", "every_iteration"] = "spread"
    """A request riding along a learn task: ``spread`` = the unlearn-only forget steps spread evenly over the
    task's iterations, rescaled to the learn lr; ``every_iteration`` = the schedule before the fix, kept as an
    ablation: the forget term in every learn iteration at the learn lr, α_U cosine-decayed over the task."""

    def validate(self) -> None:
        super().validate()
        check(self.gamma_l > 0, "gamma_l", f"must be > 0, got {self.gamma_l}")


@dataclass(frozen=True)
class UGCLUPaperConfig(UGCLUConfig):
    """UG-CLU as the papers describe it: every default is SFR-on's, scaled to the CPU data sets (the scalings
    are in strategies/ugclu-paper.toml); the forget objective is the papers' weighted ascent."""

    forget_loss: Literal["kl_proxy", "ga_weighted"] = "ga_weighted"
    """The papers' objective: adaptive weighted gradient ascent with inverse-loss weights."""


@dataclass(frozen=True)
class CLPUConfig(StrategyConfig):
    """DER++ weights for the main model (also those of the merge of a side model into it)."""

    alpha: float = 0.3
    """Weight of the logit-matching (MSE) terms: DER++ replay, and distillation to a side model's logits."""
    beta: float = 0.5
    """Weight of the label (CE) terms: DER++ replay, and the memory batch of a merge."""

    def validate(self) -> None:
        super().validate()
        check(self.alpha >= 0, "alpha", f"must be >= 0, got {self.alpha}")
        check(self.beta >= 0, "beta", f"must be >= 0, got {self.beta}")
