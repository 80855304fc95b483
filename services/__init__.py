"""Code that runs on the media platform: the API Lambda, the media worker and the schema
migration function."""
