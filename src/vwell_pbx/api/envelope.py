"""The request and response envelope shared by every transport.

Request: ``{"method": NAME, "argument": {...}}``; ``argument`` carries the credentials
(``login``, ``login2``, ``sha1``), an optional ``reqId`` echoed back, and the method's
own arguments. Response: ``{"err": null|msg, "errCode": null|code, "reqId": ..., ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from vwell_pbx.api.errors import BadRequest
from vwell_pbx.protocol.message import Message

if TYPE_CHECKING:
    from vwell_pbx.ami.client import ActionResult

JsonScalar = str | int | float | bool | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A decoded envelope: which method, its raw argument object, and the echo id."""

    method: str
    argument: dict[str, Any]
    req_id: JsonScalar


class Arguments(BaseModel):
    """Fields every method accepts. Method schemas subclass it.

    Strings arriving from forms are coerced where a number or flag is expected
    (``"1"`` is true, ``"5000"`` is 5000); numbers are accepted where text is expected
    (a phone number sent as a JSON number). Unknown keys are ignored, as the original did.

    **Empty means absent.** An *optional* argument given as ``""`` (or only spaces) or
    ``null`` is treated as not given, so it takes its default: the original's pages
    send ``timeout: ''`` for "no timeout", and jQuery encodes both ``''`` and ``null``
    as ``argument[timeout]=``. Required arguments keep their value (``from: ''`` is
    refused by the method, naming the argument). A schema that gives ``""`` a meaning
    of its own lists the argument in ``EMPTY_IS_A_VALUE``.

    A schema whose arguments are filters sets ``UNKNOWN_KEYS_ARE_ERRORS``: there a
    misspelt key (``extention``) would silently widen the answer, so it is refused,
    naming the key and the known ones.
    """

    model_config = ConfigDict(
        extra="ignore", coerce_numbers_to_str=True, populate_by_name=True, frozen=True
    )

    #: Optional arguments for which ``""`` is a value, not "absent" (by field name).
    EMPTY_IS_A_VALUE: ClassVar[frozenset[str]] = frozenset()
    #: Refuse keys that are not arguments of the method (``bad_request``).
    UNKNOWN_KEYS_ARE_ERRORS: ClassVar[bool] = False
    # The keys (names and aliases) that "empty means absent" applies to; computed once
    # per schema class when pydantic has built its fields.
    _absent_when_empty: ClassVar[frozenset[str]] = frozenset()

    login: str | None = None
    login2: str | None = None
    sha1: str | None = None
    secret: str | None = None
    pbx: str | None = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        cls._absent_when_empty = _optional_keys(cls)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_absent(cls, data: Any) -> Any:
        # type() first: isinstance against the Mapping ABC is a slow Python-level check,
        # and a decoded request is always a plain dict.
        if type(data) is not dict and not isinstance(data, Mapping):
            return data
        if cls.UNKNOWN_KEYS_ARE_ERRORS:
            _refuse_unknown_keys(cls, data)
        keys = cls._absent_when_empty
        # Usually nothing is blank: then the mapping is passed on as it is, not copied.
        if not any(_blank(data[key]) for key in keys & data.keys()):
            return data
        return {key: value for key, value in data.items() if not (key in keys and _blank(value))}


def _optional_keys(schema: type[Arguments]) -> frozenset[str]:
    keys: set[str] = set()
    for name, info in schema.model_fields.items():
        if info.is_required() or name in schema.EMPTY_IS_A_VALUE:
            continue
        keys.add(name)
        if info.alias:
            keys.add(info.alias)
    return frozenset(keys)


def _refuse_unknown_keys(schema: type[Arguments], data: Mapping[Any, Any]) -> None:
    known = {"reqId"}
    own: list[str] = []
    for name, info in schema.model_fields.items():
        key = info.alias or name
        known.add(key)
        if name not in Arguments.model_fields:
            own.append(key)
    for key in data:
        if key not in known:
            raise argument_error(
                str(key)[:40],
                "is not an argument of this method; its own are: " + ", ".join(own),
            )


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


Arguments._absent_when_empty = _optional_keys(Arguments)


def argument_error(key: str, problem: str) -> PydanticCustomError:
    """A validation error about ``key`` *inside* the field being validated, so that
    the message names the full path (``argument.fields.action must be ...``).

    Raise it from a field validator; ``describe_validation_error`` appends ``key`` to
    the field's own path.
    """
    return PydanticCustomError("nested_argument", problem, {"at": key})


