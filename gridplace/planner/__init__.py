"""The planner: the performance model (``perfmodel``), compiling specs into candidate options,
the CP-SAT model, solving, explanations and baselines.

Must not: import ``hal``, ``topology`` internals or networkx (it gets a latency lookup), touch a GPU
or the network.
"""
