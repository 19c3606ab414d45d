"""Publishing the export folder: to the Hugging Face Hub, or through the same calls to a local folder."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Protocol

LOCAL_PREFIX = "file://"


class DatasetRepos(Protocol):
    """The part of huggingface_hub.HfApi that publishing uses."""

    def create_repo(self, repo_id: str, *, repo_type: str, exist_ok: bool): ...

    def upload_folder(
        self, *, repo_id: str, folder_path: str | Path, repo_type: str, commit_message: str
    ): ...


class LocalRepos:
    """Dataset repos as folders under `root`: a mirror without a network, and what the tests publish to."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def create_repo(self, repo_id: str, *, repo_type: str, exist_ok: bool) -> Path:
        path = self.root / repo_type / repo_id
        path.mkdir(parents=True, exist_ok=exist_ok)
        return path

    def upload_folder(
        self, *, repo_id: str, folder_path: str | Path, repo_type: str, commit_message: str
    ) -> Path:
        dest = self.root / repo_type / repo_id
        # Like a commit: files not in the folder stay, files in it are replaced.
        shutil.copytree(folder_path, dest, dirs_exist_ok=True)
        (dest / ".last_commit").write_text(commit_message + "\n")
        return dest


def repos_for(target: str) -> tuple[DatasetRepos, str]:
    """(repos, repo_id) for config export.push_to_hub: file:///folder is local, anything else the Hub.

    >>> repos, repo_id = repos_for("file:///tmp/mirror")
    >>> type(repos).__name__, repo_id
    ('LocalRepos', 'journey-data')
    """
    if target.startswith(LOCAL_PREFIX):
        return LocalRepos(target.removeprefix(LOCAL_PREFIX)), "journey-data"
    from huggingface_hub import HfApi

    # HfApi reads the token from HF_TOKEN or the login cache; it is never part of the config.
    return HfApi(), target


def push_to_hub(folder: str | Path, repos: DatasetRepos, repo_id: str, message: str):
    """Create the dataset repo if needed and upload the folder (parquet files, card, dataset_info.json)."""
    repos.create_repo(repo_id, repo_type="dataset", exist_ok=True)
    return repos.upload_folder(
        repo_id=repo_id, folder_path=folder, repo_type="dataset", commit_message=message
    )
