"""Replay harness (drills, cassette transport, scripted clock, journal): built in a later issue."""
