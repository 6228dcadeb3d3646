"""Fidelity vs diversity: precision and recall (Kynkäänniemi et al. 2019), density and coverage (Naeem et al. 2020).

All four compare k-nearest-neighbour balls of real and generated features (or, on 2-D data, points):
precision is the share of generated samples inside some real ball, recall the share of real samples inside
some generated ball, density counts the real balls around each generated sample (divided by k), coverage
is the share of real balls that hold a generated sample. Precision and recall are torch-fidelity's `prc`
(its k: `prc_neighborhood`, default 3, and its closed balls); density and coverage are the authors' code,
clovaai's `prdc` package (its k: `nearest_k`, default 5). Each keeps its library's k, so the numbers are
those the libraries' users publish. Higher is better for all four; density can exceed 1.
"""
from __future__ import annotations

import contextlib
import io

import torch
from prdc import compute_prdc
from torch_fidelity.metric_prc import prc_features_to_metric

PRC_NEIGHBORHOOD = 3  # torch-fidelity's default prc_neighborhood
PRDC_NEAREST_K = 5    # the nearest_k of prdc's README and of Naeem et al.'s experiments


def precision_recall_density_coverage(real: torch.Tensor, fake: torch.Tensor, prc_neighborhood: int = PRC_NEIGHBORHOOD,
                                      prdc_nearest_k: int = PRDC_NEAREST_K) -> dict:
    """The four metrics of `fake` against `real`, both (n, features); each set needs more points than its k.

    A non-finite generated sample (a diverging G) counts as infinitely far from every other: in no real
    ball and the centre of none that holds a real sample. Precision and density, means over the generated
    samples, are taken over the finite ones and scaled by their share; with no more finite samples than a
    k, no ball can be drawn and all four are 0."""
    real, fake = real.detach().cpu().float(), fake.detach().cpu().float()
    finite = fake[torch.isfinite(fake).all(dim=1)]
    if len(finite) <= max(prc_neighborhood, prdc_nearest_k):
        return dict.fromkeys(("precision", "recall", "density", "coverage"), 0.0)
    share = len(finite) / len(fake)
    pr = prc_features_to_metric(finite, real, prc_neighborhood=prc_neighborhood, verbose=False)
    with contextlib.redirect_stdout(io.StringIO()):  # compute_prdc prints the two set sizes on every call
        dc = compute_prdc(real.numpy(), finite.numpy(), nearest_k=prdc_nearest_k)
    return {"precision": share * pr["precision"], "recall": pr["recall"],
            "density": share * float(dc["density"]), "coverage": float(dc["coverage"])}
