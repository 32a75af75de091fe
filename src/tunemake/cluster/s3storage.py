"""A fix for Snakemake's S3 storage plugin, applied by the Snakefile (rules/common.smk), for the k8s profile.

snakemake-storage-plugin-s3 up to 0.3.6 remembers "not a directory" from the existence check made while the DAG is
built, so a directory output that a pod uploads later still looks missing to the Snakemake process
(MissingOutputException, snakemake/snakemake#870). The fix asks S3 again while the answer is no; a yes stays cached.
Newer versions are left alone: tests/test_no_shared_fs.py runs the k8s profile against a local S3 server and fails
if they still need it.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

LAST_AFFECTED = (0, 3, 6)  # the last version known to cache the missing directory


def ask_again_for_missing_directories() -> bool:
    """Patch the installed plugin if it is one of the affected versions; whether it was patched."""
    try:
        installed = tuple(int(part) for part in version("snakemake-storage-plugin-s3").split(".")[:3])
    except PackageNotFoundError:
        return False
    if installed > LAST_AFFECTED:
        return False
    from snakemake_storage_plugin_s3 import StorageObject

    def is_dir(self):
        if not self._is_dir:
            self._is_dir = any(self.get_subkeys())
        return self._is_dir

    StorageObject.is_dir = is_dir
    return True
