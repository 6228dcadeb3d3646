"""A run's evaluation, assembled from its config and data: the fixed latent batch, the evaluator (mode metrics,
Stacked MNIST's modes, FID/KID/IS or only sample grids), the evaluation callback and metrics.select_best's
choice. What the evaluation is depends on one dispatch, evaluation_kind()."""
from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Optional

import torch

from gan_ablate.callbacks import EvaluationCallback
from gan_ablate.callbacks.evaluation import LatentOnly, LatentSets
from gan_ablate.callbacks.selection import BestSelection
from gan_ablate.config import ConfigError, TrainConfig
from gan_ablate.data.toy import MixtureDataModule
from gan_ablate.metrics.modes import ModeEvaluator
from gan_ablate.metrics.samples import ImageSampler
from gan_ablate.nets.layers import sample_latent
from gan_ablate.plots import plot_images, plot_points
from gan_ablate.record import METRIC_DIRECTIONS

log = logging.getLogger("gan_ablate")

# what metrics.select_best chooses by, per kind of evaluation: the metrics it gives, the default first (a
# continuous one: modes are integers, many evaluations tie)
FIDELITY_DIVERSITY = ("precision", "recall", "density", "coverage")
SELECTABLE = {"mixture": ("reverse_kl", "modes", "hq", *FIDELITY_DIVERSITY), "stacked_mnist": ("kl", "modes"),
              "images": ("fid", "kid", "is", *FIDELITY_DIVERSITY)}
GRID_SAMPLES = 64  # the images an evaluation without metrics draws


def evaluation_kind(settings: TrainConfig, dm) -> str:
    """What the run's evaluation measures: "mixture" (modes of a 2-D mixture), "stacked_mnist" (the modes and KL
    of its 1,000 digit triples), "images" (FID/KID/IS on metrics.extractor's features) or "grids" (images with
    metrics.extractor=none: sample grids only, no metrics)."""
    if isinstance(dm, MixtureDataModule):
        return "mixture"
    if settings.metrics.extractor == "none":
        return "grids"
    return "stacked_mnist" if settings.data.name == "stacked_mnist" else "images"


def evaluation_latent(settings: TrainConfig, dm) -> torch.Tensor:
    """The fixed latent batch every evaluation of the run uses: from the run's seed, not from the
    training stream, and the same on every rank (each generates its share of it)."""
    m, model = settings.metrics, settings.model
    kind = evaluation_kind(settings, dm)
    # grids keep the first GRID_SAMPLES of the images' draw
    n = {"mixture": m.n_samples, "stacked_mnist": m.stacked_samples, "images": m.image_samples,
         "grids": m.image_samples}[kind]
    z = sample_latent(n, model.z_dim, model.latent, generator=torch.Generator().manual_seed(settings.seed))
    return z[:GRID_SAMPLES] if kind == "grids" else z


def image_evaluator(settings: TrainConfig, dm, z: torch.Tensor):
    """FID/KID/IS on the chosen extractor, or only sample grids with metrics.extractor=none."""
    from gan_ablate.metrics.domain import load_or_train, weights_file
    from gan_ablate.metrics.fidelity import (DOMAIN_EXTRACTOR, INCEPTION_EXTRACTOR, ImageFidelityEvaluator,
                                             check_inception, registered_reference)

    m = settings.metrics
    kind = evaluation_kind(settings, dm)
    if kind == "grids":
        return ImageSampler(z)
    if kind == "stacked_mnist":
        from gan_ablate.data.images import MnistDataModule
        from gan_ablate.metrics.stacked import StackedMnistEvaluator

        # the classifier learns the fixed MNIST set, however the run draws its stacked triples (data.points)
        mnist = MnistDataModule(dataclasses.replace(settings.data, name="mnist", points="fixed"), 1).prepare()
        classifier, info = load_or_train(mnist.data, mnist.labels, Path(m.cache_dir).expanduser() / "extractors", "mnist")
        return StackedMnistEvaluator(z, classifier, info)
    if m.extractor == "inception":
        check_inception(m.inception_weights)
        info = {"extractor": INCEPTION_EXTRACTOR}
        weights = None if m.inception_weights is None else Path(m.inception_weights).expanduser()
        name = INCEPTION_EXTRACTOR
    else:
        if dm.labels is None:
            raise ConfigError(f"metrics.extractor=domain needs labelled data; data={settings.data.name} has none: "
                              "use metrics.extractor=inception or metrics.extractor=none")
        cache = Path(m.cache_dir).expanduser() / "extractors"
        _, info = load_or_train(dm.data, dm.labels, cache, settings.data.name)
        log.info("domain classifier %s: held-out accuracy %.4f", info["extractor"], info["test_accuracy"])
        weights, name = weights_file(cache, settings.data.name, dm.data, dm.labels), DOMAIN_EXTRACTOR
    return ImageFidelityEvaluator(z, dm.data, name, weights, info, Path(m.cache_dir) / "real-stats",
                                  m.kid_subset_size,
                                  registered=registered_reference(settings.data.name, settings.data.root, name),
                                  prc_neighborhood=m.prc_neighborhood, prdc_nearest_k=m.prdc_nearest_k)


def build_evaluation(settings: TrainConfig, dm, run_dir: Path, scoring: bool = True) -> EvaluationCallback:
    """The evaluation callback; with scoring=False (ranks other than 0) it only generates samples."""
    m = settings.metrics
    kind = evaluation_kind(settings, dm)
    z = evaluation_latent(settings, dm)
    if kind == "grids" and (m.eval_repeats > 1 or m.select_best):
        asked = f"metrics.eval_repeats={m.eval_repeats}" if m.eval_repeats > 1 else "metrics.select_best=true"
        raise ConfigError(f"{asked} needs metrics, and metrics.extractor=none measures none on images: "
                          "use metrics.extractor=domain or inception")
    more = dict(latent_sets=LatentSets(len(z), settings.model.z_dim, settings.model.latent, settings.seed),
                repeats=m.eval_repeats)
    if not scoring:
        return EvaluationCallback(LatentOnly(z), m.every, **more)
    if kind == "mixture":
        modes = dm.modes()
        evaluator = ModeEvaluator(modes, settings.data.std, z, hq_sigmas=m.hq_sigmas,
                                  prc_neighborhood=m.prc_neighborhood, prdc_nearest_k=m.prdc_nearest_k,
                                  reverse_kl=m.reverse_kl)
        plot = functools.partial(plot_points, modes=modes)  # a partial, not a lambda: ddp_spawn pickles it
    else:
        evaluator = image_evaluator(settings, dm, z)
        plot = plot_images
    return EvaluationCallback(evaluator, m.every, sample_dir=run_dir / "samples", plot=plot,
                              interpolation=None if kind == "mixture" else m.interpolation, **more)


def build_selection(settings: TrainConfig, dm, evaluation: EvaluationCallback) -> Optional[BestSelection]:
    """metrics.select_best's callback (None without it), choosing by metrics.select_metric of metrics.primary's G."""
    m = settings.metrics
    if not m.select_best:
        return None
    selectable = SELECTABLE[evaluation_kind(settings, dm)]  # not "grids": build_evaluation refused select_best there
    metric = m.select_metric or selectable[0]
    if metric not in selectable:
        raise ConfigError(f"metrics.select_metric={metric} is not measured on data={settings.data.name}; "
                          f"choose one of: {', '.join(selectable)}")
    return BestSelection(evaluation, m.primary, metric, METRIC_DIRECTIONS[metric])
