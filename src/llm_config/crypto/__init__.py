"""Encryption and key custody. Never logs, returns in errors, or stores a plaintext secret."""
