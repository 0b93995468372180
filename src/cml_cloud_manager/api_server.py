"""`python -m cml_cloud_manager.api_server`: the API role (no background jobs)."""

from .cli import run_role

if __name__ == "__main__":
    run_role("api")
