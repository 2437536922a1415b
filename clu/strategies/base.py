"""The Avalanche template every CLU strategy builds on: one explicit call per step.

:class:`CLUStrategy` is a ``SupervisedTemplate``: ``train(experience)`` runs Avalanche's usual lifecycle
and plugins, evaluators and loggers work as usual. The driver calls ``learn(task, experience, request)``
for a learn task (``request``: one arriving at the same step, if any) and ``unlearn(request)`` for a request
alone. Two things are made fast (DESIGN §6, measured): the experience is collated to ids once and
mini-batches are sliced from the id-addressed tensors (no per-sample ``__getitem__`` + collate), and
callbacks are fired only for plugins that define them (:func:`listens`).

Plugins see what they see in Avalanche's own loop: ``mbatch`` (``mb_x``, ``mb_y``, ``mb_task_id`` = the
experience's task labels), ``mb_output`` (the learn batch's logits) and ``loss`` (its loss, plugins' additions in
``before_backward`` included) at every training iteration; Avalanche's ``eval`` runs unchanged. A learn step
takes its gradients per term inside :func:`clu.update.fast_slow_step`, so a plugin that works on
``after_backward`` (gradients) or replaces the training dataloader cannot be served: :func:`check_plugins` refuses
the first at construction, the second when its experience starts.

A strategy file reads like a recipe: ``learn_iteration(x, y)`` says what one training iteration does,
``forget(request)`` what an unlearn request does after the purge; ``on_task_start`` / ``on_task_end``
run around the training on each experience. The replay strategies share one learner
(:class:`clu.strategies.er.ReplayLearner`). Passes that only measure the model (Fisher, saliency, eval
logits) run in eval mode (:func:`eval_mode`), so BatchNorm's running statistics never see them.
"""

from __future__ import annotations

import copy
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
import torch
from avalanche.core import BasePlugin, BaseSGDPlugin, SupervisedPlugin
from avalanche.evaluation.metric_definitions import PluginMetric
from avalanche.training.plugins import EvaluationPlugin
from avalanche.training.templates import SupervisedTemplate
from torch import Tensor, nn

from clu import seeding
from clu.config import ConfigError
from clu.data.augment import Kind, augment, augment_generator
from clu.data.avalanche_bridge import sample_ids_of
from clu.data.base import Dataset
from clu.events import LearnTask, UnlearnRequest
from clu.replay import Policy, ReplayBuffer
from clu.strategies.configs import StrategyConfig
from clu.strategies.errors import DivergenceError
from clu.strategies.schedule import phase_lr
from clu.update import FastTerm, cross_entropy, fast_slow_step, fisher_diagonal, salun_mask

Mask = dict[str, Tensor]

_NO_OPS = frozenset(
    getattr(c, name) for c in (BasePlugin, BaseSGDPlugin, SupervisedPlugin, PluginMetric) for name in dir(c)
    if name.startswith(("before_", "after_"))
)
"""Avalanche's empty base callbacks: a plugin that inherits one of them has nothing to do at that event."""
UNSERVED = ("after_backward",)
"""Callbacks the template never fires: gradients are taken per term and combined, masked and clipped inside
:func:`clu.update.fast_slow_step`, so there is no single ``backward`` whose ``.grad`` a plugin could edit."""


def listens(plugin: Any, event: str) -> bool:
    """Whether calling ``plugin``'s ``event`` callback can do anything: it exists (on its class or, like
    Avalanche's ``EvaluationPlugin``, through ``__getattribute__``) and is not one of Avalanche's no-ops."""
    if not hasattr(plugin, event):
        return False
    return getattr(getattr(plugin, event), "__func__", None) not in _NO_OPS


