# DO NOT EDIT: generated from proto/netspectra/v1/sensor.proto by scripts/gen_proto.py (`make proto`).
import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Metric(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    METRIC_UNSPECIFIED: _ClassVar[Metric]
    METRIC_BYTES: _ClassVar[Metric]
    METRIC_PACKETS: _ClassVar[Metric]

class FlowOrder(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FLOW_ORDER_UNSPECIFIED: _ClassVar[FlowOrder]
    FLOW_ORDER_BYTES: _ClassVar[FlowOrder]
    FLOW_ORDER_PACKETS: _ClassVar[FlowOrder]
    FLOW_ORDER_FIRST_SEEN: _ClassVar[FlowOrder]
    FLOW_ORDER_LAST_SEEN: _ClassVar[FlowOrder]
METRIC_UNSPECIFIED: Metric
METRIC_BYTES: Metric
METRIC_PACKETS: Metric
FLOW_ORDER_UNSPECIFIED: FlowOrder
FLOW_ORDER_BYTES: FlowOrder
FLOW_ORDER_PACKETS: FlowOrder
FLOW_ORDER_FIRST_SEEN: FlowOrder
FLOW_ORDER_LAST_SEEN: FlowOrder

class Key(_message.Message):
    __slots__ = ("src_ip", "dst_ip", "src_port", "dst_port", "proto")
    SRC_IP_FIELD_NUMBER: _ClassVar[int]
    DST_IP_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    proto: int
    def __init__(self, src_ip: _Optional[str] = ..., dst_ip: _Optional[str] = ..., src_port: _Optional[int] = ..., dst_port: _Optional[int] = ..., proto: _Optional[int] = ...) -> None: ...

class Counter(_message.Message):
    __slots__ = ("packets", "bytes")
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    packets: int
    bytes: int
    def __init__(self, packets: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class EpochRange(_message.Message):
    __slots__ = ("first", "last", "start", "end", "source", "records", "interface")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    source: str
    records: int
    interface: str
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., records: _Optional[int] = ..., interface: _Optional[str] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetStatusRequest(_message.Message):
    __slots__ = ("range", "sensor")
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    range: TimeRange
    sensor: str
    def __init__(self, range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class RangeTotals(_message.Message):
    __slots__ = ("epochs", "total", "flow_untracked", "counters")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Counter
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Counter, _Mapping]] = ...) -> None: ...
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    FLOW_UNTRACKED_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    epochs: EpochRange
    total: Counter
    flow_untracked: Counter
    counters: _containers.MessageMap[str, Counter]
    def __init__(self, epochs: _Optional[_Union[EpochRange, _Mapping]] = ..., total: _Optional[_Union[Counter, _Mapping]] = ..., flow_untracked: _Optional[_Union[Counter, _Mapping]] = ..., counters: _Optional[_Mapping[str, Counter]] = ...) -> None: ...

class HistoryStatus(_message.Message):
    __slots__ = ("store", "up", "epochs_written", "epochs_lost", "epochs_waiting", "oldest")
    STORE_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_WRITTEN_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_LOST_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_WAITING_FIELD_NUMBER: _ClassVar[int]
    OLDEST_FIELD_NUMBER: _ClassVar[int]
    store: str
    up: bool
    epochs_written: int
    epochs_lost: int
    epochs_waiting: int
    oldest: _timestamp_pb2.Timestamp
    def __init__(self, store: _Optional[str] = ..., up: _Optional[bool] = ..., epochs_written: _Optional[int] = ..., epochs_lost: _Optional[int] = ..., epochs_waiting: _Optional[int] = ..., oldest: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Status(_message.Message):
    __slots__ = ("version", "interface", "ifindex", "xdp_mode", "pid", "started", "epoch_length", "epochs_completed", "epochs_kept", "keep_epochs", "latest", "kernel_memory", "kernel_memory_total", "flow_untracked", "candidates_lost", "total", "counters", "config", "range", "history", "interfaces")
    class KernelMemoryEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Counter
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Counter, _Mapping]] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    IFINDEX_FIELD_NUMBER: _ClassVar[int]
    XDP_MODE_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EPOCH_LENGTH_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_COMPLETED_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_KEPT_FIELD_NUMBER: _ClassVar[int]
    KEEP_EPOCHS_FIELD_NUMBER: _ClassVar[int]
    LATEST_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MEMORY_FIELD_NUMBER: _ClassVar[int]
    KERNEL_MEMORY_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FLOW_UNTRACKED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_LOST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    INTERFACES_FIELD_NUMBER: _ClassVar[int]
    version: str
    interface: str
    ifindex: int
    xdp_mode: str
    pid: int
    started: _timestamp_pb2.Timestamp
    epoch_length: _duration_pb2.Duration
    epochs_completed: int
    epochs_kept: int
    keep_epochs: int
    latest: EpochSummary
    kernel_memory: _containers.ScalarMap[str, int]
    kernel_memory_total: int
    flow_untracked: Counter
    candidates_lost: int
    total: Counter
    counters: _containers.MessageMap[str, Counter]
    config: ConfigSummary
    range: RangeTotals
    history: HistoryStatus
    interfaces: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, version: _Optional[str] = ..., interface: _Optional[str] = ..., ifindex: _Optional[int] = ..., xdp_mode: _Optional[str] = ..., pid: _Optional[int] = ..., started: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., epoch_length: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., epochs_completed: _Optional[int] = ..., epochs_kept: _Optional[int] = ..., keep_epochs: _Optional[int] = ..., latest: _Optional[_Union[EpochSummary, _Mapping]] = ..., kernel_memory: _Optional[_Mapping[str, int]] = ..., kernel_memory_total: _Optional[int] = ..., flow_untracked: _Optional[_Union[Counter, _Mapping]] = ..., candidates_lost: _Optional[int] = ..., total: _Optional[_Union[Counter, _Mapping]] = ..., counters: _Optional[_Mapping[str, Counter]] = ..., config: _Optional[_Union[ConfigSummary, _Mapping]] = ..., range: _Optional[_Union[RangeTotals, _Mapping]] = ..., history: _Optional[_Union[HistoryStatus, _Mapping]] = ..., interfaces: _Optional[_Iterable[str]] = ...) -> None: ...

