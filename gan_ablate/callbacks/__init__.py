from gan_ablate.callbacks.evaluation import EvaluationCallback  # noqa: F401
