"""Two admissions racing for the last unit of a pool never both succeed: real concurrent clients
against two servers on one database (one in this process, one a separate ``slotwise serve``
process), on SQLite and on PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy import func, select

from quota.store import Store
from quota.store.schema import WorkloadRow
from slotwise.server.app import create_app
from tests.quota_fixtures import ACTOR, serve_in_subprocess, serve_in_thread

pytest_plugins = ["tests.quota_fixtures"]

CLIENTS = 16
ROUNDS = 3


def test_racing_admissions_for_the_last_unit(loaded, database_url):
    token = loaded.create_token("ops", "admin", None, ACTOR)
    headers = {"Authorization": f"Bearer {token}"}
    in_process = Store(database_url)  # a second Store object, as a second replica would hold
    try:
        with serve_in_thread(create_app(in_process)) as first, serve_in_subprocess(database_url) as second:
            clients = [httpx.Client(base_url=base, headers=headers, timeout=60) for base in (first, second)]
            try:
                for round_ in range(ROUNDS):
                    barrier = threading.Barrier(CLIENTS)

                    def race(i: int) -> dict:
                        barrier.wait()
                        body = {"key": f"r{round_}-{i}", "pool": "solo", "charge": {"nvidia.com/gpu": 1}}
                        response = clients[i % 2].post("/quota/admissions", json=body)
                        assert response.status_code == 200, response.text
                        return response.json()

                    with ThreadPoolExecutor(CLIENTS) as pool:
                        decisions = list(pool.map(race, range(CLIENTS)))
                    assert Counter(d["decision"] for d in decisions) == {"admit": 1, "wait": CLIENTS - 1}, decisions
                    with loaded.engine.connect() as c:
                        assert c.execute(select(func.count()).select_from(WorkloadRow)).scalar() == 1
                    winner = next(d["key"] for d in decisions if d["decision"] == "admit")
                    assert clients[round_ % 2].delete(f"/quota/admissions/{winner}").status_code == 200
            finally:
                for c in clients:
                    c.close()
    finally:
        in_process.close()
    admitted = [e.subject for e in loaded.audit(1000) if e.action == "admit"]
    assert len(admitted) == ROUNDS and not loaded.ledger().workloads
