"""tunemake's commands beside the steps: dag, sync, sweep, launch, serve, show-tokens."""
