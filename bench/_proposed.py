"""Library changes proposed from the overhead profile, applied as temporary patches for ``overhead.py --proposed``.

Each patch does the same arithmetic as the library code it replaces (the bench checks the weights stay
bit-identical) with fewer tensor operations or Python steps per iteration. The library now has 1 (with the
guard against a gradient tensor autograd hands back for two parameters), the single-mask shortcut of 2 and
4, so only the rest is patched here.

1. ``clu/update/step.py`` ``_fast_grads``: skip ``g * term.coef`` when the coefficient is 1 (a full copy of
   every gradient per fast term) — unless autograd handed back an expanded (non-contiguous) or shared tensor,
   which must still be copied before the in-place clip.
2. ``clu/update/step.py`` ``fast_slow_step``: clip with ``torch.nn.utils.clip_grad_norm_`` (one fused norm and
   one fused scale instead of a per-tensor loop with ``.float()``/``.to()`` copies) and only when ``clip > 0``
   (the norm was computed and thrown away otherwise); skip ``slow_coef * slow`` when it is 1; keep terms that
   already are ``FastTerm``; ``_union_mask`` returns a single mask as it is (masks are 0/1 by contract);
   ``masked_step`` restores frozen entries with ``torch.where(..., out=)`` instead of ``where`` + ``copy_``.
3. ``clu/strategies/base.py`` ``learn_loss``: keep ``self.mbatch`` when ``training_epoch`` has just set it for
   the same batch (a second ``torch.zeros_like`` and list per iteration).
4. ``clu/data/base.py`` ``Dataset.train_batch``: index directly with a long tensor instead of the
   tensor → numpy → tensor round trip.
5. ``clu/replay.py`` ``ReplayBuffer.sample``: cache the sorted id tensor until the buffer changes, instead of
   sorting the ids and building a tensor on every call.

Nothing here is imported by the library; ``applied()`` restores the originals on exit.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np
import torch


def _make_fast_slow_step(S: Any) -> Any:
    def fast_slow_step(model: Any, optimizer: Any, fast_terms: Any, slow_loss_fn: Any, *, clip: float = 0.0,
                       slow_coef: float = 1.0, order: str = "fast_slow") -> Any:
        if order not in ("fast_slow", "joint"):
            raise ValueError(f"order must be 'fast_slow' or 'joint', got {order!r}")
        terms = [t if isinstance(t, S.FastTerm) else S.FastTerm(*t) for t in fast_terms]
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        optimizer.zero_grad(set_to_none=True)
        grads, fast_value, used = S._fast_grads(params, terms)
        for (_, p), g in zip(params, grads):
            p.grad = g
        if fast_value is not None and clip > 0:
            torch.nn.utils.clip_grad_norm_([p for _, p in params], clip)
        fast_mask = S._union_mask(used)
        if order == "joint":
            slow_value = None
            if slow_loss_fn is not None:
                slow = slow_loss_fn()
                if slow is not None:
                    (slow if slow_coef == 1.0 else slow_coef * slow).backward()
                    slow_value = slow_coef * float(slow.detach().item())
            if fast_value is not None or slow_value is not None:
                S.masked_step(model, optimizer, fast_mask if slow_value is None else None)
            return fast_value, slow_value
        if fast_value is not None:
            S.masked_step(model, optimizer, fast_mask)
        slow_value = None
        if slow_loss_fn is not None:
            optimizer.zero_grad(set_to_none=True)
            slow = slow_loss_fn()
            if slow is not None:
                (slow if slow_coef == 1.0 else slow_coef * slow).backward()
                optimizer.step()
                slow_value = slow_coef * float(slow.detach().item())
        return fast_value, slow_value

    return fast_slow_step


def _make_masked_step(S: Any) -> Any:
    from torch import Tensor

    @torch.no_grad()
    def masked_step(model: Any, optimizer: Any, mask: Any) -> None:
        if mask is None:
            optimizer.step()
            return
        checked = S._check_mask(model, mask)
        saved = []
        for p, m in checked.values():
            free = m != 0
            if p.grad is not None:
                p.grad.mul_(m.to(p.grad.dtype))
            if bool(free.all()):
                continue
            state = optimizer.state.get(p, {})
            buffers = {k: v.clone() for k, v in state.items() if isinstance(v, Tensor) and v.shape == p.shape}
            saved.append((p, free, p.detach().clone(), buffers))
        optimizer.step()
        for p, free, old, buffers in saved:
            torch.where(free, p, old, out=p)
            for k, v in optimizer.state.get(p, {}).items():
                if not (isinstance(v, Tensor) and v.shape == p.shape):
                    continue
                before = buffers.get(k)
                torch.where(free, v, torch.zeros_like(v) if before is None else before, out=v)

    return masked_step


def _learn_loss(self: Any, x: Any, y: Any) -> Any:
    from clu.update import cross_entropy

    mb = self.mbatch
    if mb is None or len(mb) < 2 or mb[0] is not x or mb[1] is not y:
        self.mbatch = [x, y, torch.zeros_like(y)]
    self._fire("before_forward")
    self.mb_output = self.logits(x, y)
    self._fire("after_forward")
    self.loss = cross_entropy(self.mb_output, y)
    self._fire("before_backward")
    return self.loss


def _train_batch(self: Any, ids: Any) -> Any:
    if isinstance(ids, torch.Tensor) and ids.dtype == torch.long:
        idx = ids
    else:
        idx = torch.as_tensor(np.asarray(ids), dtype=torch.long)
    return self.inputs(self.x_train[idx]), self.y_train[idx]


def _sample(self: Any, n: int, generator: torch.Generator) -> torch.Tensor:
    key = (id(self._labels), len(self._labels))
    cached = self.__dict__.get("_bench_ids")
    if cached is None or cached[0] != key:
        cached = (key, torch.tensor(self.ids(), dtype=torch.long))
        self.__dict__["_bench_ids"] = cached
    ids = cached[1]
    if len(ids) == 0 or n <= 0:
        return ids[:0]
    if n >= len(ids):
        return ids[torch.randint(len(ids), (n,), generator=generator)]
    return ids[torch.randperm(len(ids), generator=generator)[:n]]


@contextlib.contextmanager
def applied() -> Iterator[None]:
    """All the patches for the duration of the block."""
    import clu.replay as R
    import clu.strategies.base as B
    import clu.update.step as S
    from clu.data.base import Dataset

    fss = _make_fast_slow_step(S)
    saved = [(S, "fast_slow_step", S.fast_slow_step), (S, "masked_step", S.masked_step),
             (B, "fast_slow_step", B.fast_slow_step), (B.CLUStrategy, "learn_loss", B.CLUStrategy.learn_loss),
             (Dataset, "train_batch", Dataset.train_batch), (R.ReplayBuffer, "sample", R.ReplayBuffer.sample)]
    new = [fss, _make_masked_step(S), fss, _learn_loss, _train_batch, _sample]
    try:
        for (obj, attr, _old), fn in zip(saved, new):
            setattr(obj, attr, fn)
        yield
    finally:
        for obj, attr, old in saved:
            setattr(obj, attr, old)
