"""Training-side code: datasets, splits, augmentation, loops and metrics. Never imported by slide inference."""
