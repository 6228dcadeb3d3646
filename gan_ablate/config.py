"""Typed configuration: one dataclass per config group, registered as the schema of train.yaml.

Hydra merges the YAML files into these dataclasses, so an unknown key or a wrong type fails while the
config is composed. Value ranges are checked by `validate()`, which builds the dataclass objects
(running their `__post_init__`) before any training starts; every range and choice check, here and in
the tricks' Params, goes through `check_range` / `check_choice`, so each refusal reads the same.

One source for each default: these dataclasses. They are typed, checked, and what code and tests build
directly (`DataConfig(name="mnist")`), so a default stated here holds wherever the config comes from.
A YAML option of a group these dataclasses type (data, model, optim, loss, logger) states its `name` and
only the values it changes; `python train.py` therefore runs `TrainConfig()` exactly. The families,
experiments and tricks are applied over those options and state what they set, default or not (an
experiment pins its paper's protocol). The `ema` trick's parameters start from EmaConfig's defaults
(EMA_TRICK_KEYS). tests/test_config_defaults.py keeps all of this so.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from gan_ablate.metrics.directions import METRIC_DIRECTIONS, REVERSE_KL_DEFINITIONS


class ConfigError(ValueError):
    """A configuration value is not allowed. The message names the key and what is allowed."""


class TrickConflict(ConfigError):
    """Two chosen tricks (or a trick and a loss/normalisation) cannot run together: in a sweep, that
    cell is recorded as skipped rather than the whole sweep refused."""


class ScheduleOutsideRun(TrickConflict):
    """A trick whose schedule cannot act within trainer.max_steps (a conflict with the budget): its
    results row would be the baseline's under the trick's name. In a sweep, that cell is skipped."""


def check_choice(key: str, value: Any, allowed: tuple) -> None:
    """The one choice check of the config and of every trick's Params: raises ConfigError naming `key`."""
    if value not in allowed:
        raise ConfigError(f"{key}={value!r} is not allowed; choose one of: {', '.join(map(str, allowed))}")


def check_range(key: str, value: float | None, low: float | None = None, high: float | None = None, *,
                low_open: bool = False, high_open: bool = False, nullable: bool = False) -> None:
    """The one range check of the config and of every trick's Params: raises ConfigError naming `key` and
    the interval allowed. A trick's Params name the bare field (`std`); parse_params prefixes `trick.<name>.`.
    nullable: None is allowed too (and said so in the message)."""
    if value is None and nullable:
        return
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        left = "(" if low_open else "["
        right = ")" if high_open else "]"
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ConfigError(f"{key}={value} is out of range; it must lie in {left}{lo}, {hi}{right}"
                          + (" or be null" if nullable else ""))


DATA_NAMES = ("ring8", "grid25", "digits", "mnist", "stacked_mnist", "cifar10", "image_folder")
DRAWN_DATA = ("ring8", "grid25", "stacked_mnist")  # data sets sampled from a seed, not read: data.points applies


@dataclass
class DataConfig:
    name: str = "ring8"
    batch_size: int = 256
    # 2-D mixtures (PacGAN protocol)
    n_points: int = 100_000
    std: float = 0.01
    # images
    root: Optional[str] = None
    image_size: int = 28
    channels: int = 1
    scale: str = "symmetric"    # images in [-1, 1] ("symmetric") or [0, 1] ("unit")
    cache: bool = True          # the whole set as one tensor on the device, or a DataLoader per step
    # seed of the data itself (mixture samples, MNIST shuffle), independent of the training seed
    data_seed: int = 0
    # the 2-D mixtures' and stacked MNIST's samples: one draw from data_seed for every run ("fixed"), or a draw of
    # each run's own, from its seed and data_seed ("per_seed": PacGAN's code draws a new data set per run)
    points: str = "fixed"
    # real batches: rows drawn with replacement at every step ("replacement"), or epoch-wise ("epochs": each epoch a
    # fresh permutation of the rows, taken in consecutive batches, as PacGAN's code draws them; data/base.py)
    batches: str = "replacement"

    def __post_init__(self) -> None:
        check_choice("data.name", self.name, DATA_NAMES)
        check_range("data.batch_size", self.batch_size, 1)
        check_range("data.n_points", self.n_points, 1)
        check_range("data.std", self.std, 0, low_open=True)
        check_range("data.image_size", self.image_size, 4)
        check_choice("data.channels", self.channels, (1, 3))
        check_choice("data.scale", self.scale, ("symmetric", "unit"))
        check_choice("data.points", self.points, ("fixed", "per_seed"))
        check_choice("data.batches", self.batches, ("replacement", "epochs"))
        if self.points == "per_seed" and self.name not in DRAWN_DATA:
            raise ConfigError(f"data.points=per_seed draws the samples of {', '.join(DRAWN_DATA)} anew per run; "
                              f"data={self.name} is a fixed set: leave data.points=fixed")
        if self.batches == "epochs" and not self.cache:
            raise ConfigError("data.batches=epochs slices the cached tensor (data.cache=true); data.cache=false "
                              "draws through a shuffling DataLoader of its own")
        if self.name == "cifar10" and not self.root:
            raise ConfigError("data.root is required with data=cifar10 (where CIFAR-10 is, or is downloaded to)")
        if self.name == "image_folder" and not self.root:
            raise ConfigError("data.root is required with data=image_folder (a folder of images)")


