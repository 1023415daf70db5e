# DO NOT EDIT: generated from proto/netspectra/v1/epoch.proto by scripts/gen_proto.py (`make proto`).
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EpochOrigin(_message.Message):
    __slots__ = ("sensor", "boot", "interface", "layout")
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    BOOT_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    sensor: str
    boot: str
    interface: str
    layout: str
    def __init__(self, sensor: _Optional[str] = ..., boot: _Optional[str] = ..., interface: _Optional[str] = ..., layout: _Optional[str] = ...) -> None: ...

class Array(_message.Message):
    __slots__ = ("name", "dtype", "shape", "data", "raw_size")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    RAW_SIZE_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    raw_size: int
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ..., raw_size: _Optional[int] = ...) -> None: ...

class EpochRecord(_message.Message):
    __slots__ = ("version", "compression", "origin", "seq", "start", "end", "exact", "table_fill", "candidates", "processing_s", "tasks_json", "arrays")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    TABLE_FILL_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_S_FIELD_NUMBER: _ClassVar[int]
    TASKS_JSON_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    version: int
    compression: str
    origin: EpochOrigin
    seq: int
    start: float
    end: float
    exact: bool
    table_fill: float
    candidates: int
    processing_s: float
    tasks_json: str
    arrays: _containers.RepeatedCompositeFieldContainer[Array]
    def __init__(self, version: _Optional[int] = ..., compression: _Optional[str] = ..., origin: _Optional[_Union[EpochOrigin, _Mapping]] = ..., seq: _Optional[int] = ..., start: _Optional[float] = ..., end: _Optional[float] = ..., exact: _Optional[bool] = ..., table_fill: _Optional[float] = ..., candidates: _Optional[int] = ..., processing_s: _Optional[float] = ..., tasks_json: _Optional[str] = ..., arrays: _Optional[_Iterable[_Union[Array, _Mapping]]] = ...) -> None: ...