class ConfigSummary(_message.Message):
    __slots__ = ("source", "flow_capacity", "ringbuf_pages", "timestamps", "top", "tasks", "alert_rules", "metrics_address", "tls", "client_auth", "token_auth")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    FLOW_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    RINGBUF_PAGES_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMPS_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    ALERT_RULES_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    CLIENT_AUTH_FIELD_NUMBER: _ClassVar[int]
    TOKEN_AUTH_FIELD_NUMBER: _ClassVar[int]
    source: str
    flow_capacity: int
    ringbuf_pages: int
    timestamps: str
    top: int
    tasks: int
    alert_rules: int
    metrics_address: str
    tls: bool
    client_auth: bool
    token_auth: bool
    def __init__(self, source: _Optional[str] = ..., flow_capacity: _Optional[int] = ..., ringbuf_pages: _Optional[int] = ..., timestamps: _Optional[str] = ..., top: _Optional[int] = ..., tasks: _Optional[int] = ..., alert_rules: _Optional[int] = ..., metrics_address: _Optional[str] = ..., tls: _Optional[bool] = ..., client_auth: _Optional[bool] = ..., token_auth: _Optional[bool] = ...) -> None: ...

class ListTasksRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Task(_message.Message):
    __slots__ = ("name", "kind", "key", "element", "depth", "width", "heavy_hitter_packets", "heavy_hitter_bytes", "spreader_threshold", "registers_per_key")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    ELEMENT_FIELD_NUMBER: _ClassVar[int]
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEAVY_HITTER_PACKETS_FIELD_NUMBER: _ClassVar[int]
    HEAVY_HITTER_BYTES_FIELD_NUMBER: _ClassVar[int]
    SPREADER_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REGISTERS_PER_KEY_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    key: _containers.RepeatedScalarFieldContainer[str]
    element: _containers.RepeatedScalarFieldContainer[str]
    depth: int
    width: int
    heavy_hitter_packets: int
    heavy_hitter_bytes: int
    spreader_threshold: int
    registers_per_key: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., key: _Optional[_Iterable[str]] = ..., element: _Optional[_Iterable[str]] = ..., depth: _Optional[int] = ..., width: _Optional[int] = ..., heavy_hitter_packets: _Optional[int] = ..., heavy_hitter_bytes: _Optional[int] = ..., spreader_threshold: _Optional[int] = ..., registers_per_key: _Optional[int] = ...) -> None: ...

