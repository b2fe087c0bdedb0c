"""gridplace: plans where LLM inference runs on a heterogeneous GPU grid, and puts it there.

Subpackages, and the one direction their imports flow (DESIGN.md, "The house"):
``specs`` <- ``hal``, ``topology`` <- ``planner`` <- ``sim``, ``executor`` <- ``api``.
"""

__version__ = "0.1.0"
