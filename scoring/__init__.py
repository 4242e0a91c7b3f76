"""From object errors to frame scores: fusion with training statistics, smoothing, AUROC."""
