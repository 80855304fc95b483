"""The API Lambda behind API Gateway (REST API, Lambda proxy integration)."""