class ListTasksResponse(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[Task]
    def __init__(self, tasks: _Optional[_Iterable[_Union[Task, _Mapping]]] = ...) -> None: ...

class TopKeysRequest(_message.Message):
    __slots__ = ("task", "metric", "limit", "epochs", "range", "sensor")
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    task: str
    metric: Metric
    limit: int
    epochs: int
    range: TimeRange
    sensor: str
    def __init__(self, task: _Optional[str] = ..., metric: _Optional[_Union[Metric, str]] = ..., limit: _Optional[int] = ..., epochs: _Optional[int] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class KeyCount(_message.Message):
    __slots__ = ("key", "packets", "bytes")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    key: Key
    packets: int
    bytes: int
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class TopKeysResponse(_message.Message):
    __slots__ = ("task", "metric", "epochs", "keys", "packets_error_bound", "bytes_error_bound", "confidence", "exact")
    TASK_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    PACKETS_ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    BYTES_ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    task: str
    metric: Metric
    epochs: EpochRange
    keys: _containers.RepeatedCompositeFieldContainer[KeyCount]
    packets_error_bound: float
    bytes_error_bound: float
    confidence: float
    exact: bool
    def __init__(self, task: _Optional[str] = ..., metric: _Optional[_Union[Metric, str]] = ..., epochs: _Optional[_Union[EpochRange, _Mapping]] = ..., keys: _Optional[_Iterable[_Union[KeyCount, _Mapping]]] = ..., packets_error_bound: _Optional[float] = ..., bytes_error_bound: _Optional[float] = ..., confidence: _Optional[float] = ..., exact: _Optional[bool] = ...) -> None: ...

class EstimateKeyRequest(_message.Message):
    __slots__ = ("task", "key", "epochs", "range", "sensor")
    TASK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    task: str
    key: Key
    epochs: int
    range: TimeRange
    sensor: str
    def __init__(self, task: _Optional[str] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., epochs: _Optional[int] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class EstimateKeyResponse(_message.Message):
    __slots__ = ("task", "kind", "key", "epochs", "packets", "bytes", "packets_error_bound", "bytes_error_bound", "confidence", "distinct", "relative_error", "exact")
    TASK_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    PACKETS_ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    BYTES_ERROR_BOUND_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    task: str
    kind: str
    key: Key
    epochs: EpochRange
    packets: int
    bytes: int
    packets_error_bound: float
    bytes_error_bound: float
    confidence: float
    distinct: float
    relative_error: float
    exact: bool
    def __init__(self, task: _Optional[str] = ..., kind: _Optional[str] = ..., key: _Optional[_Union[Key, _Mapping]] = ..., epochs: _Optional[_Union[EpochRange, _Mapping]] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., packets_error_bound: _Optional[float] = ..., bytes_error_bound: _Optional[float] = ..., confidence: _Optional[float] = ..., distinct: _Optional[float] = ..., relative_error: _Optional[float] = ..., exact: _Optional[bool] = ...) -> None: ...

class TopSpreadersRequest(_message.Message):
    __slots__ = ("task", "limit", "epochs", "range", "sensor")
    TASK_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    task: str
    limit: int
    epochs: int
    range: TimeRange
    sensor: str
    def __init__(self, task: _Optional[str] = ..., limit: _Optional[int] = ..., epochs: _Optional[int] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class Spreader(_message.Message):
    __slots__ = ("key", "distinct", "flows")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISTINCT_FIELD_NUMBER: _ClassVar[int]
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    key: Key
    distinct: float
    flows: int
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., distinct: _Optional[float] = ..., flows: _Optional[int] = ...) -> None: ...

class TopSpreadersResponse(_message.Message):
    __slots__ = ("task", "epochs", "spreaders", "relative_error", "exact")
    TASK_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    SPREADERS_FIELD_NUMBER: _ClassVar[int]
    RELATIVE_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    task: str
    epochs: EpochRange
    spreaders: _containers.RepeatedCompositeFieldContainer[Spreader]
    relative_error: float
    exact: bool
    def __init__(self, task: _Optional[str] = ..., epochs: _Optional[_Union[EpochRange, _Mapping]] = ..., spreaders: _Optional[_Iterable[_Union[Spreader, _Mapping]]] = ..., relative_error: _Optional[float] = ..., exact: _Optional[bool] = ...) -> None: ...

class PortRange(_message.Message):
    __slots__ = ("lo", "hi")
    LO_FIELD_NUMBER: _ClassVar[int]
    HI_FIELD_NUMBER: _ClassVar[int]
    lo: int
    hi: int
    def __init__(self, lo: _Optional[int] = ..., hi: _Optional[int] = ...) -> None: ...

class FlowFilter(_message.Message):
    __slots__ = ("src", "dst", "host", "src_port", "dst_port", "port", "proto")
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SRC_PORT_FIELD_NUMBER: _ClassVar[int]
    DST_PORT_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTO_FIELD_NUMBER: _ClassVar[int]
    src: str
    dst: str
    host: str
    src_port: PortRange
    dst_port: PortRange
    port: PortRange
    proto: int
    def __init__(self, src: _Optional[str] = ..., dst: _Optional[str] = ..., host: _Optional[str] = ..., src_port: _Optional[_Union[PortRange, _Mapping]] = ..., dst_port: _Optional[_Union[PortRange, _Mapping]] = ..., port: _Optional[_Union[PortRange, _Mapping]] = ..., proto: _Optional[int] = ...) -> None: ...

class ListFlowsRequest(_message.Message):
    __slots__ = ("filter", "order_by", "ascending", "page_size", "page_token", "epochs", "range", "sensor")
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    ASCENDING_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    filter: FlowFilter
    order_by: FlowOrder
    ascending: bool
    page_size: int
    page_token: str
    epochs: int
    range: TimeRange
    sensor: str
    def __init__(self, filter: _Optional[_Union[FlowFilter, _Mapping]] = ..., order_by: _Optional[_Union[FlowOrder, str]] = ..., ascending: _Optional[bool] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., epochs: _Optional[int] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class Flow(_message.Message):
    __slots__ = ("key", "packets", "bytes", "first_seen", "last_seen", "tcp_flags", "icmp_type", "icmp_code")
    KEY_FIELD_NUMBER: _ClassVar[int]
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    TCP_FLAGS_FIELD_NUMBER: _ClassVar[int]
    ICMP_TYPE_FIELD_NUMBER: _ClassVar[int]
    ICMP_CODE_FIELD_NUMBER: _ClassVar[int]
    key: Key
    packets: int
    bytes: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    tcp_flags: int
    icmp_type: int
    icmp_code: int
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., packets: _Optional[int] = ..., bytes: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tcp_flags: _Optional[int] = ..., icmp_type: _Optional[int] = ..., icmp_code: _Optional[int] = ...) -> None: ...

class ListFlowsResponse(_message.Message):
    __slots__ = ("flows", "next_page_token", "total", "epochs", "untracked")
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    UNTRACKED_FIELD_NUMBER: _ClassVar[int]
    flows: _containers.RepeatedCompositeFieldContainer[Flow]
    next_page_token: str
    total: int
    epochs: EpochRange
    untracked: Counter
    def __init__(self, flows: _Optional[_Iterable[_Union[Flow, _Mapping]]] = ..., next_page_token: _Optional[str] = ..., total: _Optional[int] = ..., epochs: _Optional[_Union[EpochRange, _Mapping]] = ..., untracked: _Optional[_Union[Counter, _Mapping]] = ...) -> None: ...

class TraceFlowRequest(_message.Message):
    __slots__ = ("key", "range", "sensor")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    SENSOR_FIELD_NUMBER: _ClassVar[int]
    key: Key
    range: TimeRange
    sensor: str
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., range: _Optional[_Union[TimeRange, _Mapping]] = ..., sensor: _Optional[str] = ...) -> None: ...

class FlowEpoch(_message.Message):
    __slots__ = ("epoch", "start", "end", "flow")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    FLOW_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    flow: Flow
    def __init__(self, epoch: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., flow: _Optional[_Union[Flow, _Mapping]] = ...) -> None: ...

class TraceFlowResponse(_message.Message):
    __slots__ = ("key", "epochs", "total", "range")
    KEY_FIELD_NUMBER: _ClassVar[int]
    EPOCHS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    RANGE_FIELD_NUMBER: _ClassVar[int]
    key: Key
    epochs: _containers.RepeatedCompositeFieldContainer[FlowEpoch]
    total: Counter
    range: EpochRange
    def __init__(self, key: _Optional[_Union[Key, _Mapping]] = ..., epochs: _Optional[_Iterable[_Union[FlowEpoch, _Mapping]]] = ..., total: _Optional[_Union[Counter, _Mapping]] = ..., range: _Optional[_Union[EpochRange, _Mapping]] = ...) -> None: ...

class StreamEpochsRequest(_message.Message):
    __slots__ = ("replay", "max_keys")
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    MAX_KEYS_FIELD_NUMBER: _ClassVar[int]
    replay: bool
    max_keys: int
    def __init__(self, replay: _Optional[bool] = ..., max_keys: _Optional[int] = ...) -> None: ...

class TaskKeys(_message.Message):
    __slots__ = ("heavy_hitters", "spreaders")
    HEAVY_HITTERS_FIELD_NUMBER: _ClassVar[int]
    SPREADERS_FIELD_NUMBER: _ClassVar[int]
    heavy_hitters: _containers.RepeatedCompositeFieldContainer[KeyCount]
    spreaders: _containers.RepeatedCompositeFieldContainer[Spreader]
    def __init__(self, heavy_hitters: _Optional[_Iterable[_Union[KeyCount, _Mapping]]] = ..., spreaders: _Optional[_Iterable[_Union[Spreader, _Mapping]]] = ...) -> None: ...

class EpochSummary(_message.Message):
    __slots__ = ("epoch", "start", "end", "total", "counters", "flows", "flow_untracked", "candidates", "candidates_lost", "tasks", "processing", "exact", "interface")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: Counter
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[Counter, _Mapping]] = ...) -> None: ...
    class TasksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: TaskKeys
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[TaskKeys, _Mapping]] = ...) -> None: ...
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    FLOWS_FIELD_NUMBER: _ClassVar[int]
    FLOW_UNTRACKED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_LOST_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    PROCESSING_FIELD_NUMBER: _ClassVar[int]
    EXACT_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    start: _timestamp_pb2.Timestamp
    end: _timestamp_pb2.Timestamp
    total: Counter
    counters: _containers.MessageMap[str, Counter]
    flows: int
    flow_untracked: Counter
    candidates: int
    candidates_lost: int
    tasks: _containers.MessageMap[str, TaskKeys]
    processing: _duration_pb2.Duration
    exact: bool
    interface: str
    def __init__(self, epoch: _Optional[int] = ..., start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., total: _Optional[_Union[Counter, _Mapping]] = ..., counters: _Optional[_Mapping[str, Counter]] = ..., flows: _Optional[int] = ..., flow_untracked: _Optional[_Union[Counter, _Mapping]] = ..., candidates: _Optional[int] = ..., candidates_lost: _Optional[int] = ..., tasks: _Optional[_Mapping[str, TaskKeys]] = ..., processing: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., exact: _Optional[bool] = ..., interface: _Optional[str] = ...) -> None: ...

