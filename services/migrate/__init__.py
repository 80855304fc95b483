"""The deploy-time schema migration function (Lambda)."""
