"""llama.cpp: its pinned sources, converting to GGUF, the importance matrix, and llama-server."""
