//! The HTTP API: admin tenant routes, `/api/ping`, `/healthcheck`, tenant health.
