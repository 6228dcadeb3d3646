"""Which side of each evaluation metric is better, and which are judged at the end of training. A leaf module:
config validation, records, reports and W&B summaries all read it, and it imports nothing of the package."""

# +1: higher is better, -1: lower is better (reports mark the better side, W&B keeps the best value)
METRIC_DIRECTIONS = {"modes": 1, "hq": 1, "reverse_kl": -1, "fid": -1, "kid": -1, "is": 1, "kl": -1,
                     "precision": 1, "recall": 1, "density": 1, "coverage": 1,
                     "reverse_kl_nearest_mode": -1}
# judged at the end of training, not at their best (precision and recall trade off: the best of each would come
# from different evaluations)
FINAL_METRICS = ("modes", "hq", "reverse_kl", "kl", "precision", "recall", "density", "coverage",
                 "reverse_kl_nearest_mode")
# the definitions of the 2-D mixtures' reverse KL (metrics.reverse_kl, gan_ablate/metrics/modes.py): the histogram
# over the modes whose KL to the uniform one is recorded as `reverse_kl`, as reports name it
REVERSE_KL_DEFINITIONS = {"nearest_mode": "every sample, at its nearest mode",
                          "high_quality": "the high-quality samples only, PacGAN's"}


def reverse_kl_definition(config: dict) -> str:
    """The definition a run's resolved config recorded `reverse_kl` under (records from before the option: the
    nearest-mode one, the only one then)."""
    return (config.get("metrics") or {}).get("reverse_kl", "nearest_mode")
