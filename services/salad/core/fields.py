"""Field types shared by the APIs: what the database can store, refused at the door otherwise."""

from typing import Annotated

from fastapi import Path
from pydantic import Field, StringConstraints

MAX_ID = 2**31 - 1  # ids are PostgreSQL `integer`s
MAX_TEXT = 10_000  # characters of a result, an error or a failure reason

DbId = Annotated[int, Field(ge=1, le=MAX_ID)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255,
                                        pattern=r"^[^\x00-\x1f\x7f/]+$")]  # a worker's name; goes in URLs
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]  # PostgreSQL refuses NUL
