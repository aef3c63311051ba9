"""A PyTorch twin of the Transporter train step, for side-by-side timing only.

Same layers, normalisation (instance), transport and loss as `keypoints`; the source branch runs
without gradients. Requires `torch` (not a project dependency: `pip install torch`).
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from keypoints import configs
from keypoints import networks


def _encoder(filters, kernels, strides) -> nn.Sequential:
  layers, cin = [], 3
  for f, k, s in zip(filters, kernels, strides):
    layers += [nn.Conv2d(cin, f, k, s, padding=k // 2), nn.InstanceNorm2d(f, affine=True),
               nn.ReLU()]
    cin = f
  return nn.Sequential(*layers)


class Twin(nn.Module):
  """Phi, Psi (+1x1 conv), RefineNet; NCHW."""

  def __init__(self, arch: str, num_keypoints: int, size: int, std: float = 0.1):
    super().__init__()
    c = configs.ARCHITECTURES[arch]
    self.phi = _encoder(c["filters"], c["kernels"], c["strides"])
    self.psi = nn.Sequential(_encoder(c["filters"], c["kernels"], c["strides"]),
                             nn.Conv2d(c["filters"][-1], num_keypoints, 1))
    self.std, self.size = std, size
    dec, cin, f = [], c["filters"][-1], c["decoder_filters"]
    h = size // networks.feature_stride(c["strides"])
    while h < size:
      dec += [nn.Conv2d(cin, f, 3, padding=1), nn.InstanceNorm2d(f, affine=True), nn.ReLU(),
              nn.Conv2d(f, f, 3, padding=1), nn.InstanceNorm2d(f, affine=True), nn.ReLU(),
              nn.Upsample(scale_factor=2, mode="bilinear")]
      cin, f, h = f, max(f // 2, 8), h * 2
    dec += [nn.Conv2d(cin, f, 3, padding=1), nn.InstanceNorm2d(f, affine=True), nn.ReLU(),
            nn.Conv2d(f, 3, 3, padding=1)]
    self.decoder = nn.Sequential(*dec)

  def branch(self, x):
    feats = self.phi(x)
    logits = self.psi(x)
    b, k, h, w = logits.shape
    gy = torch.linspace(-1, 1, h, device=x.device)
    gx = torch.linspace(-1, 1, w, device=x.device)
    y = (F.softmax(logits.mean(3), dim=2) * gy).sum(2)
    xk = (F.softmax(logits.mean(2), dim=2) * gx).sum(2)
    maps = (torch.exp(-(gy[None, None, :, None] - y[..., None, None])**2 / self.std**2) *
            torch.exp(-(gx[None, None, None, :] - xk[..., None, None])**2 / self.std**2))
    return feats, maps  # maps [B, K, H, W]

  def forward(self, source, target):
    with torch.no_grad():
      fs, ms = self.branch(source)
    ft, mt = self.branch(target)
    a = (1 - ms) * (1 - mt)
    after = torch.flip(torch.cumprod(torch.flip(a, [1]), 1), [1])
    after = torch.cat([after[:, 1:], torch.ones_like(a[:, :1])], 1)
    keep = after[:, :1] * a[:, :1]
    take = (mt * after).sum(1, keepdim=True)
    return self.decoder(keep * fs + take * ft)


def make_train_step(arch: str, batch: int, size: int, num_keypoints: int):
  """A function running one Adam step of the twin on a fixed batch of random pairs, on the GPU
  where torch sees one (as the JAX step runs on JAX's default device), else on the CPU."""
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  torch.manual_seed(0)
  model = Twin(arch, num_keypoints, size).to(device)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)
  source = torch.rand(batch, 3, size, size, device=device) - 0.5
  target = torch.rand(batch, 3, size, size, device=device) - 0.5

  def step():
    opt.zero_grad()
    loss = F.mse_loss(model(source, target), target)
    loss.backward()
    opt.step()
    if device.type == "cuda":
      torch.cuda.synchronize()  # time the work, not its launch

  return step
