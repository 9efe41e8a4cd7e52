"""Running a network over many images in chunks."""
import torch


def batched(fn, *tensors, bs: int = 64) -> torch.Tensor:
    """``fn`` applied to aligned chunks of ``bs`` rows of ``tensors``, outputs concatenated."""
    return torch.cat([fn(*(t[i:i + bs] for t in tensors)) for i in range(0, tensors[0].shape[0], bs)])
