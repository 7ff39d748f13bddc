"""One check of every argument where it enters the course, by annotation.

The rule is the annotations of the function that takes them: one for ``fit``, the data module,
recipes and every model builder, so that ``"no"`` is never read as yes and a negative width or a
``None`` never reaches torch.

An annotation made of ``bool``, ``int``, ``float``, ``str`` and ``None`` is checked, and so is
an argument whose default is a tuple of whole numbers of at least 1 (block sizes, widths): it
must be a non-empty tuple or list of such numbers. Any other (a path, a callable) is left to
the function. A number must not be negative when its default is not, must be at least 1 when it
is a whole number whose default is, and a dropout rate is below 1. A recipe's fields and a data
module's options have their own ranges here too (``check_recipe``, ``check_data_options``).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers

from . import config

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


def is_number(value) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_recipe(recipe, optimizers: tuple, schedules: tuple) -> None:
    """Every field of a :class:`~helpers.recipes.Recipe` in its range, or a ValueError naming
    the recipe, the field and what is valid."""
    def need(field, valid, what):
        value = getattr(recipe, field)
        if not valid(value):
            raise ValueError(f"recipe {recipe.name!r}: {field}={value!r} is not valid; "
                             f"{what}")
    need("optimizer", lambda v: v in optimizers,
          f"unknown optimizer; valid: {', '.join(optimizers)}")
    need("schedule", lambda v: v in schedules,
          f"unknown schedule; valid: {', '.join(schedules)}")
    for field in ("epochs", "batch_size"):
        need(field, lambda v: is_whole(v) and v >= 1, "a whole number of at least 1")
    need("lr", lambda v: is_number(v) and v > 0, "a positive number")
    for field in ("weight_decay", "warmup_epochs", "final_lr"):
        need(field, lambda v: is_number(v) and v >= 0, "a number >= 0")
    for field in ("momentum", "label_smoothing"):
        need(field, lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)")
    need("gamma", lambda v: is_number(v) and v > 0, "a positive number")
    need("cycle_epochs", lambda v: is_number(v) and v > 0, "a positive number")
    need("cycle_mult", lambda v: is_number(v) and v >= 1, "a number >= 1")
    need("milestones", lambda v: isinstance(v, (tuple, list)) and all(
        is_number(m) and 0 < m <= 1 for m in v), "fractions of the run in (0, 1]")
    check(f"recipe {recipe.name!r}", type(recipe),  # the rest: by annotation
          {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)})


def check_data_options(augment, augmentations, val_size, subset, eval_batch_size, size,
                       channels) -> None:
    """The options an ``ImageDataModule`` is given that its annotations do not say all of,
    checked before any data is loaded."""
    def whole(value) -> bool:
        return is_whole(value) and value > 0

    if augment is not None and augment not in augmentations:
        raise ValueError(f"unknown augmentation {augment!r}; valid: "
                         f"{', '.join(augmentations)}, or None")
    if not (whole(val_size) or isinstance(val_size, float) and 0 < val_size < 1):
        raise ValueError(f"val_size={val_size!r} is not valid: give a number of images (e.g. "
                         f"5000) or a fraction between 0 and 1 (e.g. 0.1); the validation set "
                         f"is cut from the training split and must leave training data")
    if subset not in (None, "auto") and not (isinstance(subset, (tuple, list))
                                             and len(subset) == 3 and all(map(whole, subset))):
        raise ValueError(f"subset={subset!r} is not valid: give (train, val, test) image counts "
                         f"> 0, None for everything, or 'auto' (everything, or "
                         f"{config.SMOKE_SUBSET} for a smoke run: smoke=True)")
    if not whole(eval_batch_size):
        raise ValueError(f"eval_batch_size={eval_batch_size!r} is not valid: a whole number > 0")
    for key, value in (("size", size), ("channels", channels)):
        if value is not None and value < 1:
            raise ValueError(f"ImageDataModule: {key}={value!r} is not valid; it must be a "
                             f"whole number of at least 1, or None to keep the data's")
