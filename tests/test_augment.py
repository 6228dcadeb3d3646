"""DiffAugment and bCR (gan_ablate/tricks/augment.py) against plain re-implementations of their references'
formulas written here, given the same random draws: an op with the wrong range, axis, fill or box, one draw for
the whole batch, an op cut from the gradient, draws or a mask not in the images' dtype, a deprecated call that
warns, a chain not wired into D's inputs, or a consistency term on the wrong batch, weight or net fails here."""
import math
import re
import warnings
from types import SimpleNamespace

import pytest
import torch
from conftest import make_module, run_train_py
from helpers import run_steps

import gan_ablate.tricks.augment as augment
from gan_ablate.config import ConfigError
from gan_ablate.tricks import build_tricks
from gan_ablate.tricks.base import StepContext
from gan_ablate.tricks.surface import RealBatch

CTX = StepContext(iteration=0, max_steps=10)
N, C, H, W = 4, 3, 6, 10  # not square: an op that mixes up the two axes fails


def images(seed=0, shape=(N, C, H, W)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def rounded(side, ratio):
    """The references' int(side * ratio + 0.5)."""
    return math.floor(side * ratio + 0.5)


# -- plain re-implementations of DiffAugment_pytorch.py's formulas, from the draws they are given ---------

def brightness(x, draws):
    u = draws.rand(len(x), x.dtype)
    return torch.stack([s + (u[n] - 0.5) for n, s in enumerate(x)])


def saturation(x, draws):
    u = draws.rand(len(x), x.dtype)
    return torch.stack([(s - s.mean(0)) * (2 * u[n]) + s.mean(0) for n, s in enumerate(x)])


def contrast(x, draws):
    u = draws.rand(len(x), x.dtype)
    return torch.stack([(s - s.mean()) * (u[n] + 0.5) + s.mean() for n, s in enumerate(x)])


def reflected(i, side):
    """torch's 'reflect' padding: the edge is not repeated (-1 -> 1, side -> side - 2)."""
    return -i if i < 0 else 2 * (side - 1) - i if i >= side else i


def shifted(x, dx, dy, fill):
    """out[n, :, i, j] = x[n, :, i + dx[n], j + dy[n]]; outside the image: 0 ("zeros") or reflected."""
    out = torch.zeros_like(x)
    n_rows, n_cols = x.shape[2:]
    for n in range(len(x)):
        for i in range(n_rows):
            for j in range(n_cols):
                a, b = i + int(dx[n]), j + int(dy[n])
                if fill == "reflect":
                    a, b = reflected(a, n_rows), reflected(b, n_cols)
                if 0 <= a < n_rows and 0 <= b < n_cols:
                    out[n, :, i, j] = x[n, :, a, b]
    return out


def translation(x, draws, ratio=0.125):
    reach_x, reach_y = rounded(x.shape[2], ratio), rounded(x.shape[3], ratio)
    dx = draws.randint(-reach_x, reach_x + 1, (len(x),))
    dy = draws.randint(-reach_y, reach_y + 1, (len(x),))
    return shifted(x, dx, dy, "zeros")


def cutout(x, draws, ratio=0.5):
    """Zero the rows [o_x - s_x // 2, o_x - s_x // 2 + s_x) and the like columns, within the image."""
    n_rows, n_cols = x.shape[2:]
    s_x, s_y = rounded(n_rows, ratio), rounded(n_cols, ratio)
    o_x = draws.randint(0, n_rows + (1 - s_x % 2), (len(x),))
    o_y = draws.randint(0, n_cols + (1 - s_y % 2), (len(x),))
    mask = torch.ones(len(x), 1, n_rows, n_cols)
    for n in range(len(x)):
        top, left = int(o_x[n]) - s_x // 2, int(o_y[n]) - s_y // 2
        mask[n, :, max(top, 0):min(top + s_x, n_rows), max(left, 0):min(left + s_y, n_cols)] = 0
    return x * mask


class Draws:
    """The global stream from `seed`, as the trick draws from it; DiffAugment_pytorch.py draws its colour factors in
    the images' dtype (a float64 draw takes 53 random bits, a float32 one 24: other values)."""

    def __init__(self, seed):
        torch.manual_seed(seed)

    rand = staticmethod(lambda n, dtype=torch.float32: torch.rand(n, dtype=dtype))
    randint = staticmethod(lambda low, high, size: torch.randint(low, high, size))


OPS = {  # op -> (the framework's function, its plain re-implementation)
    "brightness": (augment.rand_brightness, brightness),
    "saturation": (augment.rand_saturation, saturation),
    "contrast": (augment.rand_contrast, contrast),
    "translation": (augment.rand_translation, translation),
    "translation_0.25": (lambda x: augment.rand_translation(x, 0.25), lambda x, d: translation(x, d, 0.25)),
    "cutout": (augment.rand_cutout, cutout),
    "cutout_0.3": (lambda x: augment.rand_cutout(x, 0.3), lambda x, d: cutout(x, d, 0.3)),
    # an even box side (4) and an odd one (5) on a non-square image, each way round (the centre's range depends on
    # each side's parity); 64 samples put boxes across every edge, so clipping a side at the other side's length shows
    "cutout_7x10": (augment.rand_cutout, cutout),
    "cutout_10x7": (augment.rand_cutout, cutout),
}
SHAPES = {"cutout_7x10": (64, C, 7, 10), "cutout_10x7": (64, C, 10, 7)}  # the others: (N, C, H, W)


def value_and_input_gradient(fn, x, weights):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    (grad,) = torch.autograd.grad((y * weights).sum(), x)
    return y.detach(), grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("op", OPS)
def test_each_diffaugment_op_is_the_references_formula_with_one_draw_per_sample_and_passes_gradients(op, dtype):
    """Same seed, same draws: the op's output and its gradient w.r.t. its input (what G is trained through)
    equal those of the formula in DiffAugment_pytorch.py: brightness + U(-0.5, 0.5), saturation x U(0, 2)
    around the channel mean, contrast x U(0.5, 1.5) around the sample mean, a shift by a drawn integer with
    zero fill (1/8 of each side, rounded), a zeroed box of half of each side (rounded) centred at a drawn pixel;
    on float64 images the colour factors are float64 draws, as the reference's dtype=x.dtype makes them."""
    fn, plain = OPS[op]
    x = images(1, SHAPES.get(op, (N, C, H, W))).to(dtype)
    weights = images(2, x.shape).to(dtype)
    torch.manual_seed(3)
    out, grad = value_and_input_gradient(fn, x, weights)
    expected, expected_grad = value_and_input_gradient(lambda v: plain(v, Draws(3)), x, weights)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(grad, expected_grad)
    assert grad.abs().sum() > 0
    assert not torch.equal(out, x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_every_op_keeps_the_images_dtype(dtype):
    """bfloat16 or float64 images in, the same dtype out: the reference draws its factors and builds cutout's mask
    in x.dtype; a float32 factor or mask would turn bfloat16 images into float32 ones behind D's back."""
    x = images(4, (N, C, H, W)).to(dtype)
    for fn, _ in OPS.values():
        assert fn(x).dtype == dtype


def test_no_op_warns():
    """Every op, and bCR's T, runs without a warning, also those torch gives once per process (warn_always): a
    torch.meshgrid without `indexing` warns that the argument will be required in an upcoming release."""
    previous = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for fn, _ in OPS.values():
                fn(images(4))
            augment.flip_and_translate(images(4), flip=True, translation=0.25)
    finally:
        torch.set_warn_always(previous)


def test_every_op_draws_for_each_sample_of_the_batch():
    """A batch of one image repeated: each op makes the copies differ (one draw per sample, not per batch)."""
    x = images(4, (1, C, 16, 16)).expand(32, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    for fn, _ in OPS.values():
        out = fn(x)
        assert not all(torch.equal(out[0], out[n]) for n in range(1, len(out)))


@pytest.mark.parametrize("policy,order", [
    (None, ["rand_brightness", "rand_saturation", "rand_contrast", "rand_translation", "rand_cutout"]),
    ("cutout,color", ["rand_cutout", "rand_brightness", "rand_saturation", "rand_contrast"]),
    ("translation", ["rand_translation"]),
])
def test_diffaugment_applies_its_policys_ops_in_order_with_its_ratios(monkeypatch, policy, order):
    """The default policy is the reference's 'color,translation,cutout'; each op of the policy, in order, gets
    the previous op's output and the trick's ratio."""
    calls = []
    for name in ("rand_brightness", "rand_saturation", "rand_contrast", "rand_translation", "rand_cutout"):
        def spy(x, *ratio, name=name):
            calls.append((name, x, ratio))
            return x + 1.0
        monkeypatch.setattr(augment, name, spy)
    raw = {"translation_ratio": 0.25, "cutout_ratio": 0.75} | ({} if policy is None else {"policy": policy})
    [trick] = build_tricks({"diffaugment": raw})
    x = images()
    out = trick.d_input(x, CTX)
    assert [name for name, _, _ in calls] == order
    for k, (name, seen, ratio) in enumerate(calls):
        torch.testing.assert_close(seen, x + k)
        assert ratio == {"rand_translation": (0.25,), "rand_cutout": (0.75,)}.get(name, ())
    torch.testing.assert_close(out, x + len(order))


def diffaugment_step(monkeypatch, *overrides):
    """One training_step on digits with the ops spied on: each call's update ("d"/"g"), op, input and output;
    the real batches drawn, G's outputs and D's inputs, per update."""
    module = make_module("data=digits", "trick=diffaugment", *overrides)
    seen = {"ops": [], "real": [], "G": [], "D": []}
    for name in ("rand_brightness", "rand_saturation", "rand_contrast", "rand_translation", "rand_cutout"):
        def spy(x, *ratio, name=name, original=getattr(augment, name)):
            out = original(x, *ratio)
            seen["ops"].append((seen["update"], name, x.detach().clone(), out.detach().clone()))
            return out
        monkeypatch.setattr(augment, name, spy)
    real_batch, g_forward, d_forward = module.real_batch, module.G.forward, module.D.forward

    def spy_real():
        batch = real_batch()
        seen["real"].append((seen["update"], batch.x))
        return batch
    module.real_batch = spy_real
    module.G.forward = lambda z: seen["G"].append((seen["update"], g_forward(z))) or seen["G"][-1][1]
    module.D.forward = lambda x: seen["D"].append((seen["update"], x.detach().clone())) or d_forward(x)
    for update in ("discriminator_step", "generator_step"):
        def run(*args, update=update, step=getattr(module, update)):
            seen["update"] = update[0]
            return step(*args)
        setattr(module, update, run)
    run_steps(module, 1)
    return seen


def test_training_step_augments_real_and_fake_in_ds_update_and_fake_in_gs_update(monkeypatch):
    """D's update: the real batch and the fake batch each go through the whole chain (five ops), and what D
    sees is the chain's output; G's update: G's batch goes through the chain into D, so G is trained through
    the augmentation (the ops pass gradients: the test above)."""
    seen = diffaugment_step(monkeypatch)
    chain = ["rand_brightness", "rand_saturation", "rand_contrast", "rand_translation", "rand_cutout"]
    ops = {u: [(name, x, out) for upd, name, x, out in seen["ops"] if upd == u] for u in "dg"}
    assert [name for name, _, _ in ops["d"]] == chain * 2 and [name for name, _, _ in ops["g"]] == chain
    d_real = [x for u, x in seen["real"] if u == "d"]
    d_fake = [x for u, x in seen["G"] if u == "d"]
    g_fake = [x for u, x in seen["G"] if u == "g"]
    assert len(d_real) == len(d_fake) == len(g_fake) == 1
    for start, links, d_input in ((d_real[0], ops["d"][:5], seen["D"][0]), (d_fake[0], ops["d"][5:], seen["D"][1]),
                                  (g_fake[0], ops["g"], seen["D"][2])):
        torch.testing.assert_close(links[0][1], start.detach())
        for (_, _, out), (_, x, _) in zip(links, links[1:]):
            torch.testing.assert_close(x, out)  # each op takes the previous op's output
        torch.testing.assert_close(d_input[1], links[-1][2])  # and D sees the last op's output
        assert not torch.equal(d_input[1], start.detach())
    assert [u for u, _ in seen["D"]] == ["d", "d", "g"]


def test_training_step_with_a_mixed_batch_still_draws_per_sample(monkeypatch):
    """model.d_batches=mixed: real and fake are augmented apart (each sample its own draw) and then joined."""
    seen = diffaugment_step(monkeypatch, "model.d_batches=mixed", "trick.diffaugment.policy=translation")
    real_aug, fake_aug = [out for u, _, _, out in seen["ops"] if u == "d"]
    torch.testing.assert_close(seen["D"][0][1], torch.cat([real_aug, fake_aug]))


# -- bCR -----------------------------------------------------------------------------------------------

def flip_and_translate(x, draws, flip, ratio):
    """StudioGAN cr.py's T: flip with probability 1/2, then a shift by up to int(ratio * side), reflected."""
    if flip:
        u = draws.rand(len(x))
        x = torch.stack([s.flip(2) if u[n] < 0.5 else s for n, s in enumerate(x)])
    if ratio > 0:
        reach_x, reach_y = int(x.shape[2] * ratio), int(x.shape[3] * ratio)
        dx = draws.randint(-reach_x, reach_x + 1, (len(x),))
        dy = draws.randint(-reach_y, reach_y + 1, (len(x),))
        x = shifted(x, dx, dy, "reflect")
    return x


def critic(seed=0, channels=C):
    """A small non-linear D: D(x) - D(T(x)) is no linear function of x - T(x)."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Flatten(),
                               torch.nn.Linear(4 * H * W, 1), torch.nn.Softplus())


def consistency(lambda_real=2.0, lambda_fake=5.0, flip=True, translation=0.25):
    [trick] = build_tricks({"consistency": {"lambda_real": lambda_real, "lambda_fake": lambda_fake, "flip": flip,
                                            "translation": translation}})
    return trick


@pytest.mark.parametrize("flip,translation", [(True, 0.25), (True, 0.0), (False, 0.34)])
def test_consistency_is_the_closed_form_on_a_non_linear_d_and_trains_both_of_ds_outputs(flip, translation):
    """lambda_real * mean (D(x) - D(T(x)))^2 + lambda_fake * mean (D(G(z)) - D(T(G(z))))^2 for the same draws of
    T (real first), with the gradient w.r.t. D's parameters of that closed form: D(x) is not detached."""
    D, real, fake = critic(), images(1), images(2)
    params = list(D.parameters())
    torch.manual_seed(7)
    value = consistency(flip=flip, translation=translation).d_penalty(SimpleNamespace(D=D), RealBatch(real, None),
                                                                      fake, CTX)
    grads = torch.autograd.grad(value, params)
    draws = Draws(7)
    gap_real = (D(real) - D(flip_and_translate(real, draws, flip, translation))).pow(2).mean()
    gap_fake = (D(fake) - D(flip_and_translate(fake, draws, flip, translation))).pow(2).mean()
    expected = 2.0 * gap_real + 5.0 * gap_fake
    torch.testing.assert_close(value, expected)
    for g, e in zip(grads, torch.autograd.grad(expected, params)):
        torch.testing.assert_close(g, e)
    assert min(gap_real.item(), gap_fake.item()) > 1e-6 and abs(gap_real.item() - gap_fake.item()) > 1e-6


def test_t_flips_exactly_where_the_draw_is_below_one_half():
    """cr.py's random_flip flips where u < 1/2, u ~ U[0, 1): exactly half of torch.rand's 2^24 float32 values flip.
    Seed 619920's fifth draw is 0.5 itself: that sample is left as it was, the others flip where u < 1/2."""
    torch.manual_seed(619920)
    u = torch.rand(8)
    assert u[4] == 0.5 and 0 < (u < 0.5).sum() < 7  # else torch's stream changed: find another seed
    x = images(1, (8, C, H, W))
    torch.manual_seed(619920)
    out = augment.flip_and_translate(x, flip=True, translation=0.0)
    torch.testing.assert_close(out, flip_and_translate(x, Draws(619920), True, 0.0))
    assert torch.equal(out[4], x[4])


def test_consistency_is_zero_for_a_d_invariant_to_t_and_positive_otherwise():
    """With T a flip: zero for a D that sees x + flip(x), positive for the same D on x alone; with T's shift
    too, that D is no longer invariant. Images constant per sample are left unchanged by T: zero for any D."""
    inner = critic()
    symmetric = SimpleNamespace(D=lambda x: inner(x + x.flip(3)))
    plain = SimpleNamespace(D=inner)
    real, fake = RealBatch(images(1), None), images(2)
    assert consistency(translation=0.0).d_penalty(symmetric, real, fake, CTX).item() == 0.0
    assert consistency(translation=0.0).d_penalty(plain, real, fake, CTX).item() > 1e-6
    assert consistency(translation=0.25).d_penalty(symmetric, real, fake, CTX).item() > 1e-6
    constant = images(3, (N, C, 1, 1)).expand(N, C, H, W)
    assert consistency().d_penalty(plain, RealBatch(constant, None), constant * 2, CTX).item() == 0.0


def consistency_step(monkeypatch, lambda_real, lambda_fake):
    """One training_step on digits with consistency's gap and the adversarial losses spied on."""
    module = make_module("data=digits", "trick=consistency", f"trick.consistency.lambda_real={lambda_real}",
                         f"trick.consistency.lambda_fake={lambda_fake}")
    seen = {"gaps": [], "real": [], "G": [], "adversarial": [], "losses": []}
    gap = augment.Consistency.gap

    def spy_gap(self, D, x):
        value = gap(self, D, x)
        seen["gaps"].append((seen["update"], D, x, value.detach()))
        return value
    monkeypatch.setattr(augment.Consistency, "gap", spy_gap)
    for name in ("d_loss", "g_loss"):
        def adversarial(*args, original=getattr(module.loss, name)):
            loss = original(*args)
            seen["adversarial"].append((seen["update"], loss.detach()))
            return loss
        setattr(module.loss, name, adversarial)
    real_batch, g_forward = module.real_batch, module.G.forward

    def spy_real():
        batch = real_batch()
        seen["real"].append(batch.x)
        return batch
    module.real_batch = spy_real
    module.G.forward = lambda z: seen["G"].append(g_forward(z)) or seen["G"][-1]
    for update in ("discriminator_step", "generator_step"):
        def run(*args, update=update, step=getattr(module, update)):
            seen["update"] = update[0]
            loss = step(*args)
            seen["losses"].append((update[0], loss.detach()))
            return loss
        setattr(module, update, run)
    run_steps(module, 1)
    return module, seen


def test_consistency_reaches_ds_loss_with_each_lambda_on_its_own_batch_and_leaves_gs_loss_alone(monkeypatch):
    """In D's update, gaps are taken on D, on the real batch that update drew and on its fake batch, and D's
    loss is the adversarial loss + lambda_real * gap(real) + lambda_fake * gap(fake) (lambdas 2 and 5: swapped,
    the sum differs); in G's update there is no gap and G's loss is the adversarial loss."""
    module, seen = consistency_step(monkeypatch, 2.0, 5.0)
    (update_r, D_r, x_r, gap_r), (update_f, D_f, x_f, gap_f) = seen["gaps"]
    assert (update_r, update_f) == ("d", "d") and D_r is module.D and D_f is module.D
    assert x_r is seen["real"][0] and torch.equal(x_f, seen["G"][0])
    assert abs(gap_r.item() - gap_f.item()) > 1e-4 * max(gap_r.item(), gap_f.item()) > 0
    (d_update, d_adv), (g_update, g_adv) = seen["adversarial"]
    (_, d_loss), (_, g_loss) = seen["losses"]
    assert (d_update, g_update) == ("d", "g")
    assert d_loss.item() == pytest.approx(d_adv.item() + 2.0 * gap_r.item() + 5.0 * gap_f.item(), rel=1e-5)
    assert g_loss.item() == pytest.approx(g_adv.item(), rel=1e-6)


# -- refusals -------------------------------------------------------------------------------------------

IMAGE_DATA = "digits, mnist, stacked_mnist, cifar10, image_folder"


@pytest.mark.parametrize("trick,data", [("diffaugment", "ring8"), ("consistency", "grid25")])
def test_augmenting_tricks_refuse_2d_data_and_take_images(trick, data):
    with pytest.raises(ConfigError) as refused:
        make_module(f"data={data}", f"trick={trick}")
    assert str(refused.value) == (f"data={data}: trick={trick} needs image data (this is 2-D points); "
                                  f"allowed: data={IMAGE_DATA}")
    assert make_module("data=digits", f"trick={trick}").sample_shape == (1, 8, 8)


@pytest.mark.slow
@pytest.mark.parametrize("args", [["trick=diffaugment"], ["trick=consistency", "data=ring8"]])
def test_train_py_refuses_augmentation_on_2d_data_on_one_line(tmp_path, args):
    result = run_train_py(*args, "logger=csv", f"hydra.run.dir={tmp_path}/run", timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"gan-ablate: config error: data=ring8: {args[0]} needs image data (this is 2-D points); "
        f"allowed: data={IMAGE_DATA}"]
    assert "Traceback" not in result.stdout and not (tmp_path / "run" / "result.json").exists()


@pytest.mark.parametrize("trick,raw,message", [
    ("diffaugment", {"policy": "color,flip"}, "trick.diffaugment.policy='color,flip' is not allowed"),
    ("diffaugment", {"policy": ""}, "trick.diffaugment.policy='' is not allowed"),
    ("diffaugment", {"translation_ratio": 0.0},
     "trick.diffaugment.translation_ratio=0.0 is out of range; it must lie in (0, 1]"),
    ("diffaugment", {"translation_ratio": 1.01}, "trick.diffaugment.translation_ratio=1.01 is out of range"),
    ("diffaugment", {"cutout_ratio": 0.0}, "trick.diffaugment.cutout_ratio=0.0 is out of range; it must lie in (0, 1]"),
    ("diffaugment", {"cutout_ratio": 1.01}, "trick.diffaugment.cutout_ratio=1.01 is out of range"),
    ("consistency", {"lambda_real": -0.1}, "trick.consistency.lambda_real=-0.1 is out of range; it must lie in [0, "),
    ("consistency", {"lambda_fake": -0.1}, "trick.consistency.lambda_fake=-0.1 is out of range; it must lie in [0, "),
    ("consistency", {"translation": 1.0}, "trick.consistency.translation=1.0 is out of range; it must lie in [0, 1)"),
    ("consistency", {"translation": -0.1}, "trick.consistency.translation=-0.1 is out of range"),
    ("consistency", {"flip": False, "translation": 0.0}, "trick.consistency.flip=false and translation=0"),
])
def test_bad_parameters_are_refused_naming_the_key(trick, raw, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        build_tricks({trick: raw})


@pytest.mark.parametrize("trick,raw", [
    ("diffaugment", {"translation_ratio": 1.0, "cutout_ratio": 1.0, "policy": "cutout,cutout"}),
    ("consistency", {"lambda_real": 0.0, "lambda_fake": 0.0, "translation": 0.99}),
    ("consistency", {"flip": False, "translation": 0.1}),
    ("consistency", {"translation": 0.0}),
])
def test_parameters_at_the_edges_of_their_ranges_are_taken(trick, raw):
    assert build_tricks({trick: raw})[0].params.__dict__.items() >= raw.items()


def test_diffaugment_conflicts_with_label_channels():
    with pytest.raises(ConfigError, match="'diffaugment' conflicts with trick 'conditional'"):
        build_tricks({"diffaugment": {}, "conditional": {}})
