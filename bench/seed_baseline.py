"""The seed's system, rebuilt from the seed document for the makespan comparison: Shared, Master and workers.

Written from the seed's own code as the document shows it (a FastAPI Shared with a SQLite `fruits` table,
a Master holding the salad in memory and handing fruits out first in, first out, workers that sleep 3 s
when Master has nothing for them). Kept as the seed had it, on purpose: Master asks Shared for new fruits on
every /send_task and blocks its event loop on that call; one salad at a time.

Changes, for the benchmark only: fruit times and the 3 s idle sleep are multiplied by SCALE (0.01, as salad's
fruits are); execution times come from a seeded random.Random (the same draws as salad's Master with
SALAD_RANDOM_SEED); /send_command also returns the wall-clock time the salad was finished and its fruit times;
IPs are arguments; httpx replaces requests.

    python -m bench.seed_baseline shared PORT DB_PATH
    python -m bench.seed_baseline master PORT SHARED_URL DB_PATH RANDOM_SEED
    python -m bench.seed_baseline worker MASTER_URL NAME SCALE
"""

import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse

IDLE_SLEEP = 3.0  # seconds: the seed's worker waits this long when Master has no task
POLL = 0.002  # seconds between the harness's reads of /send_command


# --- Shared (seed: shared_api.py) ----------------------------------------------------------------
def shared_app(db_path: str) -> FastAPI:
    app = FastAPI()
    connection = sqlite3.connect(db_path)
    connection.execute("DROP TABLE IF EXISTS fruits")
    connection.execute("CREATE TABLE fruits (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    connection.commit()
    connection.close()

    @app.post("/create_task/")
    async def create_task(liste_fruits: list[dict]):
        connection = sqlite3.connect(db_path)
        for fruit in liste_fruits:
            connection.execute("INSERT INTO fruits (name) VALUES (?)", (fruit["fruit"],))
        connection.commit()
        connection.close()
        return JSONResponse(status_code=200, content={"message": "Task created"})

    @app.get("/get_tasks_to_do/")
    async def get_tasks():
        connection = sqlite3.connect(db_path)
        fruits = [{"fruit": row[0]} for row in connection.execute("SELECT name FROM fruits ORDER BY id")]
        connection.execute("DELETE FROM fruits")
        connection.commit()
        connection.close()
        return JSONResponse(content=fruits, status_code=200 if fruits else 202)

    return app


# --- Master (seed: master_api.py, model.py) ------------------------------------------------------
def master_app(shared_url: str, db_path: str, random_seed: int) -> FastAPI:
    app = FastAPI()
    rng = random.Random(random_seed)
    shared = httpx.Client(timeout=30)
    state = {"start_time": None, "tasks_to_do": [], "tasks_being_done": {}, "times": []}
    connection = sqlite3.connect(db_path)
    connection.execute("DROP TABLE IF EXISTS commands")
    connection.execute(
        "CREATE TABLE commands (message TEXT NOT NULL, time REAL NOT NULL, finished_at REAL, times TEXT)"
    )
    connection.commit()
    connection.close()

    @app.post("/send_task")
    async def send_task(nom_worker: dict):
        reponse_shared = shared.get(f"{shared_url}/get_tasks_to_do/")  # blocking, as the seed's requests.get
        if reponse_shared.status_code == 200:
            fruits = reponse_shared.json()
            state["tasks_to_do"] = [
                {"id": i, "fruit": f["fruit"], "execution_time": rng.randint(4, 20)}
                for i, f in enumerate(fruits)
            ]
            state["times"] = [t["execution_time"] for t in state["tasks_to_do"]]
            state["start_time"] = None
            state["tasks_being_done"] = {}
        if state["start_time"] is None:
            state["start_time"] = time.time()
        if state["tasks_to_do"]:
            task = state["tasks_to_do"].pop(0)
            state["tasks_being_done"][task["id"]] = task
            return JSONResponse(content=task)
        return JSONResponse(content={"message": "No more tasks"}, status_code=202)

    @app.post("/result")
    async def receive_result(result_data: dict):
        task = dict(result_data.get("task"))
        state["tasks_being_done"].pop(int(task.get("id")), None)
        if not state["tasks_to_do"] and not state["tasks_being_done"]:
            end_time = time.time()
            connection = sqlite3.connect(db_path)
            connection.execute(
                "INSERT INTO commands (message, time, finished_at, times) VALUES (?, ?, ?, ?)",
                (
                    "The salad is ready! Enjoy!",
                    end_time - state["start_time"],
                    end_time,
                    ",".join(map(str, state["times"])),
                ),
            )
            connection.commit()
            connection.close()

    @app.get("/send_command")
    async def send_command():
        connection = sqlite3.connect(db_path)
        rows = connection.execute("SELECT message, time, finished_at, times FROM commands").fetchall()
        connection.execute("DELETE FROM commands")
        connection.commit()
        connection.close()
        if rows:
            message, preparation_time, finished_at, times = rows[0]
            return JSONResponse(
                content={
                    "message": message,
                    "preparation_time": preparation_time,
                    "finished_at": finished_at,
                    "times": [int(t) for t in times.split(",")],
                }
            )
        return JSONResponse(content={"message": "No command"}, status_code=202)

    return app


# --- Worker (seed: worker.py) --------------------------------------------------------------------
def worker_loop(master_url: str, name: str, scale: float) -> None:
    client = httpx.Client(timeout=30)

    def get_task():
        response = client.post(f"{master_url}/send_task", json={"nom_worker": name})
        return response.json() if response.status_code == 200 else None

    while True:
        task_data = get_task()
        while task_data:
            time.sleep(task_data["execution_time"] * scale)
            result = (
                f"{task_data['id']} {task_data['fruit']} prepared in {task_data['execution_time']} seconds"
            )
            client.post(
                f"{master_url}/result", json={"task": {**task_data, "nom_worker": name}, "result": result}
            )
            task_data = get_task()
        time.sleep(IDLE_SLEEP * scale)


# --- The harness's side --------------------------------------------------------------------------
def run_salads(salads: int, random_seed: int, scale: float, workers: int, log_dir: Path) -> list[dict]:
    """Start the seed system, order `salads` salads of 10 fruits one after another; each one's timings."""
    from bench.infra import free_port, stop_process, wait_for_port

    log_dir.mkdir(parents=True, exist_ok=True)
    log = (log_dir / "seed-baseline.log").open("ab")
    shared_port, master_port = free_port(), free_port()
    shared_url, master_url = f"http://127.0.0.1:{shared_port}", f"http://127.0.0.1:{master_port}"
    me = [sys.executable, "-m", "bench.seed_baseline"]
    processes = [
        subprocess.Popen(
            [*me, "shared", str(shared_port), str(log_dir / "seed-shared.db")], stdout=log, stderr=log
        )
    ]
    processes.append(
        subprocess.Popen(
            [*me, "master", str(master_port), shared_url, str(log_dir / "seed-master.db"), str(random_seed)],
            stdout=log,
            stderr=log,
        )
    )
    try:
        wait_for_port(shared_port)
        wait_for_port(master_port)
        processes += [
            subprocess.Popen(
                [*me, "worker", master_url, f"worker-{i + 1}", str(scale)], stdout=log, stderr=log
            )
            for i in range(workers)
        ]
        results = []
        with httpx.Client(timeout=30) as client:
            time.sleep(1.0)
            for i in range(salads):
                fruits = [{"fruit": f"fruit{k}"} for k in range(10)]
                ordered = time.time()
                client.post(f"{shared_url}/create_task/", json=fruits).raise_for_status()
                deadline = time.monotonic() + 60
                while (response := client.get(f"{master_url}/send_command")).status_code != 200:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"seed baseline: salad {i + 1} not ready after 60 s")
                    time.sleep(POLL)
                body = response.json()
                results.append(
                    {
                        "times": body["times"],
                        "order_to_done": body["finished_at"] - ordered,
                        "start_to_done": body["preparation_time"],
                    }
                )
        return results
    finally:
        for process in reversed(processes):
            stop_process(process)
        log.close()


def main() -> None:
    import uvicorn

    role = sys.argv[1]
    if role == "shared":
        uvicorn.run(shared_app(sys.argv[3]), host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
    elif role == "master":
        uvicorn.run(
            master_app(sys.argv[3], sys.argv[4], int(sys.argv[5])),
            host="127.0.0.1",
            port=int(sys.argv[2]),
            log_level="warning",
        )
    elif role == "worker":
        try:
            worker_loop(sys.argv[2], sys.argv[3], float(sys.argv[4]))
        except KeyboardInterrupt:
            pass
    else:
        raise SystemExit(f"unknown role {role}")


if __name__ == "__main__":
    main()
