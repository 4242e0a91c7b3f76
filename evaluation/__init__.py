"""The paper's evaluation protocol on a labelled test split."""