ArgsT = TypeVar("ArgsT", bound=Arguments)

CREDENTIAL_KEYS = frozenset({"login", "login2", "sha1", "secret"})


def parse_envelope(obj: object) -> Request:
    """Check the envelope's shape; the method's own arguments are validated later."""
    if type(obj) is not dict and not isinstance(obj, Mapping):
        raise BadRequest(
            'the request must be a JSON object like {"method": "send", "argument": {...}}'
        )
    method = obj.get("method")
    if not isinstance(method, str) or not method:
        raise BadRequest("method is required and must be a non-empty string")
    argument = obj.get("argument", {})
    if argument is None:
        argument = {}
    if type(argument) is not dict and not isinstance(argument, Mapping):
        raise BadRequest("argument must be an object")
    req_id = argument.get("reqId")
    if not isinstance(req_id, str | int | float | bool) and req_id is not None:
        raise BadRequest("argument.reqId must be a JSON scalar (string, number or boolean)")
    return Request(method=method, argument=dict(argument), req_id=req_id)


def req_id_of(obj: object) -> JsonScalar:
    """Best-effort ``reqId`` of an envelope that failed validation, so errors still echo it."""
    if isinstance(obj, Mapping):
        argument = obj.get("argument")
        if isinstance(argument, Mapping):
            value = argument.get("reqId")
            if isinstance(value, str | int | float | bool):
                return value
    return None


def validate_arguments(schema: type[ArgsT], argument: Mapping[str, Any]) -> ArgsT:
    """Validate ``argument`` against a method's schema; errors name the field and the rule."""
    try:
        return schema.model_validate(argument)
    except ValidationError as exc:
        raise BadRequest(describe_validation_error(exc)) from None


_TYPE_WORDS = {
    "string_type": "must be a string",
    "int_type": "must be an integer",
    "int_parsing": "must be an integer",
    "bool_type": "must be a boolean",
    "bool_parsing": "must be a boolean (true/false, 1/0)",
    "dict_type": "must be an object",
    "list_type": "must be a list",
    "missing": "is required",
    "string_too_short": "must not be empty",
}


def describe_validation_error(exc: ValidationError) -> str:
    """Turn pydantic's report into ``argument.tel is required; argument.x must be ...``."""
    parts: list[str] = []
    for error in exc.errors(include_url=False)[:5]:
        loc = list(error["loc"])
        context = error.get("ctx") or {}
        if error["type"] == "nested_argument" and isinstance(context.get("at"), str):
            loc.append(context["at"])
        path = "argument" + "".join(
            f"[{item}]" if isinstance(item, int) else f".{item}" for item in loc
        )
        words = _TYPE_WORDS.get(error["type"])
        if words is None:
            message = str(error["msg"])
            words = message[0].lower() + message[1:] if message else "is invalid"
            words = words.removeprefix("value error, ")
        parts.append(f"{path} {words}")
    return "; ".join(parts)


def pbx_message(message: Message, client_action_id: str | None) -> dict[str, Any]:
    """A PBX message as a client sees it: our wire ActionID replaced by the client's own
    (or removed), so ids the server chose never leak into answers."""
    fields = message.to_dict()
    for key in [k for k in fields if k.lower() == "actionid"]:
        del fields[key]
    if client_action_id is not None:
        fields["ActionID"] = client_action_id
    return fields


def action_answer(
    response: Message, result: ActionResult | None = None, action_id: str | None = None
) -> dict[str, Any]:
    """The answer fields that show a PBX's answer to a client: ``event`` (with the
    caller's own ``action_id`` as its ActionID); for an action the caller wrote itself
    (``result`` given) also ``actionId``, the event list's items as ``events`` and
    ``Command`` output as ``output``. The same on success and on ``pbx_error``."""
    fields: dict[str, Any] = {"event": pbx_message(response, action_id)}
    if result is None:
        return fields
    fields["actionId"] = action_id
    if result.complete is not None or result.events:
        fields["events"] = [pbx_message(event, action_id) for event in result.events]
    if result.output is not None:
        fields["output"] = result.output
    return fields


def success(req_id: JsonScalar, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A success envelope."""
    return {"err": None, "errCode": None, "reqId": req_id, **fields}


def failure(
    req_id: JsonScalar, code: str, message: str, fields: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """An error envelope; ``fields`` carries extras such as the PBX's ``event``."""
    response: dict[str, Any] = {"err": message, "errCode": code, "reqId": req_id}
    if fields:
        response.update(fields)
    return response
