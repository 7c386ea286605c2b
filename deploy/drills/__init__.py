"""Drills against the cluster of deploy/cluster.py: a fault under load, every frame checked.

``python -m deploy.drills N`` (``make drill-N``): see deploy/drills/__main__.py. The clients
(client.py) log in with real SSH keys and reconnect as the product's client does; load.py runs a
bounded load and checker.py judges what every socket received against the database; failover.py
holds drills 1-3 (Redis primary killed, an app host partitioned, a rolling restart) and
latency.py drill 4 (50 ms between hosts); faults.py injects the faults.
"""
