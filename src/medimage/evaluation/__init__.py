"""Scoring a labeled tree of images with a classifier, and how the score holds up under shift."""