NORMS = ("none", "batch_norm", "layer_norm", "instance_norm", "virtual_batch_norm", "reference_batch_norm")


@dataclass
class ModelConfig:
    name: str = "mlp"
    z_dim: int = 2
    latent: str = "gaussian"          # z ~ N(0, I) ("spherical") or U(-1, 1)
    activation: str = "leaky_relu"
    output: str = "tanh"              # image G output: tanh for data in [-1, 1], sigmoid for [0, 1]
    # mlp
    g_hidden: int = 128
    d_hidden: int = 128
    g_layers: int = 3
    d_layers: int = 3
    # dcgan: channels of the widest layer next to the image
    g_channels: int = 64
    d_channels: int = 64
    g_width: float = 1.0              # capacity multipliers on hidden units / channels
    d_width: float = 1.0
    norm_g: str = "none"
    norm_d: str = "none"
    bn_momentum: float = 0.1          # batch norm: running = (1 - m) * running + m * batch (torch's convention)
    bn_eps: float = 1e-5              # batch norm: added to the batch variance (torch's default; blocks': 1e-4)
    bn_running: str = "variance"      # batch norm's running statistic: variance (torch's) or stdev (blocks')
    # a hidden linear layer followed by a normalisation keeps its bias (torch's); False: it has none, the
    # norm's shift in its place (blocks' MLP(use_bias=False), PacGAN's G); mlp and gan2014 nets
    bias_before_norm: bool = True
    reference_batch_size: int = 64    # virtual / reference batch norm
    init: str = "default"             # default (PyTorch's), orthogonal, dcgan, pacgan
    downsample: str = "strided"       # D: strided conv, avg_pool or max_pool
    upsample: str = "conv_transpose"  # G: conv_transpose, pixel_shuffle or nearest (+ conv)
    d_batches: str = "separate"       # D sees real and fake as separate batches, or one mixed batch
    d_dropout: float = 0.0
    g_dropout: float = 0.0            # kept on when sampling too (pix2pix)
    g_layer_noise: float = 0.0        # std of Gaussian noise added after every G layer (training only)
    skip_z: bool = False              # z split into chunks fed to every G block (BigGAN)
    maxout_pieces: int = 5            # gan2014
    # sndcgan D's channels: compare_gan's (the code behind Kurach et al.'s numbers) or Miyato et al.'s table 3
    sndcgan_d_channels: str = "compare_gan"

    def __post_init__(self) -> None:
        check_choice("model.name", self.name, ("mlp", "dcgan", "gan2014", "sndcgan"))
        check_choice("model.latent", self.latent, ("gaussian", "uniform"))
        check_choice("model.activation", self.activation, ("leaky_relu", "relu"))
        check_choice("model.output", self.output, ("tanh", "sigmoid"))
        check_choice("model.sndcgan_d_channels", self.sndcgan_d_channels, ("compare_gan", "miyato"))
        check_choice("model.norm_g", self.norm_g, NORMS)
        check_choice("model.norm_d", self.norm_d, NORMS)
        check_choice("model.init", self.init, ("default", "orthogonal", "dcgan", "pacgan"))
        check_choice("model.downsample", self.downsample, ("strided", "avg_pool", "max_pool"))
        check_choice("model.upsample", self.upsample, ("conv_transpose", "pixel_shuffle", "nearest"))
        check_choice("model.d_batches", self.d_batches, ("separate", "mixed"))
        check_choice("model.bn_running", self.bn_running, ("variance", "stdev"))
        for key in ("z_dim", "g_hidden", "d_hidden", "g_layers", "d_layers", "g_channels", "d_channels",
                    "reference_batch_size", "maxout_pieces"):
            check_range(f"model.{key}", getattr(self, key), 1)
        check_range("model.g_width", self.g_width, 0, low_open=True)
        check_range("model.d_width", self.d_width, 0, low_open=True)
        check_range("model.bn_momentum", self.bn_momentum, 0, 1)
        check_range("model.bn_eps", self.bn_eps, 0, low_open=True)
        check_range("model.d_dropout", self.d_dropout, 0, 1, high_open=True)
        check_range("model.g_dropout", self.g_dropout, 0, 1, high_open=True)
        check_range("model.g_layer_noise", self.g_layer_noise, 0)