class StreamAlertsRequest(_message.Message):
    __slots__ = ("replay",)
    REPLAY_FIELD_NUMBER: _ClassVar[int]
    replay: bool
    def __init__(self, replay: _Optional[bool] = ...) -> None: ...

class Alert(_message.Message):
    __slots__ = ("status", "rule", "severity", "task", "key", "value", "threshold", "starts_at", "ends_at", "summary", "description", "repeat", "labels")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    STARTS_AT_FIELD_NUMBER: _ClassVar[int]
    ENDS_AT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    REPEAT_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    status: str
    rule: str
    severity: str
    task: str
    key: str
    value: float
    threshold: float
    starts_at: _timestamp_pb2.Timestamp
    ends_at: _timestamp_pb2.Timestamp
    summary: str
    description: str
    repeat: bool
    labels: _containers.ScalarMap[str, str]
    def __init__(self, status: _Optional[str] = ..., rule: _Optional[str] = ..., severity: _Optional[str] = ..., task: _Optional[str] = ..., key: _Optional[str] = ..., value: _Optional[float] = ..., threshold: _Optional[float] = ..., starts_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ends_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., summary: _Optional[str] = ..., description: _Optional[str] = ..., repeat: _Optional[bool] = ..., labels: _Optional[_Mapping[str, str]] = ...) -> None: ...
