"""One check of every argument where it enters the course, by annotation.

The rule is the annotations of the function that takes them: one for ``fit``, the data module,
recipes and every model builder, so that ``"no"`` is never read as yes and a negative width or a
``None`` never reaches torch.

An annotation made of ``bool``, ``int``, ``float``, ``str`` and ``None`` is checked, and so is
an argument whose default is a tuple of whole numbers of at least 1 (block sizes, widths): it
must be a non-empty tuple or list of such numbers. Any other (a path, a callable) is left to
the function. A number must not be negative when its default is not, must be at least 1 when it
is a whole number whose default is, and a dropout rate is below 1.
"""

from __future__ import annotations

import inspect
import numbers

_SIMPLE = {"bool", "int", "float", "str", "None"}


def _kinds(annotation) -> set[str] | None:
    """The simple types an annotation string allows, or None if it is not a simple one."""
    if not isinstance(annotation, str):
        annotation = getattr(annotation, "__name__", str(annotation))
    kinds = {part.strip() for part in annotation.split("|")}
    return kinds if kinds <= _SIMPLE else None


def _type_ok(kinds: set[str], value) -> bool:
    if value is None:
        return "None" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return bool(kinds & {"int", "float"})
    if isinstance(value, float):
        return "float" in kinds
    return isinstance(value, str) and "str" in kinds


def _range_problem(name: str, value, default) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if "dropout" in name and not 0 <= value < 1:
        return "a rate in [0, 1)"
    if isinstance(default, bool) or not isinstance(default, (int, float)):
        return None
    if isinstance(value, int) and isinstance(default, int) and default >= 1 and value < 1:
        return "a whole number of at least 1"
    if default >= 0 and value < 0:
        return "a number of at least 0"
    return None


def is_whole(value) -> bool:
    """Whether ``value`` is a whole number (an integer of any kind; True and False are not
    numbers here)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def whole_number(value, what: str, minimum: int = 1) -> int:
    """``value`` if it is a whole number of at least ``minimum``, else a TypeError (not a whole
    number) or ValueError (too small) that names ``what``, the value and what is valid: the
    course's one check of a count."""
    valid = f"a whole number of at least {minimum}"
    if not is_whole(value):
        raise TypeError(f"{what} must be {valid}, not {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{what} must be {valid}, not {value}")
    return value


def _counts_problem(value, default) -> str | None:
    """What is wrong with ``value`` for an argument whose default is a tuple of whole numbers
    of at least 1, or None."""
    if not (isinstance(default, (tuple, list)) and default
            and all(is_whole(d) and d >= 1 for d in default)):
        return None
    if (isinstance(value, (tuple, list)) and value
            and all(is_whole(v) and v >= 1 for v in value)):
        return None
    example = tuple(default) if len(default) <= 4 else f"({default[0]}, {default[1]}, ...)"
    return f"a non-empty tuple of whole numbers of at least 1, like {example}"


def check(owner: str, function, values: dict) -> None:
    """Raise TypeError or ValueError naming ``owner``, the argument, the value and what is
    valid, for any of ``values`` (argument name -> value) that ``function``'s signature
    annotates with a simple type it does not have, or that is out of range."""
    parameters = inspect.signature(function).parameters
    for name, value in values.items():
        parameter = parameters.get(name)
        if parameter is not None and (problem := _counts_problem(value, parameter.default)):
            raise ValueError(f"{owner}: {name}={value!r} is not valid; it must be {problem}")
        kinds = _kinds(parameter.annotation) if parameter is not None else None
        if kinds is None:
            continue
        if not _type_ok(kinds, value):
            wanted = " or ".join(sorted(kinds)).replace("bool", "True/False")
            raise TypeError(f"{owner}: {name}={value!r} is not valid; it must be {wanted}")
        if problem := _range_problem(name, value, parameter.default):
            raise ValueError(f"{owner}: {name}={value!r} is not valid; it must be {problem}")