LOSS_NAMES = ("non_saturating", "minimax", "wgan", "wgan_gp", "hinge", "lsgan", "relativistic", "dragan",
              "ebgan", "began")


@dataclass
class LossConfig:
    name: str = "non_saturating"
    clip: float = 0.01          # wgan: weights clipped to [-clip, clip] after each D step
    gp_weight: float = 10.0     # wgan_gp, dragan: lambda
    margin: float = 1.0         # ebgan: fakes are pushed to energy >= margin
    pt_weight: float = 0.1      # ebgan: weight of the pulling-away term in G's loss
    gamma: float = 0.5          # began: diversity ratio E[L(G(z))] / E[L(x)] the k_t control aims at
    lambda_k: float = 0.001     # began: learning rate of k_t

    def __post_init__(self) -> None:
        check_choice("loss.name", self.name, LOSS_NAMES)
        check_range("loss.clip", self.clip, 0, low_open=True)
        check_range("loss.gp_weight", self.gp_weight, 0)
        check_range("loss.margin", self.margin, 0, low_open=True)
        check_range("loss.pt_weight", self.pt_weight, 0)
        check_range("loss.gamma", self.gamma, 0, 1)
        check_range("loss.lambda_k", self.lambda_k, 0)


@dataclass
class OptimizerConfig:
    name: str = "adam"
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.0       # sgd
    weight_decay: float = 0.0
    # adam's eps: added to sqrt(v) after its bias correction (torch), or before it (blocks.algorithms.Adam,
    # the step of PacGAN's 2-D code; gan_ablate/module.py BlocksAdam)
    eps_placement: str = "torch"


@dataclass
class OptimConfig:
    """How G and D take turns.

    update=alternating: an iteration is n_critic D updates, then g_steps G updates; each update draws its
    own real batch and z and sees the other net as its latest step left it.
    update=simultaneous: an iteration is one update of both nets from one parameter snapshot, as ALI's
    `ali_algorithm` (IshmaelBelghazi/ALI ali/algorithms.py), which PacGAN's 2-D experiments train with
    (fjxmlzn/PacGAN synthetic_data_experiments/*/pacgan_task.py): one real batch, one z, one forward of
    G; D's loss and G's loss both from the weights as they are before either steps; both gradients are
    taken, then both optimisers step. Under it, n_critic and g_steps must be 1 (one update of each net is
    what an iteration is), and tricks that repeat one net's update (loss_balancing) are refused. The
    other hooks keep their meaning: d_fake_batch, d_input, d_targets, d_objective and d_penalty shape D's
    loss and g_objective and g_penalty G's, on the shared real batch and samples (a trick that reads more
    real data, feature_matching or vae_gan, draws it as it does under alternating updates, through D and
    G as they are before either steps); once both gradients exist,
    before_d_step, D's step, after_d_step, then before_g_step, G's step, after_g_step run in that order,
    each acting on its own net (G's gradient was already taken through D's pre-step weights).
    """
    g: OptimizerConfig = field(default_factory=OptimizerConfig)
    d: OptimizerConfig = field(default_factory=OptimizerConfig)
    n_critic: int = 1           # D updates per iteration
    g_steps: int = 1            # G updates per iteration
    update: str = "alternating"  # or simultaneous (see the docstring)

    def __post_init__(self) -> None:
        for net in ("g", "d"):
            opt: OptimizerConfig = getattr(self, net)
            check_choice(f"optim.{net}.name", opt.name, ("adam", "sgd", "rmsprop"))
            check_range(f"optim.{net}.lr", opt.lr, 0, low_open=True)
            if len(opt.betas) != 2:
                raise ConfigError(f"optim.{net}.betas={opt.betas} must have two values")
            for b in opt.betas:
                check_range(f"optim.{net}.betas", b, 0, 1, high_open=True)
            check_range(f"optim.{net}.momentum", opt.momentum, 0, 1, high_open=True)
            check_range(f"optim.{net}.weight_decay", opt.weight_decay, 0)
            check_choice(f"optim.{net}.eps_placement", opt.eps_placement, ("torch", "blocks"))
            if opt.eps_placement == "blocks" and opt.name != "adam":
                raise ConfigError(f"optim.{net}.eps_placement=blocks is Adam's; optim.{net}.name={opt.name}")
        check_range("optim.n_critic", self.n_critic, 1)
        check_range("optim.g_steps", self.g_steps, 1)
        check_choice("optim.update", self.update, ("alternating", "simultaneous"))
        for key in ("n_critic", "g_steps"):  # a conflict: a sweep skips the cell (trick=n_critic on a PacGAN preset)
            if self.update == "simultaneous" and getattr(self, key) != 1:
                raise TrickConflict(f"optim.{key}={getattr(self, key)} has no meaning with optim.update=simultaneous "
                                  f"(an iteration is one update of both nets); allowed: 1")


