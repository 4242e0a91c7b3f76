"""Every step of a config in one call: pre-processing, training, evaluation."""
