"""Sample-quality metrics. Every evaluator names what it measures with, in `extractor`."""
