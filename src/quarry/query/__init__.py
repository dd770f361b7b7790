"""Queries over records datasets: frozen query descriptions and their executors."""
