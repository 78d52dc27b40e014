"""The admin HTTP API (/api/v1): auth (JWT and API keys), routes, and its OpenAPI document."""
