"""Losses: each against a plain NumPy/loop re-implementation of its published definition, plus
gradients, stability and edge cases."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ml_core.learn.losses import (
    LOSS_DESCRIPTIONS,
    LOSSES,
    BoundaryLoss,
    describe_loss,
    get_loss,
    loss_params,
)
from ml_core.learn.losses.functional import max_filter

NAMES = [
    "ce", "dice", "nr_dice", "ce_dice", "ell", "wdice",
    "bd_dice", "bd_wdice", "lace", "lace_wdice", "bd_lace_wdice",
]  # fmt: skip
IGNORE = 255


def _inputs(n=2, h=12, w=14, seed=0, unknown=True, scale=2.0, block=4, dtype=torch.float32):
    """Random logits and a target of random ``block`` squares (so that there are boundaries),
    with an unknown rectangle and scattered unknown pixels."""
    gen = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(n, 2, h, w, generator=gen)).to(dtype)
    coarse = torch.randint(0, 2, (n, 1, -(-h // block), -(-w // block)), generator=gen).float()
    target = F.interpolate(coarse, scale_factor=block, mode="nearest")[:, 0, :h, :w].long()
    if unknown:
        target[:, 1 : 1 + h // 3, w // 2 : w // 2 + w // 4] = IGNORE
        target[torch.rand(n, h, w, generator=gen) < 0.03] = IGNORE
    return logits, target


# ---- plain re-implementations (float64 NumPy, loops where the definition is a loop) ----------


def _np(logits, target):
    z = logits.detach().double().numpy()
    z = z - z.max(1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(1, keepdims=True))
    t = target.numpy()
    return logp, np.exp(logp), t, t != IGNORE


def ref_ce(logits, target):
    logp, _, t, valid = _np(logits, target)
    n, h, w = np.nonzero(valid)
    return -logp[n, t[n, h, w], h, w].sum() / max(valid.sum(), 1)


def ref_dice_per_class(p, t, valid, smooth):
    out = []
    for c in range(p.shape[1]):
        y = (t == c) & valid
        inter, psum, ysum = (p[:, c] * y).sum(), (p[:, c] * valid).sum(), y.sum()
        out.append((2 * inter + smooth) / (psum + ysum + smooth))
    return np.array(out)


def ref_wdice(logits, target, weights=(0.1, 0.9), smooth=1e-5):
    _, p, t, valid = _np(logits, target)
    d = ref_dice_per_class(p, t, valid, smooth)
    return 1 - (np.array(weights) * d).sum() / sum(weights)


def ref_nr_dice(logits, target, gamma=1.5, eps=1e-5):
    _, p, t, valid = _np(logits, target)
    vals = []
    for c in range(2):
        y = ((t == c) & valid).astype(float)
        num = (np.abs(p[:, c] - y) ** gamma * valid).sum()
        vals.append(num / ((p[:, c] * valid).sum() + y.sum() + eps))
    return np.mean(vals)


def ref_ell(logits, target, freq=(0.9, 0.1), smooth=1.0):
    logp, p, t, valid = _np(logits, target)
    d = ref_dice_per_class(p, t, valid, smooth)
    dice_term = np.mean((-np.log(d)) ** 0.3)
    weights = [(sum(freq) / f) ** 0.5 for f in freq]
    total = 0.0
    for n, i, j in zip(*np.nonzero(valid)):
        c = t[n, i, j]
        total += weights[c] * (-logp[n, c, i, j]) ** 0.3
    return 0.8 * dice_term + 0.2 * total / max(valid.sum(), 1)


def _window_max(a, k):
    r, (h, w) = k // 2, a.shape
    out = np.empty_like(a)
    for i in range(h):
        for j in range(w):
            out[i, j] = a[max(i - r, 0) : i + r + 1, max(j - r, 0) : j + r + 1].max()
    return out


def ref_boundary(logits, target, theta0=3, theta=5, eps=1e-7):
    """Bokhovkin & Burnaev, with the documented rule for unknown pixels, written pixel by pixel:
    a target boundary pixel is a labelled pixel of class c with a labelled pixel of another class
    in its theta0 window; a predicted boundary pixel is judged only if its whole
    (theta0 + theta - 1) window is labelled."""
    _, p, t, valid = _np(logits, target)
    N, C, H, W = p.shape
    r0, rj = theta0 // 2, (theta0 + theta - 1) // 2
    terms = []
    for n in range(N):
        judged = np.zeros((H, W))
        for i in range(H):
            for j in range(W):
                win = (n, slice(max(i - rj, 0), i + rj + 1), slice(max(j - rj, 0), j + rj + 1))
                judged[i, j] = valid[win].all()
        for c in range(C):
            b_gt = np.zeros((H, W))
            for i in range(H):
                for j in range(W):
                    win = (slice(max(i - r0, 0), i + r0 + 1), slice(max(j - r0, 0), j + r0 + 1))
                    other = valid[n][win] & (t[n][win] != c)
                    b_gt[i, j] = valid[n, i, j] and t[n, i, j] == c and other.any()
            if b_gt.sum() == 0:
                continue
            comp = 1 - p[n, c]
            b_pred = _window_max(comp, theta0) - comp
            e_pred, e_gt = _window_max(b_pred, theta), _window_max(b_gt, theta)
            prec = (b_pred * judged * e_gt).sum() / ((b_pred * judged).sum() + eps)
            rec = (e_pred * b_gt).sum() / (b_gt.sum() + eps)
            terms.append(1 - 2 * prec * rec / (prec + rec + eps))
    return np.mean(terms) if terms else 0.0


def ref_lace(logits, target, prior=(0.9, 0.1), tau=1.0):
    adjusted = logits.double() + tau * torch.tensor(prior).double().log().view(1, -1, 1, 1)
    return ref_ce(adjusted, target)


REFERENCES = {
    "ce": ref_ce,
    "dice": lambda z, t: ref_wdice(z, t, weights=(1, 1)),
    "nr_dice": ref_nr_dice,
    "ce_dice": lambda z, t: ref_ce(z, t) + ref_wdice(z, t, weights=(1, 1)),
    "ell": ref_ell,
    "wdice": ref_wdice,
    "bd_dice": lambda z, t: ref_wdice(z, t, weights=(1, 1)) + ref_boundary(z, t),
    "bd_wdice": lambda z, t: ref_wdice(z, t) + ref_boundary(z, t),
    "lace": ref_lace,
    "lace_wdice": lambda z, t: ref_lace(z, t) + ref_wdice(z, t),
    "bd_lace_wdice": lambda z, t: ref_lace(z, t) + ref_wdice(z, t) + ref_boundary(z, t),
}


# ---- registry ---------------------------------------------------------------------------------


def test_registry_names_defaults_and_descriptions():
    assert list(LOSSES) == NAMES
    assert set(LOSS_DESCRIPTIONS) == set(NAMES)
    for name in NAMES:
        assert isinstance(get_loss(name), torch.nn.Module)
        assert LOSSES[name]["ignore_index"] == IGNORE
        assert describe_loss(name) and "\n" not in describe_loss(name)
    assert LOSSES["lace"] == {"ignore_index": 255, "tau": 1.0, "prior": (0.9, 0.1)}
    assert LOSSES["wdice"]["class_weights"] == (0.1, 0.9)
    assert LOSSES["dice"]["class_weights"] == (1.0, 1.0)
    assert LOSSES["nr_dice"]["gamma"] == 1.5
    assert (LOSSES["bd_dice"]["theta0"], LOSSES["bd_dice"]["theta"]) == (3, 5)
    assert LOSSES["bd_lace_wdice"] == {
        "ignore_index": 255,
        "tau": 1.0,
        "prior": (0.9, 0.1),
        "lace_weight": 1.0,
        "class_weights": (0.1, 0.9),
        "smooth": 1e-5,
        "dice_weight": 1.0,
        "theta0": 3,
        "theta": 5,
        "eps": 1e-7,
        "boundary_weight": 1.0,
    }


def test_registry_rejects_unknown_names_and_parameters():
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("focal")
    with pytest.raises(ValueError, match="unknown loss"):
        describe_loss("focal")
    with pytest.raises(ValueError, match="tau"):
        get_loss("ce", tau=2.0)
    with pytest.raises(ValueError, match="theta"):
        get_loss("bd_dice", theta=4)


def test_combination_is_the_weighted_sum_of_its_terms():
    logits, target = _inputs()
    boundary = get_loss("bd_dice", dice_weight=0.0)(logits, target)
    assert boundary.item() == pytest.approx(ref_boundary(logits, target), rel=1e-4)
    joint = get_loss("bd_lace_wdice", lace_weight=0.5, dice_weight=2.0, boundary_weight=3.0)
    expected = (
        0.5 * get_loss("lace")(logits, target)
        + 2.0 * get_loss("wdice")(logits, target)
        + 3.0 * boundary
    )
    assert joint(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


# ---- values against the references ------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    ("seed", "unknown", "scale"), [(0, False, 2.0), (1, True, 2.0), (2, True, 8.0)]
)
def test_matches_reference(name, seed, unknown, scale):
    logits, target = _inputs(seed=seed, unknown=unknown, scale=scale)
    got = get_loss(name)(logits, target)
    assert got.dtype == torch.float32 and got.dim() == 0
    assert got.item() == pytest.approx(REFERENCES[name](logits, target), rel=1e-4, abs=1e-5)


def test_lace_is_cross_entropy_of_adjusted_logits():
    logits, target = _inputs(seed=3)
    log_prior = torch.tensor([0.9, 0.1]).log().view(1, 2, 1, 1)
    for tau in (1.0, 0.5):
        expected = F.cross_entropy(logits + tau * log_prior, target, ignore_index=IGNORE)
        got = get_loss("lace", tau=tau)(logits, target)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    ce = get_loss("ce")(logits, target)
    assert get_loss("lace", prior=(0.5, 0.5))(logits, target).item() == pytest.approx(ce.item())
    assert ce.item() == pytest.approx(F.cross_entropy(logits, target, ignore_index=IGNORE).item())


def test_loss_options_set_the_parameters_for_the_class_count():
    from ml_core.config import LossOptions
    from ml_core.errors import InputError

    two = loss_params("bd_lace_wdice", LossOptions())
    assert two == LOSSES["bd_lace_wdice"]  # the defaults are LossOptions'
    four = loss_params("bd_lace_wdice", LossOptions(lace_tau=0.5, boundary_theta=7), 4)
    assert len(four["prior"]) == len(four["class_weights"]) == 4
    assert (four["tau"], four["theta"]) == (0.5, 7)
    assert loss_params("dice", LossOptions(), 4)["class_weights"] == (1.0,) * 4
    logits, target = _inputs(seed=4)
    got = get_loss("lace", **loss_params("lace", LossOptions(lace_prior=[0.7, 0.3])))
    explicit = get_loss("lace", prior=(0.7, 0.3))
    assert got(logits, target).item() == pytest.approx(explicit(logits, target).item())
    with pytest.raises(InputError, match="one value per class"):
        loss_params("lace", LossOptions(lace_prior=[0.7, 0.3]), 4)
    with pytest.raises(InputError, match="odd"):
        LossOptions(boundary_theta0=4)
    with pytest.raises(ValueError, match="one per class"):
        get_loss("lace", prior=(1.0,))


# ---- gradients --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name):
    logits, target = _inputs(n=1, h=10, w=11, seed=5, block=3, dtype=torch.float64)
    assert 0.1 < ref_boundary(logits, target) < 0.9  # the boundary term has a gradient
    logits.requires_grad_(True)
    loss = get_loss(name)
    check = torch.autograd.gradcheck
    assert check(lambda z: loss(z, target), (logits,), eps=1e-6, atol=1e-5, fast_mode=True)


def test_float32_gradients_match_float64():
    logits, target = _inputs(n=2, h=16, w=15, seed=6)
    grads = []
    for dtype in (torch.float32, torch.float64):
        z = logits.to(dtype).detach().requires_grad_(True)
        get_loss("bd_lace_wdice")(z, target).backward()
        grads.append(z.grad.double())
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


@pytest.mark.parametrize("size", [1, 3, 5])
def test_max_filter_matches_max_pool2d(size):
    x = torch.rand(3, 2, 13, 10)
    x[:, :, 2:6, 3:7] = 1.0  # plateaus: ties resolved to the same pixel as max_pool2d
    x[:, :, 8:, :] = 0.0
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya, yb = max_filter(a, size), F.max_pool2d(b, size, 1, size // 2)
    grad = torch.randn_like(x)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb) and torch.equal(max_filter(x, size), yb)
    assert torch.allclose(a.grad, b.grad)


def test_memory_layout_does_not_matter():
    logits, target = _inputs(n=2, h=16, w=16, seed=12)
    loss = get_loss("bd_lace_wdice")
    expected = loss(logits, target).item()
    assert loss(logits.contiguous(memory_format=torch.channels_last), target).item() == expected
    wide = torch.stack([logits, logits], -1).flatten(-2)  # every other column is a copy
    assert loss(wide[..., ::2], target).item() == pytest.approx(expected, rel=1e-6)


def test_max_filter_survives_nan():
    x = torch.rand(2, 2, 8, 8)
    x[0, 1, 3, 4] = float("nan")
    x.requires_grad_(True)
    max_filter(x, 5).sum().backward()
    assert torch.isnan(max_filter(x.detach(), 5)[0, 1]).any() and x.grad.shape == x.shape


# ---- boundary term ----------------------------------------------------------------------------


def _square(h=32, w=32, top=10, left=9, size=12):
    mask = torch.zeros(1, h, w, dtype=torch.long)
    mask[:, top : top + size, left : left + size] = 1
    return mask


def _logits_for(mask, scale=20.0):
    return scale * torch.stack([1 - 2 * mask, 2 * mask - 1], 1).float()


def test_boundary_is_zero_for_a_perfect_prediction_and_grows_with_shift():
    target = _square()
    strict = get_loss("bd_dice", theta=1, dice_weight=0.0)  # no tolerance: any shift counts
    tolerant = get_loss("bd_dice", dice_weight=0.0)  # theta 5: up to 2 px is still a match
    values, strict_values = [], []
    for shift in range(4):
        logits = _logits_for(_square(left=9 + shift))
        values.append(tolerant(logits, target).item())
        strict_values.append(strict(logits, target).item())
    assert values[0] < 1e-6 and strict_values[0] < 1e-6
    assert strict_values[0] < strict_values[1] < strict_values[2] < strict_values[3]
    assert values[1] < 1e-6 and values[2] < 1e-6 < values[3]


def test_boundary_with_three_classes_matches_reference():
    logits, target = _inputs(n=2, h=12, w=14, seed=11, block=3)
    logits = torch.cat([logits, torch.randn(2, 1, 12, 14)], 1)
    target[:, 6:9, 2:8] = 2
    got = BoundaryLoss(theta0=3, theta=5, eps=1e-7)(logits, target)
    assert got.item() == pytest.approx(ref_boundary(logits, target), rel=1e-4)


def test_boundary_ignores_the_edge_of_unknown_regions():
    target = _square()
    perfect = _logits_for(target)
    boundary = get_loss("bd_dice", dice_weight=0.0)
    # Unknown band across the building: no fake boundary along its edges.
    banded = target.clone()
    banded[:, 14:18, :] = IGNORE
    assert boundary(perfect, banded).item() < 1e-6
    # An unknown ring around a building hides its boundary entirely: the term is left out.
    ringed = torch.zeros_like(target)
    ringed[:, 10:22, 9:21] = IGNORE
    ringed[:, 12:20, 11:19] = 1
    assert boundary(_logits_for(_square(left=12)), ringed).item() == 0.0


# ---- stability and edge cases -----------------------------------------------------------------


def _check_finite(name, logits, target):
    logits = logits.clone().requires_grad_(True)
    loss = get_loss(name)(logits, target)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    return loss


@pytest.mark.parametrize("name", NAMES)
def test_edge_cases(name):
    logits, _ = _inputs(n=1, h=7, w=9, seed=7)
    zeros = torch.zeros(1, 7, 9, dtype=torch.long)
    _check_finite(name, logits, zeros)  # all background, batch of 1, odd size
    _check_finite(name, logits, zeros + 1)  # all building
    assert _check_finite(name, logits, zeros + IGNORE).item() == 0.0  # all unknown
    huge, target = _inputs(n=2, h=8, w=9, seed=8, scale=1e4)
    _check_finite(name, huge, target)
    _check_finite(name, _logits_for(target.clamp(max=1), 1e4), target)  # saturated and right


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_in_float32(dtype):
    logits, target = _inputs(n=2, h=16, w=16, seed=9)
    net = torch.nn.Conv2d(2, 2, 1)
    with torch.autocast("cpu", dtype=dtype):
        low = net(logits)
        assert low.dtype == dtype
        loss = get_loss("bd_lace_wdice")(low, target)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    reference = get_loss("bd_lace_wdice")(low.detach().float(), target)
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_one_softmax_per_call():
    logits, target = _inputs(seed=10)
    logits.requires_grad_(True)
    with torch.profiler.profile() as prof:
        get_loss("bd_lace_wdice")(logits, target)
    counts = {e.key: e.count for e in prof.key_averages()}
    assert counts.get("aten::_log_softmax") == 1
    assert "aten::_softmax" not in counts


def test_shape_errors():
    with pytest.raises(ValueError, match="expected logits"):
        get_loss("ce")(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="class index"):
        get_loss("ce", ignore_index=1)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4).long())


def test_reference_sanity():
    # The reference itself: uniform prediction, CE = ln 2.
    target = torch.zeros(1, 3, 3, dtype=torch.long)
    assert ref_ce(torch.zeros(1, 2, 3, 3), target) == pytest.approx(math.log(2))
