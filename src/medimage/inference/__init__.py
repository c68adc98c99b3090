"""Serving: the LiteRT classifier shared by the inference Lambda, `medimage predict` and `evaluate`."""
