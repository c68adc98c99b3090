"""Benchmark harnesses behind `medimage bench`: measurements printed as JSON, sides compared in one run."""
