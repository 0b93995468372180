"""`python -m cml_cloud_manager.apps.access_page > docs/access.md`: the access page of the composed app."""

from __future__ import annotations

from ..auth.table import markdown
from ..config import ProcessRole, load_settings
from .api import create_app

if __name__ == "__main__":
    print(markdown(create_app(ProcessRole.API, load_settings(auth_mode="none"))), end="")
