"""py_upper(text) -> text: the text in upper case (Python's str.upper); NULL gives NULL.

A Weir scalar UDF written in Python. componentize-py turns this module into a component of
the `scalar-udf` world of wit/udf/udf.wit (weir:udf@0.1.0); build it with
scripts/build-guests.sh (target/guests/udf-py-upper.wasm), or by hand from the repo root:

    pip install componentize-py==0.25.1
    componentize-py -d wit/udf -w scalar-udf componentize app \
        -p examples/python/udf_py_upper -o udf-py-upper.wasm

The class must be called WitWorld (componentize-py's name for the world's exports); `call`
gets a batch of rows and returns one value per row. Raising `Err("message")` fails the batch
with that message; any other exception traps the instance.
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import (
    DataType,
    Signature,
    Value,
    Value_Null,
    Value_Text,
)


class WitWorld(wit_world.WitWorld):
    def signature(self) -> Signature:
        return Signature(params=[DataType.TEXT], returns=DataType.TEXT)

    def call(self, rows: List[List[Value]]) -> List[Value]:
        out: List[Value] = []
        for row in rows:
            if len(row) != 1:
                raise Err(f"py_upper takes 1 argument, got {len(row)}")
            arg = row[0]
            if isinstance(arg, Value_Text):
                out.append(Value_Text(arg.value.upper()))
            elif isinstance(arg, Value_Null):
                out.append(Value_Null())
            else:
                raise Err(f"py_upper expects a STRING, got {type(arg).__name__}")
        return out
