"""A refused order in plain words: "Fruit 3 is too long: at most 64 characters." rather than pydantic's
`body.fruits.2: String should have at most 64 characters`. The web page checks an order before sending it
with the same sentences (app.js `problems`), so a person reads the same words whichever refuses it; `detail`
keeps each error's `loc` and `type` for programs."""

import json

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from salad.contracts.orders import MAX_PRIORITY, MIN_PRIORITY
from salad.core.web import describe_validation_error, validation_error_handler

NAME_RULE = "must start with a letter or a digit and hold only letters, digits, spaces and . ' - _"


def quoted(value) -> str:
    """As the page's JSON.stringify quotes it (control characters escaped, other characters as they are)."""
    return json.dumps(value, ensure_ascii=False)


def plain(error: dict) -> str | None:
    """The sentence for one error of an order's body, or None when it is not one of an order's fields."""
    loc, kind, ctx = tuple(error.get("loc", ())), error.get("type", ""), error.get("ctx") or {}
    if loc[:1] != ("body",):
        return None
    if loc[1:] == ("fruits",):
        if kind in ("missing", "too_short"):
            return "Choose at least one fruit."
        if kind == "too_many_fruits":
            return f"A salad holds at most {ctx['max']} fruits; this one has {ctx['got']}."
        if kind == "fruit_too_long":
            return f"Fruit {ctx['position'] + 1} is too long: at most {ctx['max']} characters."
        if kind == "list_type":
            return "The fruits must be a list of names."
    if len(loc) == 3 and loc[1] == "fruits" and isinstance(loc[2], int):
        which = f"Fruit {loc[2] + 1}"
        if kind == "string_type":
            return f"{which} must be a name, not {quoted(error.get('input'))}."
        if kind == "string_too_short":
            return f"{which} is empty: type a name or remove the extra comma."
        if kind == "string_pattern_mismatch":
            return f"{which} ({quoted(error.get('input'))}) {NAME_RULE}."
    if loc[1:] == ("priority",):
        return f"Priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}."
    return None


async def plain_validation_errors(request: Request, exc: RequestValidationError) -> JSONResponse:
    """Shared's 422: plain sentences for an order's fields, the field's path for anything else."""
    errors = exc.errors()
    if not any(plain(e) for e in errors):
        return await validation_error_handler(request, exc)
    detail = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in errors]
    message = " ".join(dict.fromkeys(plain(e) or describe_validation_error(e) + "." for e in errors))
    return JSONResponse(status_code=422, content={"message": message, "detail": detail})
