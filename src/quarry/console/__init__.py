"""The web console: static HTML, CSS and JavaScript served at /console/."""

from pathlib import Path

CONSOLE_DIR = Path(__file__).resolve().parent