@dataclass
class EmaConfig:
    """The EMA copy of G (gan_ablate/module.py says how each key acts)."""
    decay: float = 0.999
    every: int = 1              # update every k iterations
    start: int = 0              # BigGAN's ema_start: before it the EMA equals G, from it on it averages
    # decay min(decay, (1 + n) / (10 + n)) after n updates (tf.train.ExponentialMovingAverage's num_updates),
    # so the untrained G's share fades at any budget; false: the constant decay (BigGAN's)
    warmup: bool = True
    # the EMA G's batch-norm statistics: `averaged` with its weights (BigGAN's ema averages the whole
    # state dict), or `standing`: re-estimated before each evaluation from standing_batches of its own
    # samples (BigGAN's accumulate_standing_stats)
    bn_stats: str = "averaged"
    standing_batches: int = 16

    def __post_init__(self) -> None:
        check_range("ema.decay", self.decay, 0, 1, high_open=True)
        check_range("ema.every", self.every, 1)
        check_range("ema.start", self.start, 0)
        check_choice("ema.bn_stats", self.bn_stats, ("averaged", "standing"))
        check_range("ema.standing_batches", self.standing_batches, 1)


@dataclass
class FailureWatchConfig:
    enabled: bool = True
    d_loss_floor: float = 1e-3
    grad_norm_max: float = 100.0
    d_winning: float = 0.5
    window: int = 10            # logged values
    stop_on_non_finite: bool = True

    def __post_init__(self) -> None:
        check_range("monitor.failure_watch.window", self.window, 2)


@dataclass
class MonitorConfig:
    grad_norm_every: int = 50   # 0 turns gradient-norm logging off
    grad_norm_per_layer: bool = False
    # every iteration the losses and total gradient norms are checked for NaN/Inf on the device; the host
    # reads the result every check_every iterations (one sync), so a diverged run stops within that many.
    # Costs the two total gradient norms every iteration (~3% of a ring8 iteration on a CPU).
    # 0: only the logged values are watched (failure_watch)
    check_every: int = 10
    failure_watch: FailureWatchConfig = field(default_factory=FailureWatchConfig)

    def __post_init__(self) -> None:
        check_range("monitor.grad_norm_every", self.grad_norm_every, 0)
        check_range("monitor.check_every", self.check_every, 0)


