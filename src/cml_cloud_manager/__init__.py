"""CML Cloud Manager: API server + background worker for fleets of CML workers on AWS."""

__version__ = "0.1.0"
