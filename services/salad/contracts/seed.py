"""The seed document's routes, answered as it describes: Shared's /create_task/ and /get_tasks_to_do/,
Master's /send_task, /result and /send_command."""

from pydantic import BaseModel

from salad.contracts.orders import FruitName
from salad.contracts.work import WorkerName
from salad.core.fields import DbId, Text


class SeedMessage(BaseModel):
    message: str


# --- Shared ------------------------------------------------------------------------------------
class SeedFruit(BaseModel):
    fruit: FruitName


# --- Master ------------------------------------------------------------------------------------
class SeedWorker(BaseModel):
    nom_worker: WorkerName


class SeedTask(BaseModel):
    id: DbId
    fruit: str
    execution_time: int
    nom_worker: WorkerName


class SeedAssignment(BaseModel):
    id: int
    fruit: str
    execution_time: int


class SeedCommand(SeedMessage):
    preparation_time: float | None


class SeedResult(BaseModel):
    task: SeedTask
    result: Text | None = None
