"""Flask admin app and JSON API."""
