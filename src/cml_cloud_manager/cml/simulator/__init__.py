"""A CML 2.9 controller simulator that serves many hosts from one process (see `server`).

Modules: `server` (the Simulator, its control API, serving), `api` (CML's REST endpoints), `state` (hosts, labs,
nodes in memory), `payloads` (response bodies), `topology` (topology YAML), `seed` (a host's labs and history
from its key).
"""

from cml_cloud_manager.cml.simulator.server import RunningSimulator, Simulator, run_simulator, serve_in_thread

__all__ = ["RunningSimulator", "Simulator", "run_simulator", "serve_in_thread"]
