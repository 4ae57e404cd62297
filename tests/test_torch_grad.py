"""Autograd through project -> SH -> bin -> blend against central finite differences (float64)."""

from __future__ import annotations

import pytest
import torch
from conftest import orbit_camera

from renderer.torch_backend.gaussians import render_gaussians
from renderer.types import RenderSettings
from scenes import GaussianScene

W, H = 24, 20


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: tiny tensors, and a shared machine where a second worker stalls."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def raw_params(sh_degree: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    n, k = 5, (sh_degree + 1) ** 2
    d = torch.float64
    sh = torch.randn(n, k, 3, generator=g, dtype=d) * 0.2
    sh[:, 0] = torch.randn(n, 3, generator=g, dtype=d) * 0.6
    return {
        "means": (torch.rand(n, 3, generator=g, dtype=d) * 2 - 1) * 0.6,
        "log_scales": torch.full((n, 3), -1.386, dtype=d) + 0.3 * torch.randn(n, 3, generator=g, dtype=d),
        "quats": torch.randn(n, 4, generator=g, dtype=d),
        "opacity_logits": torch.randn(n, generator=g, dtype=d) + 0.5,
        "sh": sh,
    }


def make_loss(antialias: str, sh_degree: int):
    cam = orbit_camera(width=W, height=H, distance=3.0, azimuth_deg=20.0, elevation_deg=15.0)
    settings = RenderSettings(antialias=antialias, background=(0.1, 0.2, 0.3))
    g = torch.Generator().manual_seed(5)
    w_rgb = torch.randn(H, W, 3, generator=g, dtype=torch.float64)
    w_a = torch.randn(H, W, 1, generator=g, dtype=torch.float64)
    w_d = torch.randn(H, W, 1, generator=g, dtype=torch.float64) * 0.1

    def loss(p: dict[str, torch.Tensor]) -> torch.Tensor:
        scene = GaussianScene.from_raw(p["means"], p["quats"], p["log_scales"], p["opacity_logits"], p["sh"])
        fr = render_gaussians(scene, cam, settings, "cpu")
        assert fr.rgb.dtype == torch.float64
        return (fr.rgb * w_rgb).sum() + (fr.alpha * w_a).sum() + (fr.depth * w_d).sum()

    return loss


@pytest.mark.parametrize("antialias,sh_degree", [("classic", 1), ("mip", 2)])
def test_gradients_match_finite_differences(antialias, sh_degree):
    params = raw_params(sh_degree)
    loss = make_loss(antialias, sh_degree)
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    value = loss(leaves)
    value.backward()
    # The scene covers a good part of the image, so this is not a trivially zero gradient.
    assert float(leaves["opacity_logits"].grad.abs().max()) > 1e-3

    eps = 1e-6
    with torch.no_grad():
        for name, base in params.items():
            fd = torch.zeros_like(base)
            flat = fd.view(-1)
            for i in range(base.numel()):
                hi, lo = dict(params), dict(params)
                hi[name] = base.clone()
                lo[name] = base.clone()
                hi[name].view(-1)[i] += eps
                lo[name].view(-1)[i] -= eps
                flat[i] = (loss(hi) - loss(lo)) / (2 * eps)
            got = leaves[name].grad
            assert torch.isfinite(got).all(), name
            scale = max(float(fd.abs().max()), 1e-3)
            err = float((got - fd).abs().max())
            assert err < 1e-5 * scale + 1e-7, f"{name}: max |autograd - FD| = {err:.3g} (scale {scale:.3g})"


def test_gradients_survive_culled_gaussians():
    """Gaussians behind the camera or off-image get zero (finite) gradients, not NaN."""
    params = raw_params(0)
    cam = orbit_camera(width=W, height=H, distance=3.0)
    pos = torch.as_tensor(cam.position, dtype=torch.float64)
    behind = pos * 1.7  # the camera looks at the origin: this is behind it
    params["means"] = params["means"].clone()
    params["means"][0] = behind  # behind the camera
    params["means"][1] = torch.tensor([40.0, 0.0, 0.0], dtype=torch.float64)  # far off-image
    leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
    scene = GaussianScene.from_raw(leaves["means"], leaves["quats"], leaves["log_scales"],
                                   leaves["opacity_logits"], leaves["sh"])
    fr = render_gaussians(scene, cam, RenderSettings(), "cpu")
    (fr.rgb.sum() + fr.depth.sum()).backward()
    for k, v in leaves.items():
        assert torch.isfinite(v.grad).all(), k
    assert float(leaves["means"].grad[0].abs().max()) == 0.0
