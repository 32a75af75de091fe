"""Scoring models: held-out rows, general prompts, degenerate answers, intervals and the headline numbers."""
