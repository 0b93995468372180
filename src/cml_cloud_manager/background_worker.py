"""`python -m cml_cloud_manager.background_worker`: the worker role (jobs and commands, no public HTTP)."""

from .cli import run_role

if __name__ == "__main__":
    run_role("worker")
