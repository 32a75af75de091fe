"""Data in: reading sources into canonical records (formats/), splitting, JSONL, and rendering conversations with chat templates."""
