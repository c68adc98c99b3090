"""Talking to a deployed stack: its outputs, deploys, uploads and training executions."""
