"""The embedded sandbox: a local AWS emulator (moto server) and the CML simulator, with a seeded demo fleet."""