@dataclass
class MetricsConfig:
    every: int = 500            # evaluate raw and EMA G every N iterations (0: only at the end)
    n_samples: int = 2500       # PacGAN protocol
    hq_sigmas: float = 3.0      # a sample is high quality within this many std of its nearest mode
    # 2-D mixtures: the histogram over the modes whose KL to uniform is `reverse_kl`, every sample's nearest mode
    # ("nearest_mode") or the high-quality samples' only ("high_quality", PacGAN's); gan_ablate/metrics/modes.py
    reverse_kl: str = "nearest_mode"
    interpolation: str = "slerp"  # latent interpolation grids of image runs: slerp or lerp
    primary: str = "raw"        # the generator a report compares first: raw or ema
    # the generators evaluation scores: "both" (raw and EMA G, each with its own columns) or "primary" (only
    # metrics.primary's; stacked MNIST's 26,000-sample mode count costs about 70 s per G on 2 CPU cores)
    generators: str = "both"
    # images: FID / KID / IS through torch-fidelity
    extractor: str = "domain"   # domain (a classifier of the data's labels, offline), inception, or none
    inception_weights: Optional[str] = None  # torch-fidelity's weights-inception-2015-12-05-6726825d.pth, offline
    image_samples: int = 2000   # generated (and real) images per evaluation
    stacked_samples: int = 26_000  # stacked MNIST: samples whose modes are counted (PacGAN/VEEGAN protocol)
    kid_subset_size: int = 1000
    # k of precision/recall (torch-fidelity's prc_neighborhood) and of density/coverage (prdc's nearest_k), each its
    # library's default, on the FID extractor's features (images) or the points (2-D)
    prc_neighborhood: int = 3
    prdc_nearest_k: int = 5
    cache_dir: str = "~/.cache/gan-ablate"  # domain classifiers and real-data statistics
    # K >= 2: the final raw and EMA G are also scored on K latent sets of their own (evaluation noise; 1: none)
    eval_repeats: int = 1
    # keep the G of the best periodic evaluation by select_metric (of metrics.primary's G) and score it on a held-out
    # latent set at the end; select_metric null: fid on images, kl on stacked MNIST, reverse_kl on 2-D mixtures
    select_best: bool = False
    select_metric: Optional[str] = None

    def __post_init__(self) -> None:
        check_choice("metrics.extractor", self.extractor, ("domain", "inception", "none"))
        check_range("metrics.image_samples", self.image_samples, 2)
        check_range("metrics.stacked_samples", self.stacked_samples, 1)
        check_range("metrics.kid_subset_size", self.kid_subset_size, 2)
        check_choice("metrics.interpolation", self.interpolation, ("slerp", "lerp"))
        check_choice("metrics.primary", self.primary, ("raw", "ema"))
        check_choice("metrics.generators", self.generators, ("both", "primary"))
        check_range("metrics.every", self.every, 0)
        check_range("metrics.n_samples", self.n_samples, 1)
        check_range("metrics.hq_sigmas", self.hq_sigmas, 0, low_open=True)
        check_choice("metrics.reverse_kl", self.reverse_kl, tuple(REVERSE_KL_DEFINITIONS))
        check_range("metrics.eval_repeats", self.eval_repeats, 1)
        check_choice("metrics.select_metric", self.select_metric, (None, *METRIC_DIRECTIONS))
        for k in ("prc_neighborhood", "prdc_nearest_k"):
            check_range(f"metrics.{k}", getattr(self, k), 1)
            for samples in ("n_samples", "image_samples"):  # every sample's k-th neighbour among the others
                if getattr(self, samples) <= getattr(self, k):
                    raise ConfigError(f"metrics.{samples}={getattr(self, samples)} must exceed metrics.{k}="
                                      f"{getattr(self, k)}: each sample's k-th nearest neighbour is among the others")


@dataclass
class LoggerConfig:
    wandb: bool = True
    csv: bool = True
    project: str = "gan-ablate"
    entity: Optional[str] = None
    # None: online when W&B credentials are set up, offline otherwise. Or "online" / "offline".
    mode: Optional[str] = None
    # how long the start waits for the W&B server; then the run logs offline, to be uploaded with `wandb sync`
    init_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        check_choice("logger.mode", self.mode, (None, "online", "offline"))
        check_range("logger.init_timeout_s", self.init_timeout_s, 0, low_open=True)


STRATEGIES = ("auto", "ddp", "ddp_spawn")


@dataclass
class TrainerConfig:
    max_steps: int = 3000       # training iterations (each: n_critic D updates, g_steps G updates)
    accelerator: str = "auto"
    devices: Any = 1            # per node; data.batch_size is per device
    strategy: str = "auto"      # auto | ddp | ddp_spawn (auto is ddp when devices > 1)
    num_nodes: int = 1
    precision: str = "32-true"
    log_every_n_steps: int = 50
    enable_progress_bar: bool = True

    def __post_init__(self) -> None:
        check_range("trainer.max_steps", self.max_steps, 1)
        check_choice("trainer.strategy", self.strategy, STRATEGIES)
        check_range("trainer.num_nodes", self.num_nodes, 1)
        check_range("trainer.log_every_n_steps", self.log_every_n_steps, 1)