def check_plugins(plugins: Any) -> None:
    """A ConfigError naming the first plugin (or evaluator metric) that implements a callback the template
    never fires (:data:`UNSERVED`); such a plugin would silently receive nothing."""
    for p in plugins:
        parts = [p, *getattr(p, "metrics", ())] if isinstance(p, EvaluationPlugin) else [p]
        for part in parts:
            for event in UNSERVED:
                if hasattr(type(part), event) and listens(part, event):
                    raise ConfigError(
                        f"{type(part).__name__} implements {event}, which clu strategies never call (a learn step "
                        "combines, masks and clips per-term gradients itself); this plugin cannot be served",
                        key="plugins")


@dataclass(frozen=True)
class RunContext:
    """What a strategy may know about the run: the data store, the budget, the seed."""

    data: Dataset
    seed: int
    """The batch-order and buffer seed (the unit's order seed; clu.driver.build_strategy)."""
    epochs: int
    batch_size: int
    buffer_size: int
    task_aware: bool
    device: torch.device
    class_tasks: tuple[tuple[int, ...], ...] = ()
    """Task-aware: the class list of every task (logits are masked to a sample's task)."""
    augment: Kind = "none"
    """Augmentation of learn batches (the scenario's ``training.augment``), seeded from ``seed``."""
    amp: bool = False
    """Forward passes under bf16 autocast (``--amp``)."""
    channels_last: bool = False
    """Model and image batches in channels_last memory format (CNNs on CUDA)."""


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; after it, every submodule is back in its own previous mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def quiet_evaluator() -> EvaluationPlugin:
    """An evaluator with no metrics and no loggers (Avalanche warns about that; we mean it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return EvaluationPlugin(loggers=[])


class CLUStrategy(SupervisedTemplate):
    """Avalanche ``SupervisedTemplate`` + ``learn`` / ``unlearn``; subclasses write the recipe."""

    name: ClassVar[str] = ""
    """The registry name (checked against the registry entry when loaded)."""
    uses_buffer: ClassVar[bool] = False

    def __init__(
        self,
        *,
        model: nn.Module,
        config: StrategyConfig,
        context: RunContext,
        plugins: list[BasePlugin] | None = None,
        evaluator: EvaluationPlugin | None = None,
    ) -> None:
        check_plugins([*(plugins or ()), *([evaluator] if evaluator is not None else [])])
        if context.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
        super().__init__(
            model=model,
            optimizer=optimizer,
            criterion=nn.CrossEntropyLoss(),
            train_mb_size=context.batch_size,
            train_epochs=context.epochs,
            eval_mb_size=512,
            device=context.device,
            plugins=plugins,
            evaluator=evaluator or quiet_evaluator(),
        )
        self.cfg = config
        self.ctx = context
        self.buffer = ReplayBuffer(context.buffer_size, self.buffer_policy())
        self.gen = seeding.batch_order(context.seed)
        """Batch order, buffer draws, random labels."""
        self.np_rng = seeding.buffer_policy(context.seed)
        """Buffer admission."""
        self.aug_gen = augment_generator(context.seed) if context.augment != "none" else None
        """Learn-batch augmentation draws (None without augmentation)."""
        self._train_ids: Tensor = torch.empty(0, dtype=torch.long)
        self._task_of: Tensor = torch.empty(0, dtype=torch.long)
        """Sample id → task label of the experience being trained (``mb_task_id``)."""
        self._id_batches: list[Any] = []
        """The (empty) dataloader of the experience being trained: batches are sliced from ``_train_ids``."""
        self.known_classes: set[int] = set()
        """Classes learned and not forgotten (what random labels and proxy targets may use)."""
        self._head_mask = self._make_head_mask()

    def buffer_policy(self) -> Policy:
        return "class_balanced"

    # ----------------------------------------------------------------------------------- data access

    def batch(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Model-ready (x, y) on the device for train ids."""
        x, y = self.ctx.data.train_batch(ids)
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def buffer_batch(self, n: int | None = None) -> tuple[Tensor, Tensor] | None:
        """A random buffer mini-batch, or None when the buffer is empty."""
        ids = self.buffer.sample(n or self.train_mb_size, self.gen)
        return self.batch(ids) if len(ids) else None

    def minibatches(self, ids: Tensor, n: int | None = None) -> Iterator[Tensor]:
        """Shuffled id mini-batches covering ``ids`` once."""
        bs = n or self.train_mb_size
        perm = ids[torch.randperm(len(ids), generator=self.gen)]
        for start in range(0, len(perm), bs):
            yield perm[start : start + bs]

    def cycle(self, ids: Tensor, n: int | None = None) -> Iterator[Tensor]:
        """Endless shuffled mini-batches of ``ids`` (reshuffled each pass)."""
        while True:
            yield from self.minibatches(ids, n)

    def buffer_ids(self) -> Tensor:
        """The buffered ids, as a tensor."""
        return torch.tensor(self.buffer.ids(), dtype=torch.long)

    def known_val_ids(self) -> Tensor:
        """Validation ids of the known classes (held-out data standing in for "unseen")."""
        labels = self.ctx.data.train_labels
        known = [i for i in self.ctx.data.val_ids.tolist() if int(labels[i]) in self.known_classes]
        return torch.tensor(known, dtype=torch.long)

    # ------------------------------------------------------------------------------- logits and losses

    def _make_head_mask(self) -> Tensor | None:
        if not self.ctx.task_aware:
            return None
        k = self.ctx.data.num_classes
        mask = torch.zeros(k, k, dtype=torch.bool)
        for classes in self.ctx.class_tasks:
            idx = torch.tensor(classes)
            mask[idx.unsqueeze(1), idx.unsqueeze(0)] = True
        return mask.to(self.device)

    def logits(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Model outputs (float32, also under ``amp``); task-aware: masked to the classes of each sample's task
        (known at test time)."""
        if self.ctx.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.ctx.amp):
            out = self.model(x)
        out = out.float()
        if self._head_mask is not None and y is not None:
            out = out.masked_fill(~self._head_mask[y], -1e4)
        return out

    def ce(self, batch: tuple[Tensor, Tensor] | None) -> Tensor | None:
        """Mean cross-entropy on a batch (None for no batch)."""
        if batch is None:
            return None
        x, y = batch
        return cross_entropy(self.logits(x, y), y)

    def forward(self) -> Tensor:  # Avalanche's hook: used by its eval loop and by plugins
        return self.logits(self.mb_x, self.mb_y)

    def logits_of(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and labels of train ``ids`` (the model in its current mode, with gradients)."""
        x, y = self.batch(ids)
        return self.logits(x, y), y

    @torch.no_grad()
    def eval_logits(self, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Logits and labels of train ``ids`` in eval mode, without gradients (the previous mode after)."""
        with eval_mode(self.model):
            return self.logits_of(ids)

    def fisher(self, ids: Tensor, n_batches: int) -> Mask:
        """Diagonal empirical Fisher of the model on up to ``n_batches`` shuffled mini-batches of 64 of ``ids``
        (eval mode, as SFR-on computes it)."""
        batches = [self.batch(b) for b in islice(self.minibatches(ids, 64), n_batches)]
        with eval_mode(self.model):
            return fisher_diagonal(self.model, batches)

    def saliency(self, ids: Tensor, sparsity: float) -> Mask:
        """SalUn's mask on ``ids``: top-k of ``|Σ_b ∇ CE_b|`` over shuffled mini-batches of 256, each weighted
        by its share so that they sum to the mean CE (eval mode, as SalUn computes it)."""

        def losses() -> Iterator[Tensor]:
            for b in self.minibatches(ids, 256):
                x, y = self.batch(b)
                yield cross_entropy(self.logits(x, y), y) * len(b) / len(ids)

        with eval_mode(self.model):
            return salun_mask(self.model, losses(), sparsity)

    def learn_loss(self, x: Tensor, y: Tensor) -> Tensor:
        """CE on the learn batch, through Avalanche's forward/backward callbacks (plugins may change the batch in
        ``before_forward`` and add to ``self.loss`` in ``before_backward``, as in Avalanche's loop)."""
        current = self.mbatch is not None and self.mbatch[0] is x  # the training iteration's own batch
        self.mbatch = [x, y, self.mbatch[2] if current else torch.zeros_like(y)]
        self._fire("before_forward")
        self.mb_output = self.logits(self.mb_x, self.mb_y)
        self._fire("after_forward")
        self.loss = cross_entropy(self.mb_output, self.mb_y)
        self._fire("before_backward")
        return self.loss

    def step(self, fast: list[FastTerm], slow: Any = None, *, clip: float = 0.0, order: str = "fast_slow") -> None:
        """One update through :func:`clu.update.fast_slow_step`, with update callbacks and a NaN check."""
        self._fire("before_update")
        fast_value, slow_value = fast_slow_step(self.model, self.optimizer, fast, slow, clip=clip, order=order)  # type: ignore[arg-type]
        for v in (fast_value, slow_value):
            if v is not None and not np.isfinite(v):
                raise DivergenceError(f"{self.name}: loss became {v} (diverged)")
        self._fire("after_update")

    # ------------------------------------------------------------------------------------ learning

    def make_train_dataloader(self, **kwargs: Any) -> None:
        """Collate the (possibly plugin-extended) experience to its ids once; batches are sliced from them."""
        assert self.adapted_dataset is not None
        self._train_ids = sample_ids_of(self.adapted_dataset)
        tasks = _task_labels(self.adapted_dataset)
        self._task_of = torch.zeros(int(self._train_ids.max()) + 1 if len(self._train_ids) else 0, dtype=torch.long)
        self._task_of[self._train_ids] = tasks
        self._id_batches = []
        self.dataloader = self._id_batches

    def _before_training_exp(self, **kwargs: Any) -> None:
        super()._before_training_exp(**kwargs)
        if self.dataloader is not self._id_batches:
            names = sorted({type(p).__name__ for p in self.plugins if listens(p, "before_training_exp")
                            and not isinstance(p, EvaluationPlugin)} - {"Clock", "PeriodicEval"})
            raise ConfigError(f"a plugin replaced the training dataloader ({', '.join(names) or 'unknown'}); clu "
                              "strategies slice their batches by sample id and cannot serve it", key="plugins")

    def task_labels_of(self, ids: Tensor) -> Tensor:
        """``mb_task_id`` of ``ids`` of the experience being trained (its task labels, as Avalanche's loader gives)."""
        return self._task_of[ids].to(self.device, non_blocking=True)

    def make_eval_dataloader(self, **kwargs: Any) -> None:
        assert self.adapted_dataset is not None
        ids = sample_ids_of(self.adapted_dataset)
        tasks = _task_labels(self.adapted_dataset).to(self.device)
        step = self.eval_mb_size
        self.dataloader = [
            [*self.batch(ids[i : i + step]), tasks[i : i + step]] for i in range(0, len(ids), step)
        ]

    def training_epoch(self, **kwargs: Any) -> None:
        for ids in self.minibatches(self._train_ids):
            if self._stop_training:
                break
            x, y = self.batch(ids)
            if self.aug_gen is not None:  # learn batches only: never buffer, unlearn or evaluation batches
                x = augment(self.ctx.augment, x, self.aug_gen)
            self.mbatch = [x, y, self.task_labels_of(ids)]
            self._fire("before_training_iteration")
            self.learn_iteration(x, y)
            self._fire("after_training_iteration")

    def learn(self, task: LearnTask, experience: Any, request: UnlearnRequest | None = None) -> None:
        """A learn event. A request of the same step is served first, as if alone; ugclu and the
        oracles merge the two instead."""
        if request is not None:
            self.unlearn(request)
        self.train_task(experience)

    def train_task(self, experience: Any) -> None:
        """Avalanche's ``train`` on one experience between the task hooks; then its classes become known and
        (with a buffer) its samples are offered to the buffer."""
        ids = sample_ids_of(experience.dataset)  # the experience's own data, not what a plugin may add
        self.on_task_start(ids)
        self.train(experience)
        labels = self.ctx.data.train_labels[ids.numpy()]
        self.known_classes.update(int(c) for c in np.unique(labels))
        if self.uses_buffer:
            self.buffer.add(ids.numpy(), labels, self.np_rng)
        self.on_task_end(ids)

    def on_task_start(self, ids: Tensor) -> None:
        """Before training on an experience with sample ids ``ids``. Default: nothing."""

    def on_task_end(self, ids: Tensor) -> None:
        """After training on ``ids`` and adding them to the buffer. Default: nothing."""

    def learn_iteration(self, x: Tensor, y: Tensor) -> None:
        """One training iteration on a learn batch. Default: plain fine-tuning (one SGD step)."""
        self.step([FastTerm(lambda: self.learn_loss(x, y))])

    # ---------------------------------------------------------------------------------- unlearning

    def purge(self, request: UnlearnRequest) -> None:
        """Before any step: the request's ids leave the buffer and its classes the known ones."""
        self.model.train()
        self.buffer.remove(request.sample_ids)
        self.known_classes.difference_update(request.target_classes)

    def unlearn(self, request: UnlearnRequest) -> None:
        """A deletion request: the purge, then the strategy's recipe."""
        self.purge(request)
        self.forget(request)

    def forget(self, request: UnlearnRequest) -> None:
        """What the strategy does on a request after the purge. Default: nothing."""

    def unlearn_phase(
        self,
        iters: int,
        lr: float,
        fast: Callable[[int], list[FastTerm]],
        slow: Callable[[], Tensor | None] | None,
        *,
        clip: float,
        order: str = "fast_slow",
        stop: Callable[[int], bool] | None = None,
    ) -> int:
        """``iters`` update steps at a cosine-decayed ``lr``; ``fast(t)`` gives iteration t's fast terms.

        Returns the number of iterations run (``stop(t)`` may end the phase early).
        """
        with phase_lr(self.optimizer, lr) as set_lr:
            for t in range(iters):
                set_lr(t, iters)
                self.step(fast(t), slow, clip=clip, order=order)
                if stop is not None and stop(t):
                    return t + 1
        return iters

    # ---------------------------------------------------------------------------------- callbacks

    def _fire(self, event: str) -> None:
        """Call ``event`` on every plugin that can act on it, in plugin order (:func:`listens`)."""
        for p in self._listeners(event):
            getattr(p, event)(self)

    def _listeners(self, event: str) -> list[BasePlugin]:
        cache: dict[str, list[BasePlugin]] = self.__dict__.setdefault("_listener_cache", {})
        key = f"{event}:{len(self.plugins)}"
        if key not in cache:
            cache[key] = [p for p in self.plugins if listens(p, event)]
        return cache[key]

    # -------------------------------------------------------------------------------- checkpointing

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: model, optimizer, buffer ids, RNG states."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "buffer": self.buffer.state_dict(),
            "torch_rng": self.gen.get_state(),
            "np_rng": self.np_rng.bit_generator.state,
            "known_classes": sorted(self.known_classes),
            **({} if self.aug_gen is None else {"aug_rng": self.aug_gen.get_state()}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        if self.optimized_param_id is None:  # else Avalanche's first train() would reset the restored state
            self.make_optimizer(reset_optimizer_state=True)
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))  # torch adopts the tensors given
        self.buffer.load_state_dict(state["buffer"])
        self.gen.set_state(state["torch_rng"])
        self.np_rng.bit_generator.state = state["np_rng"]
        self.known_classes = set(state["known_classes"])
        if self.aug_gen is not None:
            self.aug_gen.set_state(state["aug_rng"])


def _task_labels(dataset: Any) -> Tensor:
    """The task label of every sample of an Avalanche dataset, in dataset order (0 where it has none)."""
    labels = getattr(dataset, "targets_task_labels", None)
    if labels is None:
        return torch.zeros(len(dataset), dtype=torch.long)
    return torch.as_tensor(list(labels), dtype=torch.long)
