"""Code that runs on the media platform: the API Lambda and the media worker."""
