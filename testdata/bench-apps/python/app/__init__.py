"""A small Flask service that proxies and summarizes an upstream JSON API."""
