"""A trained run loaded for scoring, and scoring of any video (detect)."""
