"""Linear probes: does a latent code (linearly) carry a factor?

Both probes standardise features with the *training* mean/std, run on CPU in float64 and are
deterministic. Inputs may be torch tensors or numpy arrays of shape (N, D).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def _as_f64(a) -> torch.Tensor:
    t = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(torch.float64)


def _as_labels(a) -> torch.Tensor:
    t = a.detach().cpu() if isinstance(a, torch.Tensor) else torch.as_tensor(np.asarray(a))
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError("linear_probe needs integer class labels")
    return t.long().reshape(-1)


def _standardise(train_x: torch.Tensor, test_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(f"features must be (N, D) with equal D, got {tuple(train_x.shape)} and {tuple(test_x.shape)}")
    mu = train_x.mean(0)
    sd = train_x.std(0, unbiased=False)
    sd = torch.where(sd > 1e-12, sd, torch.ones_like(sd))  # constant features stay 0
    return (train_x - mu) / sd, (test_x - mu) / sd


def _row_space(x: torch.Tensor) -> torch.Tensor:
    """(D, r) orthonormal basis of the span of the rows of ``x`` (N, D), N < D, from the N x N Gram matrix."""
    evals, evecs = torch.linalg.eigh(x @ x.T)
    keep = evals > evals.max().clamp(min=1e-300) * x.shape[1] * torch.finfo(x.dtype).eps
    basis = x.T @ (evecs[:, keep] / evals[keep].sqrt())
    return basis


def linear_probe(
    train_x,
    train_y,
    test_x,
    test_y,
    epochs: int = 200,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> dict:
    """Multinomial logistic regression on standardised features, scored on the test split.

    Trained full-batch with L-BFGS (strong Wolfe line search, at most ``epochs`` iterations) on
    mean cross-entropy + ``weight_decay/2 * ||W||^2`` (bias not decayed). With more features than training
    samples the same objective is solved over the span of the training rows (an orthonormal basis of it, and
    the initial weights projected onto it): the minimiser lies there, since the loss's gradient does and the
    decay shrinks any other component, so only the optimiser's path differs, at a fraction of the memory
    traffic (pixels: 2048 x 12288 -> 2048 x 2048). Labels are arbitrary
    integers; classes are those seen in ``train_y`` (a test label never seen in training counts as
    an error). ``seed`` drives the (small random) weight initialisation.

    Returns ``dict(accuracy, balanced_accuracy, chance, balanced_chance, train_accuracy, n_classes)``:
      * ``balanced_accuracy``: mean over test classes of per-class recall;
      * ``chance``: test accuracy of always predicting the most frequent training class
        (majority baseline for ``accuracy``);
      * ``balanced_chance``: 1 / number of classes present in the test set (baseline for
        ``balanced_accuracy``).
    """
    xtr, xte = _standardise(_as_f64(train_x), _as_f64(test_x))
    ytr_raw, yte_raw = _as_labels(train_y), _as_labels(test_y)
    if ytr_raw.numel() != xtr.shape[0] or yte_raw.numel() != xte.shape[0]:
        raise ValueError("labels and features must have the same number of rows")
    classes, ytr = torch.unique(ytr_raw, return_inverse=True)
    k = classes.numel()

    gen = torch.Generator().manual_seed(seed)
    w0 = 0.01 * torch.randn(xtr.shape[1], k, generator=gen, dtype=torch.float64)
    if xtr.shape[1] > xtr.shape[0]:  # more features than samples (e.g. pixels): solve in the row space
        basis = _row_space(xtr)
        xtr, xte, w0 = xtr @ basis, xte @ basis, basis.T @ w0
    w = w0.requires_grad_(True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    if k > 1:
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=epochs, history_size=20,
                                tolerance_grad=1e-9, tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(xtr @ w + b, ytr) + 0.5 * weight_decay * (w * w).sum()
            loss.backward()
            return loss

        opt.step(closure)

    with torch.no_grad():
        pred_tr = classes[(xtr @ w + b).argmax(1)]
        pred = classes[(xte @ w + b).argmax(1)]
    correct = (pred == yte_raw).double()
    test_classes = torch.unique(yte_raw)
    recalls = torch.stack([correct[yte_raw == c].mean() for c in test_classes])
    majority = classes[torch.bincount(ytr, minlength=k).argmax()]
    return dict(
        accuracy=float(correct.mean()),
        balanced_accuracy=float(recalls.mean()),
        chance=float((yte_raw == majority).double().mean()),
        balanced_chance=1.0 / test_classes.numel(),
        train_accuracy=float((pred_tr == ytr_raw).double().mean()),
        n_classes=int(k),
    )


def ridge_probe(train_x, train_y, test_x, test_y, alpha: float = 1.0) -> dict:
    """Closed-form ridge regression on standardised features, R^2 on the test split.

    Solves ``(X^T X + alpha I) W = X^T (y - mean_train(y))`` with an unpenalised intercept
    (the training target mean). ``train_y``/``test_y`` are (N,) or (N, K).
    R^2 per output is ``1 - SS_res / SS_tot`` with ``SS_tot`` about the *test* mean (sklearn's
    ``r2_score`` convention; can be negative). A constant test target gives 1.0 if predicted
    exactly, else 0.0.

    Returns ``dict(r2=np.ndarray[K], mean_r2=float)``.
    """
    xtr, xte = _standardise(_as_f64(train_x), _as_f64(test_x))
    ytr, yte = _as_f64(train_y), _as_f64(test_y)
    if ytr.dim() == 1:
        ytr = ytr[:, None]
    if yte.dim() == 1:
        yte = yte[:, None]
    if ytr.shape[0] != xtr.shape[0] or yte.shape[0] != xte.shape[0] or ytr.shape[1] != yte.shape[1]:
        raise ValueError("targets must be (N,) or (N, K) matching the features and each other")
    ymu = ytr.mean(0)
    d = xtr.shape[1]
    a = xtr.T @ xtr + alpha * torch.eye(d, dtype=torch.float64)
    coef = torch.linalg.solve(a, xtr.T @ (ytr - ymu))
    pred = xte @ coef + ymu
    ss_res = ((yte - pred) ** 2).sum(0)
    ss_tot = ((yte - yte.mean(0)) ** 2).sum(0)
    const = ss_tot == 0
    safe = torch.where(const, torch.ones_like(ss_tot), ss_tot)
    r2 = torch.where(const, (ss_res == 0).double(), 1.0 - ss_res / safe)
    r2 = r2.numpy()
    return dict(r2=r2, mean_r2=float(r2.mean()))
