"""The report's parts: its plots, its tables, and the templates (templates/) the report step renders them with."""
