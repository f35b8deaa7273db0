"""Small helpers for the entry points: errors, config printing, logging, run dirs."""
