"""Flat Arrow columns as text cells: how Parquet input is read wherever CSV is read too.

Ingest and batch prediction both turn a Parquet column into the strings a CSV cell would hold,
so that one parsing path (kinds, markers, model columns) serves both formats.
"""

import numpy as np

from prodml.components.common.errors import InputDataError


def as_strings(array, name: str, uri: str, reader: str, remedy: str = "") -> np.ndarray:
    """``array`` as text cells, None where null (a float NaN is null too: pandas writes missing so).

    ``reader`` names the step in the error for a nested column; ``remedy`` ends both errors.
    """
    return as_string_array(array, name, uri, reader, remedy).to_numpy(zero_copy_only=False)


def as_string_array(array, name: str, uri: str, reader: str, remedy: str = ""):
    """:func:`as_strings` as an Arrow string array (no Python object per cell)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    tail = f" {remedy}" if remedy else ""
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_nested(array.type):
        raise InputDataError(f"Column '{name}' of {uri} has the nested type {array.type}; {reader} reads "
                             f"flat columns only.{tail}")
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.int8())
    if pa.types.is_floating(array.type):  # NaN is how pandas writes a missing number
        array = pc.if_else(pc.is_nan(array), pa.scalar(None, array.type), array)
    try:
        strings = pc.cast(array, pa.string())
    except pa.ArrowException as e:
        raise InputDataError(f"Column '{name}' of {uri} ({array.type}) cannot be read as text: {e}.{tail}") from e
    return strings
