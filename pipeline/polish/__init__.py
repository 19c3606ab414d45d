"""Polishing journeys: the guard, the token budget, retry feedback and the guarded rounds."""
