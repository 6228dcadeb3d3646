"""Turning a sweep's result.json records into answers."""
