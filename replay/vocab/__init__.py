"""Drill vocabulary added for particular drills (extra verbs, checks, seeds), one module per
topic; every module here is imported by `replay.registry.load_all`."""
