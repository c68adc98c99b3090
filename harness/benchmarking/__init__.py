"""The code that the scripts in benchmarks/ and the tests share: measurements printed as JSON, sides
compared in one run."""
