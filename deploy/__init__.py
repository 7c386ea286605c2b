"""A production-shaped cluster on one machine, and the drills that prove failover.

deploy/cluster.py builds it in network namespaces (docs/operations-scaling.md): nginx in front,
three app hosts (gunicorn for HTTP, daphne for websockets), Redis with a replica and three
Sentinels, PostgreSQL. deploy/drills/ breaks it under load and checks every frame clients got.
Only the standard library is imported at module level outside deploy/drills, so that
``make cluster-down`` works with any python3, even without the project's venv.
"""
