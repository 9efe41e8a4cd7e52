"""Method 1 networks: the paper's parameter counts at 128 px and code shapes at every resolution."""
import pytest
import torch

from core.config import load_config
from models import METHODS, build_method


def count(net):
    return sum(p.numel() for p in net.parameters())


def test_paper_parameter_counts_at_128px():
    # Press et al. code, sep=25, 128 px (counts from the method spec's arithmetic)
    cfg = load_config("configs/celeba_glasses.yaml")
    m = build_method(cfg, torch.device("cpu"))
    assert {k: count(n) for k, n in m.nets.items()} == {
        "e1": 6_480_574, "e2": 741_369, "dec": 6_982_115, "disc": 998_401}
    assert m.nets["e1"].dim == 1948 and m.nets["e2"].dim == 100


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_shapes_at_every_resolution(size):
    cfg = load_config("configs/synth_glasses.yaml", [f"data.size={size}"])
    m = build_method(cfg, torch.device("cpu"))
    x = torch.randn(2, 3, size, size)
    c, s = m.encode(x)
    hw = max(2, size // 64)
    assert c.shape == (2, (256 - 16) * hw * hw) and s.shape == (2, 16 * hw * hw)
    assert m.decode(c, s).shape == x.shape and m.remove(x).shape == x.shape
    assert m.nets["disc"](c).shape == (2,)


def test_bad_sizes_and_sep():
    with pytest.raises(ValueError, match="power of two"):
        build_method(load_config("configs/synth_glasses.yaml", ["data.size=48"]), torch.device("cpu"))
    with pytest.raises(ValueError, match="model.sep"):
        build_method(load_config("configs/synth_glasses.yaml", ["model.sep=600"]), torch.device("cpu"))


def test_registry_names_match_method_configs():
    for name in METHODS:
        assert load_config(None, [f"method={name}"]).method == name