DESIGNS = ("add_one", "leave_one_out", "factorial", "explicit", "fractional", "screening")
# design=fractional: the resolutions pyDOE3's two-level fractions are built and checked at (III: main effects clear
# of each other, IV: also of two-way interactions, V: two-way interactions clear of each other too)
RESOLUTIONS = (3, 4, 5)


@dataclass
class AblationConfig:
    """What `-m hydra/sweeper=ablation` sweeps (hydra_plugins/gan_ablate_sweepers). The sweeper fills
    design/cell/reference of every job it launches; a plain `-m` sweep leaves them unset."""
    design: str = "add_one"     # add_one | leave_one_out | factorial | explicit | fractional | screening
    tricks: list[str] = field(default_factory=list)      # the tricks under study
    baseline: list[str] = field(default_factory=list)    # tricks every cell keeps
    cells: list[list[str]] = field(default_factory=list)  # design=explicit: the combinations
    seeds: int = 3              # seeds 0..N-1 for every cell
    max_cells: int = 64         # factorial designs larger than this are refused...
    force: bool = False         # ...unless forced
    resolution: Optional[int] = None  # design=fractional: 3, 4 or 5; unset: 4
    cell: Optional[str] = None       # this job's cell, e.g. "+spectral_norm" or "-ema"
    reference: Optional[str] = None  # the cell the others are compared with

    def __post_init__(self) -> None:
        check_choice("ablation.design", self.design, DESIGNS)
        check_range("ablation.seeds", self.seeds, 1)
        check_range("ablation.max_cells", self.max_cells, 1)
        if self.resolution is not None:
            check_choice("ablation.resolution", self.resolution, RESOLUTIONS)
            if self.design != "fractional":
                raise ConfigError(f"ablation.resolution={self.resolution} applies to ablation.design=fractional only "
                                  f"(here {self.design}); leave it unset")


@dataclass
class CheckpointConfig:
    """Every run keeps `checkpoints/last.ckpt` in its folder; starting the run again resumes from it."""
    every: int = 500            # iterations between checkpoints (0: only on SIGUSR1/SIGTERM)
    resume: bool = True         # false: start over even when last.ckpt exists

    def __post_init__(self) -> None:
        check_range("checkpoint.every", self.every, 0)


@dataclass
class TrainConfig:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # torch.compile G and D (in place: same parameters, same checkpoints); pays a compile on start
    compile: bool = False
    ablation: AblationConfig = field(default_factory=AblationConfig)
    # trick name -> its parameters; the keys, in order, are the active tricks
    trick: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0)


# The EMA keys the `ema` trick exposes as trick.ema.* (its Params, gan_ablate/conf/trick/ema.yaml): their defaults
# are EmaConfig's, handed to ema.yaml as the stored config `ema_trick_defaults` so that they are stated here only
EMA_TRICK_KEYS = ("decay", "every", "start")


def register_configs() -> None:
    store = ConfigStore.instance()
    store.store(name="train_schema", node=TrainConfig)
    # a plain mapping, not a schema: trick.ema's keys and types are its Params' business (tricks/base.parse_params)
    store.store(name="ema_trick_defaults", node={key: getattr(EmaConfig, key) for key in EMA_TRICK_KEYS})


def _unknown_keys(node: DictConfig, schema: type, prefix: str = ""):
    """Keys of `node` that its dataclass does not declare (Hydra lets `+key=value` add them)."""
    hints = typing.get_type_hints(schema)
    for key in node.keys():
        if key not in hints:
            yield f"{prefix}{key}", [f.name for f in dataclasses.fields(schema)]
        elif dataclasses.is_dataclass(hints[key]) and isinstance(node[key], DictConfig):
            yield from _unknown_keys(node[key], hints[key], f"{prefix}{key}.")


def validate(cfg: DictConfig) -> TrainConfig:
    """Check keys and ranges of the whole config; raises ConfigError naming the first bad key."""
    for key, allowed in _unknown_keys(cfg, TrainConfig):
        raise ConfigError(f"{key} is not a config key; allowed here: {', '.join(allowed)}")
    return OmegaConf.to_object(cfg)  # builds the dataclasses, which run their range checks
