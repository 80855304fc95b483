"""Pieces shared by the API Lambda and the media worker."""
