"""The expensive stages shared by every stream: detection, and encoding + scoring, each one batch
for all streams, on a worker thread of its own (or inline, in the caller's thread).

Every stream's per-frame work (decode on the source's reader thread; track, crop, draw on the
pipeline's thread) runs for every frame. What costs tens of milliseconds per call runs here: a
stream asks for a detection of its newest frame, or for a score of a track's newest crop, and
picks the result up on a later frame when the worker is threaded. Requests are keyed (one stream,
or one track), and a key keeps a few requests waiting, in order (the newest replaces the oldest
beyond that, counted as shed).

Fairness: a batch takes whole keys (all of a key's waiting requests, so a track's samples reach the
scorer in order, as a window the head was trained on), the key that has had the fewest requests
run per second since it first asked going first (a new key: first of all), until the next key
would take the batch past its size limit (the first key always goes in whole). Under overload
every track is thus scored at about the same rate, however many faces its stream has and however
long it has lived, and the size limit bounds how long one batch, and so a new face's wait for its
first score, can take. Without the limit one batch took every waiting request: under overload it
grew to (tracks x waiting samples), took 10 s on the 2-core machine, and faces that came and went
within that time were never scored.

Threads, not processes, measured on the 2-core reference machine while it was shared (load
average 9-12): 20 MTCNN calls on two 640 x 480 frames took 3.1 s alone, 20 encoder calls on four
crops 11.5 s alone; run side by side as two threads they took 12.5 s together, as two processes
11.1 s. ONNX Runtime and torch release the GIL inside their kernels, so the threads overlap
nearly as well as processes, without pickling frames across a pipe or loading every model twice.
The pipeline thread's own work (Kalman updates, crops, drawing) is short and Python-bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np

from engine.score import Score
from stream.contracts import Detector, Encoder, Scorer
from stream.live.shedding import LoadShedder, ShedLevel
from stream.live.stats import RunStats
from tracking.detection import Detection

logger = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")

# Samples of one track kept waiting while the scoring worker is busy, in order. A track's accepted
# samples must not be further apart than the scorer's max_gap_s (1 s) or its window starts afresh;
# 8 samples are one whole window of the shipped head (8 at 4 Hz), and cover that second at up to
# 8 Hz. Beyond it the oldest is dropped (shed).
MAX_WAITING_SAMPLES = 8
# Samples in one encode + score batch (a key's waiting samples are never split, so one track's 8
# fill it). The encoder's cost per crop on the 2-core CPU was flat from 1 to 32 crops per call
# (80-100 ms a crop, loaded), so small batches lose nothing there; 8 keeps one batch near a second
# on that machine even loaded, and a face that appears waits at most about two batches for its
# first score. A GPU encoder wants larger batches: ``SharedStages(max_scoring_batch=...)``.
MAX_SCORING_BATCH = 8
# How long stop() waits for the worker thread to finish its batch, seconds.
_STOP_TIMEOUT_S = 10.0


class WorkerError(RuntimeError):
    """A batch failed on the worker thread; raised in the thread that next submits or takes."""


@dataclass(frozen=True)
class Delivered(Generic[ResultT]):
    """A result, with when its request was submitted and when it was done (the worker's clock)."""

    value: ResultT
    submitted_s: float
    done_s: float


@dataclass(frozen=True)
class Batch(Generic[ItemT]):
    """What one run of a stage takes: ``(key, item, submitted_s)`` requests, a key's in order, and
    the keys whose stage state must be dropped before they run."""

    requests: list[tuple[Hashable, ItemT, float]]
    forgotten: list[Hashable]


class BatchWorker(Generic[ItemT, ResultT]):
    """Collects keyed requests and runs them in batches, sharing the stage fairly between keys.

    ``submit``, ``forget`` and ``take`` may be called from any thread. ``start`` runs batches on a
    thread of its own until ``stop``; without it the caller runs them: ``run_all`` (inline use:
    everything waiting, as one batch), or ``run_pending`` (one batch, as the thread would), itself
    ``run(next_batch())``. A key keeps up to ``max_waiting_per_key`` requests in order; a newer one
    beyond that drops the oldest (counted as shed). A batch takes whole keys, the one with the
    fewest requests taken per second since its first submit first (ties: the longest waiting),
    until the next key would take it past ``max_batch_items`` (the first key always goes in
    whole). ``run_batch`` gets ``[(key, item), ...]`` (a key appears as often as it had requests
    waiting, in their order) and returns one result per item, in order; ``on_forget`` gets the
    keys whose state must be dropped, always on the thread that runs batches, before the next
    batch.

    Args:
        name: for logs and the thread name.
        run_batch: the batched stage.
        max_waiting_per_key: 1 keeps only the newest request (detection: only the newest frame
            matters); more keeps a track's samples in order while the worker catches up, so the
            scorer's window has no gap the shedding rule did not choose.
        max_batch_items: the most requests one batch takes (unless its first key has more);
            None takes every waiting request.
        on_forget: drops per-key state of the stage (e.g. a scorer's window); None if there is none.
        clock: seconds for ``Delivered`` times (``time.monotonic``; tests pass a fake).
    """

    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[tuple[Hashable, ItemT]]], Sequence[ResultT]],
        *,
        on_forget: Callable[[list[Hashable]], None] | None = None,
        max_waiting_per_key: int = 1,
        max_batch_items: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_waiting_per_key < 1:
            raise ValueError(f"max_waiting_per_key must be >= 1, got {max_waiting_per_key}")
        if max_batch_items is not None and max_batch_items < 1:
            raise ValueError(f"max_batch_items must be >= 1 or None, got {max_batch_items}")
        self._max_waiting = max_waiting_per_key
        self._max_batch_items = max_batch_items
        self.name = name
        self._run_batch = run_batch
        self._on_forget = on_forget
        self._clock = clock
        self._lock = threading.Condition()
        self._pending: dict[Hashable, list[tuple[ItemT, float]]] = {}
        self._forgotten: list[Hashable] = []
        self._results: dict[Hashable, Delivered[ResultT]] = {}
        # Per key: when it first submitted, and how many of its requests batches have taken.
        self._first_submitted_s: dict[Hashable, float] = {}
        self._served: dict[Hashable, int] = {}
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._stopping = False
        self.submitted = 0
        self.shed = 0
        self.batches = 0
        self.items = 0
        self.busy_s = 0.0

    @property
    def started(self) -> bool:
        """True between ``start`` and ``stop``: results come back later, not in the submitting call."""
        return self._started

    def submit(self, key: Hashable, item: ItemT) -> bool:
        """Ask for ``item`` to be run; True when it replaced (shed) a request of ``key`` still pending."""
        return bool(self.submit_many([(key, item)]))

    def submit_many(self, requests: Sequence[tuple[Hashable, ItemT]]) -> list[Hashable]:
        """Submit several requests at once (the worker sees all or none of them, so one tick's
        requests of every stream land in the same batch); returns the key of each request that
        replaced (shed) an older one of its key still waiting, once per request shed."""
        if not requests:
            return []
        with self._lock:
            self._raise_error()
            now = self._clock()
            replaced: list[Hashable] = []
            for key, item in requests:
                self._first_submitted_s.setdefault(key, now)
                waiting = self._pending.setdefault(key, [])
                if len(waiting) >= self._max_waiting:
                    del waiting[0]
                    replaced.append(key)
                waiting.append((item, now))
            self.shed += len(replaced)
            self.submitted += len(requests)
            self._lock.notify()
        return replaced

    @property
    def waiting_keys(self) -> int:
        """Keys with requests waiting for a batch."""
        with self._lock:
            return len(self._pending)

    @property
    def waiting(self) -> int:
        """Requests waiting for a batch."""
        with self._lock:
            return sum(len(waiting) for waiting in self._pending.values())

    def take(self, key: Hashable) -> Delivered[ResultT] | None:
        """The result of ``key``'s latest finished request (once), or None."""
        with self._lock:
            self._raise_error()
            return self._results.pop(key, None)

    def forget(self, keys: Sequence[Hashable]) -> None:
        """Drop ``keys``' pending requests and results, and their stage state (at once inline, else
        on the thread that runs batches, before its next batch)."""
        if not keys:
            return
        with self._lock:
            for key in keys:
                self._pending.pop(key, None)
                self._results.pop(key, None)
                self._first_submitted_s.pop(key, None)
                self._served.pop(key, None)
            inline = not self._started
            if not inline:
                self._forgotten.extend(keys)
                self._lock.notify()
        if inline and self._on_forget is not None:
            self._on_forget(list(keys))  # inline, the caller's thread owns the stage state

    def next_batch(self) -> Batch[ItemT] | None:
        """Take the next batch by the rule of the class docstring; None when nothing waits."""
        return self._take(self._max_batch_items)

    def run_pending(self) -> int:
        """Take and run one batch in the calling thread; returns how many requests ran."""
        batch = self.next_batch()
        return self.run(batch) if batch is not None else 0

    def run_all(self) -> int:
        """Run every waiting request as one batch in the calling thread; returns how many ran."""
        batch = self._take(None)
        return self.run(batch) if batch is not None else 0

    def run(self, batch: Batch[ItemT]) -> int:
        """Run a batch from ``next_batch`` in the calling thread and deliver its results."""
        if batch.forgotten and self._on_forget is not None:
            self._on_forget(batch.forgotten)
        if not batch.requests:
            return 0
        started = time.perf_counter()
        results = self._run_batch([(key, item) for key, item, _ in batch.requests])
        elapsed_s = time.perf_counter() - started
        if len(results) != len(batch.requests):
            raise ValueError(f"{self.name}: {len(results)} results for a batch of {len(batch.requests)}")
        with self._lock:
            done_s = self._clock()
            for (key, _, submitted_s), result in zip(batch.requests, results, strict=True):
                if key in self._forgotten:
                    continue  # forgotten while it ran: the stream or track is gone
                self._results[key] = Delivered(result, submitted_s, done_s)  # a key's latest wins
            self.batches += 1
            self.items += len(batch.requests)
            self.busy_s += elapsed_s
        return len(batch.requests)

    def start(self, *, thread: bool = True) -> None:
        """From now on results come back later: run batches on a thread of its own, or with
        ``thread=False`` leave every batch to the caller (``next_batch`` and ``run``: a test that
        plays the worker on a fake clock)."""
        if self._started:
            raise RuntimeError(f"{self.name} worker already started")
        self._started = True
        self._stopping = False
        if thread:
            self._thread = threading.Thread(target=self._loop, name=f"{self.name}-worker", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread after its current batch; pending requests are dropped."""
        thread = self._thread
        if thread is not None:
            with self._lock:
                self._stopping = True
                self._lock.notify()
            thread.join(timeout=_STOP_TIMEOUT_S)
            self._thread = None
        self._started = False

    def _take(self, max_items: int | None) -> Batch[ItemT] | None:
        with self._lock:
            if not self._pending and not self._forgotten:
                return None
            forgotten, self._forgotten = self._forgotten, []
            now = self._clock()

            def served_rate(key: Hashable) -> tuple[float, float]:
                age_s = max(now - self._first_submitted_s[key], 1e-9)
                return self._served.get(key, 0) / age_s, self._pending[key][0][1]

            requests: list[tuple[Hashable, ItemT, float]] = []
            for key in sorted(self._pending, key=served_rate):
                waiting = self._pending[key]
                if requests and max_items is not None and len(requests) + len(waiting) > max_items:
                    break
                requests.extend((key, item, submitted_s) for item, submitted_s in waiting)
                del self._pending[key]
                self._served[key] = self._served.get(key, 0) + len(waiting)
            return Batch(requests, forgotten)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._pending and not self._forgotten:
                    self._lock.wait()
                if self._stopping:
                    return
            try:
                self.run_pending()
            except Exception as error:  # handed to the pipeline thread, which raises it
                logger.exception("%s worker failed", self.name)
                with self._lock:
                    self._error = error
                return

    def _raise_error(self) -> None:
        if self._error is not None:
            raise WorkerError(f"the {self.name} worker failed: {self._error}") from self._error


@dataclass(frozen=True)
class ScoreRequest:
    """One track's crop to encode and score: 160 x 160 x 3 uint8 RGB, at stream time ``timestamp_s``."""

    crop: np.ndarray
    timestamp_s: float


class SharedStages:
    """The detector, and the encoder with one scorer, shared by every pipeline attached to them.

    Keys are chosen by the pipelines: ``(pipeline id, source_id)`` for detection and
    ``(pipeline id, source_id, track_id)`` for scoring, so streams and sessions never mix. The
    scorer sees one small integer per scoring key (its track ids must be ints), given here.

    Call ``start()`` to run both stages on worker threads (live streams, several sessions; the
    load-shedding rule of ``stream.live.shedding`` then applies), or leave them inline: the
    pipeline then runs each batch itself, in its own thread, as soon as it has submitted a frame's
    (or a batch of frames') requests, and nothing is shed.

    Args:
        detector: the face detector (one ``detect_batch`` call per batch).
        encoder: the face encoder (one ``encode`` call per batch).
        scorer: the sequence scorer of every track of every attached pipeline.
        levels: the load-shedding levels (``shed_levels``); None for one level (no shedding).
        detect_every_n_frames: the detection interval of that one level (without ``levels``).
        max_scoring_batch: the most samples in one encode + score batch once started (inline,
            a frame's samples always run as one batch); None for no limit.
        clock: monotonic seconds for turnarounds and the shedding windows (tests pass a fake).
    """

    def __init__(
        self,
        *,
        detector: Detector,
        encoder: Encoder,
        scorer: Scorer,
        levels: list[ShedLevel] | None = None,
        detect_every_n_frames: int = 1,
        max_scoring_batch: int | None = MAX_SCORING_BATCH,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stats = RunStats()
        self.sample_rate_hz = float(scorer.sample_rate_hz)
        self.shedder = LoadShedder(
            levels or [ShedLevel(0, detect_every_n_frames, self.sample_rate_hz)], clock=clock
        )
        self._detector = detector
        self._encoder = encoder
        self._scorer = scorer
        self._scorer_ids: dict[Hashable, int] = {}
        self._next_scorer_id = 1
        self._next_owner = 0
        self._owner_lock = threading.Lock()
        self.last_timings_ms: dict[str, float] = {}
        self.detection: BatchWorker[np.ndarray, list[Detection]] = BatchWorker(
            "detection", self._detect, clock=clock
        )
        self.scoring: BatchWorker[ScoreRequest, Score] = BatchWorker(
            "scoring",
            self._encode_and_score,
            on_forget=self._forget,
            max_waiting_per_key=MAX_WAITING_SAMPLES,
            max_batch_items=max_scoring_batch,
            clock=clock,
        )

    @property
    def started(self) -> bool:
        """True once started: the pipelines pick results up on a later frame (else inline)."""
        return self.scoring.started

    def new_owner(self) -> int:
        """A fresh id for one pipeline's keys."""
        with self._owner_lock:
            self._next_owner += 1
            return self._next_owner

    def start(self, *, worker_threads: bool = True) -> None:
        """Run detection and scoring on worker threads of their own from now on; with
        ``worker_threads=False`` the caller runs every batch (``BatchWorker.next_batch`` and
        ``run``), as a test that plays the workers on a fake clock does."""
        self.detection.start(thread=worker_threads)
        self.scoring.start(thread=worker_threads)

    def stop(self) -> None:
        self.detection.stop()
        self.scoring.stop()

    def describe(self) -> dict[str, object]:
        """Load figures for the run summary and the periodic log line."""
        level = self.shedder.current
        return {
            "level": level.level,
            "detect_every_n_frames": level.detect_every_n_frames,
            "sample_rate_hz": level.sample_rate_hz,
            "level_changes": self.shedder.changes,
            "detection_batches": self.detection.batches,
            "detections": self.detection.items,
            "scoring_batches": self.scoring.batches,
            "samples_scored": self.scoring.items,
            "samples_shed": self.scoring.shed,
        }

    def _detect(self, batch: list[tuple[Hashable, np.ndarray]]) -> list[list[Detection]]:
        started = time.perf_counter()
        results = list(self._detector.detect_batch([image for _, image in batch]))
        self._timed("detect", started)
        return results

    def _encode_and_score(self, batch: list[tuple[Hashable, ScoreRequest]]) -> list[Score]:
        started = time.perf_counter()
        crops = np.stack([request.crop for _, request in batch])
        embeddings = np.asarray(self._encoder.encode(crops), dtype=np.float32)
        if embeddings.shape[0] != len(batch):
            raise ValueError(f"encoder returned {embeddings.shape[0]} embeddings for {len(batch)} crops")
        self._timed("encode", started)
        started = time.perf_counter()
        # A track's waiting samples come whole and in order: round r holds the r-th sample of
        # every track (update_many takes a track once per call), one head call per round.
        rounds: list[list[int]] = []
        seen: dict[Hashable, int] = {}
        for index, (key, _) in enumerate(batch):
            position = seen.get(key, 0)
            seen[key] = position + 1
            if position == len(rounds):
                rounds.append([])
            rounds[position].append(index)
        scores: list[Score | None] = [None] * len(batch)
        for indices in rounds:
            items = [(self._scorer_id(batch[i][0]), embeddings[i], batch[i][1].timestamp_s) for i in indices]
            for i, score in zip(indices, self._scorer.update_many(items), strict=True):
                scores[i] = score
        self._timed("score", started)
        return [score for score in scores if score is not None]

    def _scorer_id(self, key: Hashable) -> int:
        scorer_id = self._scorer_ids.get(key)
        if scorer_id is None:
            scorer_id = self._scorer_ids[key] = self._next_scorer_id
            self._next_scorer_id += 1
        return scorer_id

    def _timed(self, stage: str, started: float) -> None:
        elapsed_ms = (time.perf_counter() - started) * 1000.0
        self.last_timings_ms[stage] = elapsed_ms
        if self.started:
            self.stats.record_stage(stage, elapsed_ms)

    def _forget(self, keys: list[Hashable]) -> None:
        for key in keys:
            scorer_id = self._scorer_ids.pop(key, None)
            if scorer_id is not None:
                self._scorer.forget(scorer_id)
