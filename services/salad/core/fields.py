"""Field types shared by the APIs: what the database can store, refused at the door otherwise."""

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path
from pydantic import AfterValidator, Field, StringConstraints

MAX_ID = 2**31 - 1  # ids are PostgreSQL `integer`s
MAX_TEXT = 10_000  # characters of a result, an error or a failure reason

DbId = Annotated[int, Field(ge=1, le=MAX_ID, strict=True)]
IdPath = Annotated[int, Path(ge=1, le=MAX_ID)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255,
                                        pattern=r"^[^\x00-\x1f\x7f/]+$")]  # a worker's name; goes in URLs
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT, pattern=r"^[^\x00]*$")]  # PostgreSQL refuses NUL

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)  # no salad was made before; later than year 10000 overflows
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_utc(moment: datetime) -> datetime:
    """An aware moment in UTC within [EARLIEST, LATEST): 9999-12-31T23:59:59-14:00 is past year 9999 in UTC,
    which Python cannot represent, and a naive one has no meaning across machines."""
    if moment.tzinfo is None:
        raise ValueError("a time needs its UTC offset, e.g. 2026-01-01T12:00:00Z")
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("a time must be between 2000 and 9000") from None
    if not EARLIEST <= moment < LATEST:
        raise ValueError("a time must be between 2000 and 9000")
    return moment


Moment = Annotated[datetime, AfterValidator(in_utc)]
