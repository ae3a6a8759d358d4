"""The proximal U-Net applies dec0 to its two inputs without concatenating them (to save
memory at full resolution); the result must equal the textbook concatenation form."""

import torch
from torch import nn

from qsmflow.dl.nsidl import ProximalUNet


def _concatenating_forward(net: ProximalUNet, z, field):
    shape = z.shape[-3:]
    pads = []
    for n in reversed(shape):
        pads += [0, (-n) % 4]
    x = nn.functional.pad(torch.cat([z, field], dim=1), pads)
    e0 = net.enc0(x)
    e1 = net.enc1(nn.functional.avg_pool3d(e0, 2))
    e2 = net.enc2(nn.functional.avg_pool3d(e1, 2))
    d1 = net.dec1(torch.cat([net.up2(e2), e1], dim=1))
    d0 = net.dec0(torch.cat([net.up1(d1), e0], dim=1))
    return z + net.out(d0)[..., : shape[0], : shape[1], : shape[2]]


def test_split_decoder_convolution_equals_the_concatenation_form():
    torch.manual_seed(0)
    net = ProximalUNet(6)
    for parameter in net.parameters():  # the shipped init zeroes the output layer
        nn.init.normal_(parameter, 0.0, 0.1)
    z = torch.randn(1, 1, 21, 18, 23)
    field = torch.randn_like(z)
    with torch.no_grad():
        lean, reference = net(z, field), _concatenating_forward(net, z, field)
    assert float((reference - z).abs().max()) > 0.1  # the network does change z
    assert float((lean - reference).abs().max()) < 1e-5 * float(reference.abs().max())


def test_split_decoder_convolution_has_the_same_gradients():
    torch.manual_seed(1)
    net = ProximalUNet(4)
    for parameter in net.parameters():
        nn.init.normal_(parameter, 0.0, 0.1)
    z = torch.randn(1, 1, 12, 12, 12)
    field = torch.randn_like(z)
    net(z, field).square().sum().backward()
    lean = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    _concatenating_forward(net, z, field).square().sum().backward()
    for a, b in zip(lean, (p.grad for p in net.parameters()), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
