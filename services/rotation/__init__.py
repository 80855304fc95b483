"""Rotation functions of the secrets the stack generates (issue: deploy-ready, item 7)."""
