"""The pipeline's steps: one module per Snakemake rule and DVC stage, each with its flags (`add_arguments`), `main`
and `run`. A step imports helpers from tunemake, never another step: what two steps share has its own module there.
This file imports nothing, so running one step loads only what it needs.
"""
