"""FaaSCache's Python client (a binding of the Rust client).

    import faascache
    with faascache.Client(dir=".faascache-cluster") as c:
        c.create_table("photos")
        v = c.put("photos", "cat.jpg", data)
        assert c.get("photos", "cat.jpg") == data

Every call releases the GIL while it waits on the network; one client may be shared by threads.
A client must not be used in a child process after fork(): create a new one there.
"""

from types import TracebackType
from typing import Iterable, Iterator, List, Mapping, Optional, Tuple, Type, Union

__version__: str

Table = Union[str, int]
"""A table's name, or its id (from ``create_table`` / ``get_table_id``)."""
BytesLike = Union[bytes, bytearray, memoryview, str]
"""Keys and values: bytes (passed without a copy), other bytes-like objects, or str (UTF-8)."""

class Client:
    """A connection to a FaaSCache cluster.

    ``Client(coordinator="tcp:host=10.0.0.1,port=12246")``, ``Client(dir="/path/to/cluster")``
    (the directory of ``faascache cluster up --dir``), or ``Client()`` (``.faascache-cluster``).
    ``timeout`` (seconds) bounds every call, retries included.
    """

    def __init__(
        self, coordinator: Optional[str] = None, *, dir: Optional[str] = None, timeout: float = 5.0
    ) -> None: ...
    @property
    def coordinator(self) -> str:
        """The coordinator's locator."""
    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called."""
    def close(self) -> None:
        """Closes the client (releases its lease); later calls raise ``InvalidArgument``."""
    def __enter__(self) -> "Client": ...
    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> bool: ...
    def create_table(
        self,
        name: str,
        span: int = 1,
        *,
        backing: Optional[str] = None,
        policy: Optional[str] = None,
        ttl: Optional[float] = None,
    ) -> int:
        """Creates a table spread over ``span`` masters, or returns the existing one's id.
        ``backing="s3://bucket/prefix"`` or ``"swift://container/prefix"``: a cache of that store
        (``policy`` ``"write-back"`` (default) or ``"write-through"``); ``policy="ephemeral"``
        without a backing: objects expire ``ttl`` seconds after their write. Another backing
        under the same name raises ``TableExists``; a store the servers cannot use,
        ``StoreError``."""
    def flush(self, table: Table, key: Optional[BytesLike] = None, timeout: float = 30.0) -> Tuple[int, int]:
        """Waits until a backed table's dirty objects (or ``key``) are in its store; returns
        ``(objects, bytes)`` uploaded meanwhile. Raises ``Timeout``."""
    def invalidate(self, table: Table, key: BytesLike, *, prefix: bool = False) -> Tuple[int, int]:
        """Drops the clean cached copy of ``key`` (``prefix=True``: of every key starting with
        it) in a backed table; returns ``(invalidated, kept_dirty)``."""
    def get_table_id(self, name: str) -> int:
        """The id of table ``name``; raises ``NoSuchTable``."""
    def drop_table(self, name: str) -> None:
        """Drops table ``name`` and its objects; raises ``NoSuchTable`` if there is none."""
    def list_tables(self) -> List[Tuple[str, int]]:
        """Every table as ``(name, id)``."""
    def get(self, table: Table, key: BytesLike) -> bytes:
        """The value of ``key``; raises ``NotFound``."""
    def get_versioned(self, table: Table, key: BytesLike) -> Tuple[bytes, int]:
        """``(value, version)`` of ``key``; raises ``NotFound``."""
    def put(
        self,
        table: Table,
        key: BytesLike,
        value: BytesLike,
        *,
        if_version: Optional[int] = None,
        if_absent: bool = False,
    ) -> int:
        """Writes ``value``; returns the new version. ``if_version=V``: only if the object is at
        version V (else ``VersionMismatch`` or ``NotFound``). ``if_absent=True``: only if there is
        no object (else ``ObjectExists``). Raises ``TooLarge`` for a value over the limit."""
    def remove(self, table: Table, key: BytesLike, *, if_version: Optional[int] = None) -> Optional[int]:
        """Removes ``key``; returns the removed version, or None if there was none."""
    def incr(self, table: Table, key: BytesLike, delta: int = 1) -> int:
        """Adds ``delta`` to the 8-byte little-endian integer at ``key`` (absent: 0); returns the
        new value. Raises ``NotANumber``."""
    def multi_get(self, table: Table, keys: Iterable[BytesLike]) -> List[Optional[bytes]]:
        """The values of ``keys`` in order, None where there is no object."""
    def multi_put(
        self, table: Table, items: Union[Mapping[BytesLike, BytesLike], Iterable[Tuple[BytesLike, BytesLike]]]
    ) -> List[int]:
        """Writes many objects; returns their new versions in order."""
    def enumerate(self, table: Table) -> Iterator[Tuple[bytes, bytes, int]]:
        """An iterator over every object of the table as ``(key, value, version)``, in no
        particular order (an ``Enumeration``). It fetches one batch (about 256 KiB) at a time as it
        is consumed, so any table enumerates in bounded memory; ``list(c.enumerate(t))`` collects
        it all. A table name is looked up at once (``NoSuchTable``); other errors are raised by the
        iteration, which then ends. An object that exists for the whole iteration comes exactly
        once."""

class Enumeration(Iterator[Tuple[bytes, bytes, int]]):
    """The iterator of ``Client.enumerate`` (not created directly). It holds at most one batch
    and a reference to its client: after ``close()`` its next fetch raises ``InvalidArgument``.
    One thread at a time per iterator."""

    def __iter__(self) -> "Enumeration": ...
    def __next__(self) -> Tuple[bytes, bytes, int]: ...

class Error(Exception):
    """Base class of every FaaSCache error."""

class NotFound(Error):
    """The object does not exist."""

class NoSuchTable(Error):
    """No table has this name or id."""

class ObjectExists(Error):
    """The object exists and ``if_absent=True`` forbade that."""

class VersionMismatch(Error):
    """The object is not at the version the call required."""

    current_version: int

class Timeout(Error):
    """No answer within the client's timeout."""

class Unavailable(Error):
    """The coordinator or a master could not be reached."""

class TooLarge(Error):
    """A key, value or request exceeds a limit."""

class NotANumber(Error):
    """``incr`` found a value that is not an 8-byte integer, or overflowed."""

class BadLocator(Error):
    """The coordinator locator does not parse, or the cluster directory has none."""

class InvalidArgument(Error):
    """A bad argument (empty key, conflicting options, a closed client)."""

class LeaseExpired(Error):
    """A mutation's outcome is unknown: the client's lease expired meanwhile."""

class StoreError(Error):
    """A backed table's object store failed or refused, or its write-back backlog is full."""

class ServerError(Error):
    """A protocol error or an unexpected server status."""

class TableExists(Error):
    """A table of this name exists with another backing."""
