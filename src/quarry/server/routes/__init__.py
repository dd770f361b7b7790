"""HTTP route groups. Each module has ``install(api, engine, settings)``; app.py lists them."""
