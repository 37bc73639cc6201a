"""The U-Net and the toy MLP: shapes for 1/3 channels and odd sizes, zero output at init, gradients reach every
parameter, the output depends on the log-SNR, and configs round-trip."""
import json

import pytest
import torch

from engine.mlp import MLPConfig, MLPDenoiser
from engine.unet import UNet, UNetConfig

SMALL = dict(base_channels=8, num_groups=4)



def randomise_(model: torch.nn.Module, seed: int = 0) -> None:
    """Give every parameter (the zero-initialised ones included) small random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("channels,size,attn", [(1, 28, (7,)), (3, 28, (7,)), (1, 32, (8,)), (3, 32, (8,)),
                                                (1, 8, (2,)), (3, 8, (2,))])
def test_shapes(channels, size, attn):
    net = UNet(UNetConfig(in_channels=channels, image_size=size, attention_resolutions=attn, **SMALL))
    randomise_(net)
    x = torch.randn(2, channels, size, size)
    y = net(x, torch.tensor([-3.0, 4.0]))
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_odd_sizes_and_three_levels_default():
    net = UNet(UNetConfig())
    assert net.config.resolutions() == [28, 14, 7]
    assert any(type(m).__name__ == "AttnBlock" for m in net.down.modules())  # attention at 7×7 in the down path
    randomise_(net)
    for size in (28, 27, 13, 7):  # a net built for 28 also runs on other (odd) sizes
        assert net(torch.randn(1, 1, size, size), torch.zeros(1)).shape == (1, 1, size, size)


def test_zero_output_at_init():
    net = UNet(UNetConfig(**SMALL))
    assert net(torch.randn(3, 1, 28, 28), torch.randn(3)).abs().max() == 0
    mlp = MLPDenoiser(MLPConfig())
    assert mlp(torch.randn(5, 2), torch.randn(5)).abs().max() == 0


def test_gradients_reach_every_parameter():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, attention_resolutions=(2,), **SMALL))
    randomise_(net)
    net(torch.randn(4, 1, 8, 8), torch.randn(4)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing


def test_output_depends_on_log_snr():
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=8, attention_resolutions=(2,), **SMALL)).eval()
    randomise_(net)
    x = torch.randn(1, 1, 8, 8).repeat(3, 1, 1, 1)
    y = net(x, torch.tensor([-5.0, 0.0, 5.0]))
    assert (y[0] - y[1]).abs().max() > 1e-3 and (y[1] - y[2]).abs().max() > 1e-3
    # a scalar log-SNR is broadcast over the batch; samples do not interact (GroupNorm is per sample)
    assert torch.allclose(net(x, torch.tensor(0.0)), net(x, torch.zeros(3)))
    assert torch.allclose(net(x[:1], torch.zeros(1)), y[1:2], atol=1e-5)


def test_bad_inputs():
    net = UNet(UNetConfig(**SMALL))
    with pytest.raises(ValueError):
        net(torch.randn(2, 3, 28, 28), torch.zeros(2))
    with pytest.raises(ValueError):
        net(torch.randn(2, 1, 28, 28), torch.zeros(3))
    with pytest.raises(ValueError, match="num_groups"):
        UNetConfig(base_channels=12, num_groups=8)


def test_config_round_trip():
    cfg = UNetConfig(in_channels=3, image_size=32, base_channels=8, channel_mults=(1, 2), num_res_blocks=2,
                     attention_resolutions=(16,), dropout=0.1, num_groups=4, emb_dim=48)
    d = json.loads(json.dumps(cfg.to_dict()))
    assert UNetConfig.from_dict(d) == cfg
    net, net2 = UNet(cfg), UNet(UNetConfig.from_dict(d))
    assert [p.shape for p in net.parameters()] == [p.shape for p in net2.parameters()]
    assert UNetConfig.from_dict(UNetConfig().to_dict()) == UNetConfig()
    with pytest.raises(ValueError, match="unknown"):
        UNetConfig.from_dict({**d, "bogus": 1})
    m = MLPConfig(hidden=32, depth=2)
    assert MLPConfig.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_default_size_budget():
    n = sum(p.numel() for p in UNet(UNetConfig()).parameters())
    assert n < 3.5e6


def test_mlp_denoiser():
    torch.manual_seed(0)
    mlp = MLPDenoiser(MLPConfig())
    randomise_(mlp)
    x = torch.randn(16, 2)
    y = mlp(x, torch.linspace(-5, 5, 16))
    assert y.shape == (16, 2)
    y.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in mlp.parameters())
    assert not torch.allclose(mlp(x, torch.full((16,), -5.0)), mlp(x, torch.full((16,), 5.0)))


def test_mlp_learns_quickly():
    """A few hundred steps of ε-prediction on 8 gaussians beat the trivial predictor (ε̂ = 0, loss 1)."""
    from engine.data import toy_sample

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    mlp = MLPDenoiser(MLPConfig(hidden=64, depth=2))
    opt = torch.optim.Adam(mlp.parameters(), lr=3e-3)
    for _ in range(300):
        x0 = toy_sample("8gaussians", 256, g)
        lam = torch.rand(256, generator=g) * 12 - 6
        a = torch.sigmoid(lam)[:, None]  # ᾱ = sigmoid(λ)
        eps = torch.randn(256, 2, generator=g)
        loss = (mlp(a.sqrt() * x0 + (1 - a).sqrt() * eps, lam) - eps).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.6
