"""Task interfaces: what a method offers so that one protocol (``evaluation/``) can score every method that
declares the task, side by side. A method lists its tasks in ``Method.tasks``; ``check_tasks`` (and the
conformance test) verifies each declaration. Images are (N, 3, H, W) in [-1, 1] at the method's ``data.size``;
call inside ``with method.inference(): ...`` (eval mode, no grad, EMA weights).

- ``content_transfer`` (methods 1, 2): ``transfer(target, source)`` = ``target`` with ``source``'s content
  (e.g. its glasses); ``remove(x)`` = ``x`` without its content; ``codes(x)`` = ``{"common", "separate"}``
  flattened to (N, d) each.
- ``identity_swap`` (methods 3, 4, 5): ``swap(identity_source, attribute_source)`` = a face with the first
  image's identity and the second one's pose, expression, style, background.
- ``factor_encoding`` (method 5, any method with named code parts): ``encode(x)`` = named parts, (N, d) each.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class ContentTransfer(Protocol):
    def transfer(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor: ...

    def remove(self, x: torch.Tensor) -> torch.Tensor: ...

    def codes(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


@runtime_checkable
class IdentitySwap(Protocol):
    def swap(self, identity_source: torch.Tensor, attribute_source: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class FactorEncoding(Protocol):
    def encode(self, x: torch.Tensor) -> dict[str, torch.Tensor]: ...


TASKS = {"content_transfer": ContentTransfer, "identity_swap": IdentitySwap, "factor_encoding": FactorEncoding}


def check_tasks(method) -> None:
    """Every task ``method`` declares is known and its interface is present (``ValueError`` otherwise)."""
    for task in method.tasks:
        if task not in TASKS:
            raise ValueError(f"{type(method).__name__} declares unknown task {task!r}; known: {sorted(TASKS)}")
        if not isinstance(method, TASKS[task]):
            missing = [k for k in TASKS[task].__protocol_attrs__ if not callable(getattr(method, k, None))] \
                if hasattr(TASKS[task], "__protocol_attrs__") else []
            raise ValueError(f"{type(method).__name__} declares task {task!r} but lacks {missing or 'its methods'}")
