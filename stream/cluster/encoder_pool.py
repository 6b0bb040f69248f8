"""The face encoder as a pool of Ray actors shared by every stream, batching concurrent requests.

Each ``EncoderWorker`` is an async actor: requests that arrive while it waits ``max_wait_ms`` (or
while the previous batch runs) are concatenated into one ``encode`` call of at most
``max_batch_crops`` crops, and each caller gets its own rows back. The encoder runs on one worker
thread of its own, so one session (one CUDA context) serves the actor. Streams are spread over the pool by a
stable hash of their id (``PooledEncoder``), so a stream's requests stay on one worker while the
pool serves many streams.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.cluster.stages import StageFactory

logger = logging.getLogger(__name__)

EMBEDDING_SIZE = 512


@dataclass(frozen=True)
class PoolOptions:
    """How the encoder pool is laid out.

    Attributes:
        size: encoder actors.
        num_gpus: GPUs each actor reserves (Ray places it on a node that has them); > 0 runs the
            encoder on ``cuda``.
        num_cpus: CPUs each actor reserves.
        max_batch_crops: most crops in one encoder call.
        max_wait_ms: how long a first request waits for others to join its batch, milliseconds.
        max_restarts: times Ray restarts a dead encoder actor (its calls are retried meanwhile).
    """

    size: int = 1
    num_gpus: float = 0.0
    num_cpus: float = 0.0
    max_batch_crops: int = 64
    max_wait_ms: float = 2.0
    max_restarts: int = 3

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"encoder pool size must be an integer >= 1, got {self.size!r}")
        if self.num_gpus < 0 or self.num_cpus < 0:
            raise ValueError(f"num_gpus and num_cpus must be >= 0, got {self.num_gpus}, {self.num_cpus}")
        if self.max_batch_crops < 1:
            raise ValueError(f"max_batch_crops must be >= 1, got {self.max_batch_crops}")
        if not 0 <= self.max_wait_ms <= 1000:
            raise ValueError(f"max_wait_ms must be in [0, 1000], got {self.max_wait_ms}")


class EncoderWorker:
    """Body of one encoder actor (wrapped by ``start_pool``); see the module docstring."""

    def __init__(self, stages: StageFactory, device: str, max_batch_crops: int, max_wait_ms: float) -> None:
        self._encoder = stages.new_encoder(device)
        # One thread runs every batch: a CUDA context or TensorRT engine belongs to one thread.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._max_batch = max_batch_crops
        self._max_wait_s = max_wait_ms / 1000.0
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._batches = 0
        self._crops = 0
        self._requests = 0

    async def encode(self, crops: np.ndarray) -> np.ndarray:
        """N x 160 x 160 x 3 uint8 -> N x 512 float32, batched with other callers' crops."""
        if len(crops) == 0:
            return np.zeros((0, EMBEDDING_SIZE), np.float32)
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((crops, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self._max_wait_s)  # let concurrent requests join the first batch
        while self._pending:
            taken: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
            count = 0
            while self._pending and (not taken or count + len(self._pending[0][0]) <= self._max_batch):
                crops, future = self._pending.pop(0)
                taken.append((crops, future))
                count += len(crops)
            batch = np.concatenate([crops for crops, _ in taken])
            try:
                loop = asyncio.get_running_loop()
                embeddings = await loop.run_in_executor(self._thread, self._encoder.encode, batch)
            except Exception as error:  # handed to every waiting caller, not swallowed
                for _, future in taken:
                    future.set_exception(error)
                continue
            self._batches += 1
            self._crops += count
            self._requests += len(taken)
            offset = 0
            for crops, future in taken:
                future.set_result(embeddings[offset : offset + len(crops)])
                offset += len(crops)

    def stats(self) -> dict[str, Any]:
        """Batches run, crops and requests served, and who this encoder is."""
        return {
            "batches": self._batches,
            "crops": self._crops,
            "requests": self._requests,
            "mean_batch_crops": round(self._crops / self._batches, 2) if self._batches else None,
            "weights_id": getattr(self._encoder, "weights_id", None),
            "backend": getattr(self._encoder, "backend_name", None),
            "precision": getattr(self._encoder, "precision", None),
        }


def start_pool(stages: StageFactory, options: PoolOptions) -> list[Any]:
    """Start ``options.size`` encoder actors; returns their handles (models load on the actors)."""
    import ray

    device = "cuda" if options.num_gpus > 0 else "cpu"
    actor_class = ray.remote(EncoderWorker)
    return [
        actor_class.options(
            num_cpus=options.num_cpus,
            num_gpus=options.num_gpus,
            max_restarts=options.max_restarts,
            max_task_retries=options.max_restarts,
            max_concurrency=1000,
        ).remote(stages, device, options.max_batch_crops, options.max_wait_ms)
        for _ in range(options.size)
    ]


class PooledEncoder:
    """The ``Encoder`` a stream worker uses: its crops go to one pool actor, chosen by stream id."""

    def __init__(self, workers: Sequence[Any], stream_id: str) -> None:
        if not workers:
            raise ValueError("PooledEncoder needs at least one encoder actor, got none")
        self._worker = workers[zlib.crc32(stream_id.encode()) % len(workers)]
        self._precision: str | None = None

    @property
    def precision(self) -> str:
        """The precision the pool actor encodes at (asked once), so the stream's pipeline uses the
        thresholds calibrated for it."""
        if self._precision is None:
            import ray

            self._precision = str(ray.get(self._worker.stats.remote()).get("precision") or "fp32")
        return self._precision

    def encode(self, crops: np.ndarray) -> np.ndarray:
        import ray

        return np.asarray(ray.get(self._worker.encode.remote(np.ascontiguousarray(crops))), np.float32)

    def close(self) -> None:
        """The pool outlives any one stream: nothing to release here."""
