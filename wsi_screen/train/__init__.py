"""Classifier training: datasets, splits, augmentation, the loop and its metrics."""
