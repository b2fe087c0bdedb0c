"""The faces of gridplace: the command line, and the HTTP service (``app.create_app``, routes in
``routes/``, the SQLAlchemy store in ``store/``, run by ``gridplace serve``).

Owns: mapping errors to exit codes (CLI) and HTTP codes (API; the error tree is drawn in
``errors.py``, the store's in ``store/__init__.py``); rendering results.
Must not: hold planning logic — it calls ``planner``, ``topology``, ``hal`` and ``specs``.
"""
