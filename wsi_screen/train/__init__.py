"""Training-side code: datasets, splits, loops, metrics. Never imported by inference."""
