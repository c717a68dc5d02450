"""One remote shell (a PowerShell RunspacePool) on an emulated host, driven through psrpcore's
server classes.

[MS-PSRP] 3.2.5: the client's Create carries SESSION_CAPABILITY and INIT_RUNSPACEPOOL in
``creationXml``; each pipeline arrives as CREATE_PIPELINE in the Command's arguments (more
fragments through Send); the server answers with PSRP messages returned by Receive. psrpcore
does the PSRP state machines; this module queues what they produce per target (the pool, or
one pipeline) so that a pool Receive never takes a pipeline's data.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from psrpcore import (
    CreatePipelineEvent,
    EndOfPipelineInputEvent,
    PSRPCoreError,
    PSRPPayload,
    ServerPipeline,
    ServerRunspacePool,
    StreamType,
)
from psrpcore.types import (
    ErrorCategory,
    ErrorCategoryInfo,
    ErrorRecord,
    NETException,
    PipelineState,
    PSInvocationState,
)

from raorch.lab.clixml import install_string_reader, write_output
from raorch.lab.operations import PipelineRejected

install_string_reader()

# (text, is_script, parameters) per command, as CREATE_PIPELINE carries them.
Commands = list[tuple[str, bool, list[tuple[str | None, Any]]]]
Runner = Callable[[Commands], list[dict[str, Any]]]

# A PSRP payload is cut into fragments of at most this size, and a Receive response carries
# at most RECEIVE_BYTES of them: base64 inflates 4/3, so this stays inside pypsrp's default
# MaxEnvelopeSize of 150 KiB ([MS-WSMV] 2.2.4.19, default 153600 bytes).
FRAGMENT_BYTES = 32_768
RECEIVE_BYTES = 98_304


@dataclass
class _PipelineInfo:
    pipeline: ServerPipeline
    commands: Commands | None = None
    ended: bool = False
    stalled: bool = False  # the stall_receive fault already held one of its Receives


@dataclass
class Shell:
    shell_id: str
    ready_at: float  # monotonic time before which the pool does not answer (slow open fault)
    pool: ServerRunspacePool = field(default_factory=ServerRunspacePool)
    pipelines: dict[uuid.UUID, _PipelineInfo] = field(default_factory=dict)
    queues: dict[uuid.UUID | None, deque[bytes]] = field(default_factory=dict)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    pipelines_run: int = 0
    # The last answered Receive per target (its MessageID, the payloads it carried, whether
    # it ended the pipeline): a client resends a Receive whose reply it did not get, with the
    # same MessageID, and must get the same data (see ``replay``).
    answered: dict[uuid.UUID | None, tuple[str, list[bytes], bool]] = field(default_factory=dict)

    # ------------------------------------------------------------ input

    def feed(self, data: bytes, pipeline_id: uuid.UUID | None, runner: Runner) -> bool:
        """Give client PSRP data to the pool and run what becomes runnable.

        Returns True when a pipeline ran (the host state may have changed)."""
        self.pool.receive_data(PSRPPayload(data, StreamType.default, pipeline_id))
        ran = False
        while True:
            try:
                event = self.pool.next_event()
            except (ValueError, TypeError, KeyError, PSRPCoreError) as exc:
                # A message PowerShell cannot deserialize (e.g. an <I32> out of Int32's range,
                # which pypsrp writes for any Python int): the pipeline fails, as on Windows.
                info = self.pipelines.get(pipeline_id) if pipeline_id else None
                if info is None or info.ended:
                    raise PSRPCoreError(f"cannot deserialize the PSRP message: {exc}") from exc
                info.pipeline.start()
                _fail(
                    info.pipeline,
                    f"raorch lab: cannot deserialize the pipeline's parameters: {exc}",
                    "RaorchLab.Deserialization",
                    "InvalidData",
                )
                info.ended = True
                continue
            if event is None:
                break
            if isinstance(event, CreatePipelineEvent):
                info = self.pipelines[event.pipeline_id]
                meta = event.pipeline
                info.commands = [
                    (str(c.command_text), bool(c.is_script), list(c.parameters))
                    for c in meta.commands
                ]
                if meta.no_input:
                    ran = self._run(info, runner) or ran
            elif isinstance(event, EndOfPipelineInputEvent) and event.pipeline_id in self.pipelines:
                info = self.pipelines[event.pipeline_id]
                if info.commands is not None and not info.ended:
                    ran = self._run(info, runner) or ran
        self._drain()
        return ran

    def new_pipeline(self, pipeline_id: uuid.UUID) -> None:
        # psrpcore needs the ServerPipeline before the CREATE_PIPELINE fragment arrives.
        self.pipelines[pipeline_id] = _PipelineInfo(ServerPipeline(self.pool, pipeline_id))
        self.queues.setdefault(pipeline_id, deque())

    def _run(self, info: _PipelineInfo, runner: Runner) -> bool:
        pipeline = info.pipeline
        pipeline.start()
        assert info.commands is not None
        self.pipelines_run += 1
        try:
            outputs = runner(info.commands)
        except PipelineRejected as exc:
            _fail(pipeline, exc.message, exc.error_id, exc.category)
            info.ended = True
            return False
        for out in outputs:
            write_output(pipeline, out)
        pipeline.complete()
        info.ended = True
        return True

    def stop_pipeline(self, pipeline_id: uuid.UUID) -> None:
        info = self.pipelines.get(pipeline_id)
        if info is None:
            return
        if info.pipeline.state == PSInvocationState.Running:
            info.pipeline.stop()
        info.ended = True
        self._drain()

    def close_pipeline(self, pipeline_id: uuid.UUID) -> None:
        info = self.pipelines.pop(pipeline_id, None)
        if info is not None:
            if (
                info.pipeline.state in (PSInvocationState.Running, PSInvocationState.NotStarted)
                and info.commands
            ):
                info.pipeline.state = PSInvocationState.Stopped
            if info.pipeline.state == PSInvocationState.Running:
                info.pipeline.state = PSInvocationState.Stopped
            info.pipeline.close()
        self.queues.pop(pipeline_id, None)
        self.answered.pop(pipeline_id, None)

    def close(self) -> None:
        for pid in list(self.pipelines):
            self.close_pipeline(pid)
        self.wakeup.set()

    # ------------------------------------------------------------ output

    def _drain(self) -> None:
        while (payload := self.pool.data_to_send(FRAGMENT_BYTES)) is not None:
            self.queues.setdefault(payload.pipeline_id, deque()).append(payload.data)
        self.wakeup.set()

    def take(self, pipeline_id: uuid.UUID | None) -> tuple[list[bytes], bool]:
        """Queued payloads for a target, and whether that pipeline has ended and is drained."""
        queue = self.queues.get(pipeline_id)
        chunks: list[bytes] = []
        size = 0
        while queue and (not chunks or size + len(queue[0]) <= RECEIVE_BYTES):
            chunk = queue.popleft()
            chunks.append(chunk)
            size += len(chunk)
        done = False
        if pipeline_id is not None:
            info = self.pipelines.get(pipeline_id)
            done = info is not None and info.ended and not queue
        return chunks, done

    def replay(
        self, pipeline_id: uuid.UUID | None, message_id: str
    ) -> tuple[list[bytes], bool] | None:
        """The payloads of the last Receive of ``pipeline_id`` again, when ``message_id`` is
        that Receive's: its reply was lost (the client timed out reading it) and the client
        resent the request byte for byte, as pypsrp does (``WSMan.receive``,
        ``retries_on_read_timeout``). Taking output is destructive, so without this the
        output that reply carried is gone and the pipeline never ends for the client. A
        Receive with another MessageID acknowledges the last one (it is forgotten)."""
        last = self.answered.get(pipeline_id)
        if last is None or last[0] != message_id:
            return None
        return last[1], last[2]

    def answer(
        self, pipeline_id: uuid.UUID | None, message_id: str, chunks: list[bytes], done: bool
    ) -> None:
        """Remember what a Receive answered, for ``replay``."""
        self.answered[pipeline_id] = (message_id, chunks, done)

    def ready(self) -> bool:
        return time.monotonic() >= self.ready_at


def _fail(pipeline: ServerPipeline, message: str, error_id: str, category: str) -> None:
    """End a pipeline in state Failed with an ErrorRecord, as a terminating error does
    ([MS-PSRP] 2.2.2.21 PIPELINE_STATE with ExceptionAsErrorRecord)."""
    exception = NETException(Message=message)
    exception.PSObject.type_names = [
        "System.Management.Automation.RuntimeException",
        "System.SystemException",
        "System.Exception",
        "System.Object",
    ]
    record = ErrorRecord(
        Exception=exception,
        CategoryInfo=ErrorCategoryInfo(
            Category=getattr(ErrorCategory, category, ErrorCategory.NotSpecified),
            Reason="RuntimeException",
        ),
        FullyQualifiedErrorId=error_id,
    )
    pipeline.prepare_message(
        PipelineState(PipelineState=int(PSInvocationState.Failed), ExceptionAsErrorRecord=record)
    )
    pipeline.state = PSInvocationState.Failed


def commands_text(commands: Sequence[tuple[str, bool, Sequence[tuple[str | None, Any]]]]) -> str:
    return "\n".join(c[0] for c in commands)
