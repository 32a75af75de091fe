"""Clusters: checking profiles, Kubernetes PyTorchJobs, and the S3 storage fix."""
