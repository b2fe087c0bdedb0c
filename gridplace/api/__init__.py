"""The faces of gridplace: the command line (and, later, the FastAPI service and its store).

Owns: mapping errors to exit codes (CLI) and HTTP codes (API); rendering results.
Must not: hold planning logic — it calls ``planner``, ``topology``, ``hal`` and ``specs``.
"""
